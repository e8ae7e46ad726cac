"""The README.md a saved classifier carries: a Hugging Face model card (YAML front matter, then Markdown sections).

The base weights come first, since a random-init stand-in must never pass for pretrained ESM-2; then the task, data
and split, the window, test metrics beside the majority baseline, intended use and limits.
"""
from __future__ import annotations

import json

CARD_FILE = "README.md"
METRICS = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro-F1"),
           ("majority_baseline", "majority-class baseline (accuracy)"), ("chance_balanced", "chance (balanced accuracy)"))


def front_matter(init: str, source: str, classes: list[str]) -> str:
    """The card's YAML header: library, pipeline, tags, labels, and `base_model` only for pretrained weights."""
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags: [protein, esm2, sequence-classification, kn_utils]" + ("" if init == "pretrained" else "  # random init"),
             "labels: " + json.dumps([str(name) for name in classes])]
    if init == "pretrained":
        lines.append(f"base_model: {source}")
    return "\n".join(lines + ["---", ""])


def weights_section(info: dict) -> str:
    """What the encoder's weights started from, stated before anything else."""
    if info.get("init") == "pretrained":
        return f"**Base weights: pretrained ESM-2** (`{info.get('source')}`), fine-tuned end to end with a linear head.\n"
    warm = f" Its encoder was warmed up by masked-language modelling on the training chains (`{info['warm_start']}`)." \
        if info.get("warm_start") else ""
    return (f"**Base weights: RANDOM INITIALISATION, not pretrained ESM-2.** The ESM-2 architecture "
            f"(`{info.get('source')}`, seed {info.get('seed')}) was trained from random weights on this task alone.{warm} "
            "Its accuracy and its neurons are not those of pretrained ESM-2.\n")


def metrics_table(metrics: dict | None) -> str:
    """Test metrics with the majority baseline and chance, as a Markdown table ('not recorded' when absent)."""
    if not metrics:
        return "Not recorded when this folder was saved.\n"
    rows = [f"| {label} | {metrics[key]:.4f} |" for key, label in METRICS if metrics.get(key) is not None]
    return "\n".join(["| metric (test set) | value |", "| --- | --- |", *rows]) + "\n"


def data_section(data: dict | None, classes: list[str]) -> str:
    """The task's classes, where the chains came from and how they were split."""
    task = f"{len(classes)} classes: " + ", ".join(f"`{name}`" for name in classes) + "."
    if not data:
        return task + " Training data: not recorded when this folder was saved.\n"
    split = data.get("split", "?") + (f" at {data['split_identity']:.0%} sequence identity (MMseqs2 clusters kept on one side)"
                                      if data.get("split") == "identity" else "")
    lines = [task, "", f"- source: {data.get('source', 'not recorded')}",
             f"- split: {split}, seed {data.get('seed')}; {data.get('n_train')} training and {data.get('n_test')} test records",
             f"- dataset checksum (sha256 of sequences, labels and split): `{data.get('dataset_sha256', 'not recorded')}`"]
    return "\n".join(lines) + "\n"


def model_card(info: dict, classes: list[str], max_residues: int | None, data: dict | None = None,
               metrics: dict | None = None, weights_sha256: str | None = None) -> str:
    """The whole card as Markdown: `info` is the model's ModelInfo as a dict, `data` and `metrics` what notebook 02
    knows of its training data and test scores (either may be None: the card then says it was not recorded)."""
    window = (f"The model reads the first **{max_residues} residues** of each chain (ESM-2 itself accepts 1,022); "
              "`python -m kn_utils predict` applies the same window and says when a chain is longer.")
    if max_residues is None:
        window = "Not recorded: read with the window you trained it with."
    title = "pretrained ESM-2" if info.get("init") == "pretrained" else "the ESM-2 architecture from random init"
    sections = [
        front_matter(info.get("init", "unknown"), info.get("source", ""), classes),
        f"# Sequence classifier on {title} (kn_utils)\n",
        "## Base weights\n", weights_section(info),
        "## Task and data\n", data_section(data, classes),
        "## Window\n", window + "\n",
        "## Metrics\n", metrics_table(metrics),
        "## Intended use\n",
        "Reproducing and extending the knowledge-neuron study of this repository (which neurons of the attention "
        "projections and feed-forward blocks a fine-tuned ESM-2 classifier relies on), and as a worked example for "
        "running the same analysis on your own classifier. Not for annotating proteins.\n",
        "## Limitations\n",
        "- Scores hold for chains like its test set; chains unlike any training chain score lower (see the run's "
        "accuracy by nearest training chain in notebook 02).\n"
        "- A random split of the PDB puts near-copies of test chains in training; the accession and identity splits "
        "measure how much of the score is that.\n"
        + ("- Random-init weights: the paper's figures need pretrained ESM-2; these do not stand for them.\n"
           if info.get("init") != "pretrained" else ""),
        "## Provenance\n",
        f"Weights fingerprint (`training.weights_fingerprint`): `{weights_sha256 or 'not recorded'}`. "
        "Everything the run recorded is in `kn_model_info.json` beside this file.\n",
    ]
    return "\n".join(sections)
