"""The positive control's answers: do the study's methods recover the truth planted by `kn_utils.synthetic`?

Four questions, each against a null: do IG-kept submodels keep more accuracy than random ones (z over random seeds)
and than activation-kept ones; are a class's top IG neurons the neurons that respond to its planted motif (precision at
k against the motif-responsive neurons, with a shuffled-label null); does the motif test find each class's planted
motif among that class's neurons (power) and nothing for the composition class or under shuffled labels (false
positives); does suppressing a class's neurons hurt that class most.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .attention import attention_implementation
from .neurons import recording
from .scoring import batches, class_means
from .stats import permutation_p_value, top_k


def motif_spans(truth: pd.DataFrame, ids: list[str], max_residues: int) -> list[tuple[int, int] | None]:
    """Per sequence id, the (start, end) residues of its planted motif within the first `max_residues`, else None."""
    planted = truth[truth["kind"] == "motif"].drop_duplicates("id").set_index("id")
    spans = []
    for identifier in ids:
        if identifier in planted.index and planted.at[identifier, "end"] <= max_residues:
            spans.append((int(planted.at[identifier, "start"]), int(planted.at[identifier, "end"])))
        else:
            spans.append(None)
    return spans


@torch.inference_mode()
def motif_response(model, sequences: list[str], spans: list[tuple[int, int] | None], max_residues: int,
                   max_tokens: int = 8192) -> np.ndarray:
    """Per neuron, the mean over sequences with a span of (mean |activation| on the span's residues minus mean
    |activation| on the sequence's other residues): how much a neuron fires on the planted motif."""
    device = next(model.parameters()).device
    total, count = None, 0
    model.eval()
    with attention_implementation(model, "sdpa"):
        for batch, input_ids, mask in batches(sequences, max_residues, max_tokens):
            with recording(model) as outputs:
                model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
            values = torch.cat(outputs, dim=-1).abs().float().cpu()  # batch x tokens x neurons
            for row, example in enumerate(batch):
                if spans[example] is None:
                    continue
                start, end = spans[example]
                length = int(mask[row].sum()) - 2  # residues between <cls> and <eos>
                on = torch.zeros(length, dtype=torch.bool)
                on[start:end] = True
                residues = values[row, 1:length + 1]
                difference = residues[on].mean(0) - residues[~on].mean(0)
                total = difference if total is None else total + difference
                count += 1
    if not count:
        raise ValueError("motif_response: no sequence has a planted motif within the window")
    return (total / count).numpy()


def precision_at_k(selected: np.ndarray, responsive: np.ndarray) -> float:
    """Share of the `selected` neurons that are among the `responsive` ones."""
    return float(np.isin(selected, responsive).mean())


def precision_table(attributions: np.ndarray, labels: np.ndarray, responses: dict[int, np.ndarray], classes: list[str],
                    k: int, responsive_count: int, permutations: int = 1000, seed: int = 0,
                    method_scores: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Per motif class (label in `responses`): precision at k of its top-k neurons by class-mean signed IG against
    its `responsive_count` most motif-responsive neurons, the same under shuffled labels (mean, 95th percentile,
    permutation p), chance (responsive share), and the precision of the other `method_scores` ((classes, neurons)
    class means, e.g. activation)."""
    rng = np.random.default_rng(seed)
    num_classes = len(classes)
    observed = class_means(attributions, labels, num_classes)
    responsive = {label: top_k(response, responsive_count) for label, response in responses.items()}
    null = {label: np.zeros(permutations) for label in responses}
    for draw in range(permutations):
        shuffled = class_means(attributions, rng.permutation(labels), num_classes)
        for label in responses:
            null[label][draw] = precision_at_k(top_k(shuffled[label], k), responsive[label])
    rows = []
    for label in responses:
        row = {"class": classes[label], "IG precision@k": precision_at_k(top_k(observed[label], k), responsive[label])}
        for name, scores in (method_scores or {}).items():
            row[f"{name} precision@k"] = precision_at_k(top_k(scores[label], k), responsive[label])
        row.update({"shuffled labels mean": null[label].mean(), "shuffled labels p95": np.quantile(null[label], 0.95),
                    "p_value": permutation_p_value(row["IG precision@k"], null[label]),
                    "chance": responsive_count / attributions.shape[1]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("class")


def sweep_verdicts(results: pd.DataFrame, keep_fractions: list[float], metric: str = "accuracy") -> pd.DataFrame:
    """Per kept fraction: IG signed (high), activation and random (mean, sd over seeds) accuracy of the plain
    zero-ablation sweep, IG's z against random, and whether IG beats random by 2 sd and beats activation."""
    from .ablation import plain_zero

    plain = plain_zero(results)
    rows = []
    for fraction in keep_fractions:
        at = plain[plain["keep_fraction"] == fraction]
        random = at.loc[at["method"] == "random", metric]
        ig = at.loc[(at["method"] == "ig_signed") & (at["direction"] == "high"), metric].item()
        activation = at.loc[(at["method"] == "activation") & (at["direction"] == "high"), metric].item()
        sd = random.std(ddof=1)
        z = (ig - random.mean()) / sd if sd > 0 else np.inf * np.sign(ig - random.mean())
        rows.append({"kept": f"{fraction:.0%}", "IG signed": ig, "activation": activation, "random mean": random.mean(),
                     "random sd": sd, "IG z vs random": z, "IG > random + 2 sd": bool(z > 2),
                     "activation z vs random": (activation - random.mean()) / sd if sd > 0 else np.nan,
                     "IG > activation": bool(ig > activation)})
    return pd.DataFrame(rows).set_index("kept")


def motif_power(tests: pd.DataFrame, probe: pd.DataFrame, class_motifs: dict[str, str | None],
                alpha: float = 0.05) -> pd.DataFrame:
    """Per class: the smallest q-value of its own planted motif among its probed neurons (found: below `alpha`), and
    how many tests of its neurons pass `alpha` for any motif (for the composition class, every one is a false
    positive of "its" motif: it has none). `tests`: motifs.probe_neurons' table; `probe`: class_neurons.probe_table."""
    rows = []
    for name, motif in class_motifs.items():
        neurons = probe.loc[probe["class_name"] == name, "neuron"]
        own = tests[tests["neuron"].isin(neurons)]
        smallest = own.loc[own["motif"] == motif, "q_value"].min() if motif else np.nan
        rows.append({"class": name, "planted motif": motif or "none (composition)", "smallest q, own motif": smallest,
                     "own motif found": bool(smallest < alpha) if motif else False,
                     "tests with q < alpha": int((own["q_value"] < alpha).sum()), "tests": len(own)})
    return pd.DataFrame(rows).set_index("class")


def shuffled_probe(attributions: np.ndarray, labels: np.ndarray, classes: list[str], count: int, seed: int = 0) -> pd.DataFrame:
    """class_neurons.probe_table's layout for classes made of shuffled labels: each class's `count` top neurons by
    mean signed IG over a random group of examples of its size (the motif test's false-positive control)."""
    from .class_neurons import probe_table

    shuffled = np.random.default_rng(seed).permutation(labels)
    return probe_table(class_means(attributions, shuffled, len(classes)), classes, count)


def reversed_patterns(patterns: dict[str, str]) -> dict[str, str]:
    """Each planted PROSITE pattern read backwards, named `reversed <name>`: never planted, so a motif test that calls
    one is wrong (a false-positive control with the planted patterns' residues and degeneracy)."""
    return {f"reversed {name}": "-".join(reversed(pattern.split("-"))) for name, pattern in patterns.items()}


def summary(verdicts: pd.DataFrame, precision: pd.DataFrame, power: pd.DataFrame, shuffled_power: pd.DataFrame,
            never_planted: pd.DataFrame, specificity: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per question of the control: in how many sizes or classes the answer is yes, of how many."""
    from .class_neurons import supported_rows

    motif_classes = power[power["planted motif"] != "none (composition)"]
    composition = power[power["planted motif"] == "none (composition)"]
    rows = [
        ("IG-kept submodels beat random by > 2 sd", verdicts["IG > random + 2 sd"].sum(), len(verdicts), "kept sizes"),
        ("activation-kept submodels beat random by > 2 sd", (verdicts["activation z vs random"] > 2).sum(), len(verdicts),
         "kept sizes"),
        ("IG-kept submodels beat activation-kept ones", verdicts["IG > activation"].sum(), len(verdicts), "kept sizes"),
        (f"a class's top IG neurons fire on its motif (p < {alpha} vs shuffled labels)", (precision["p_value"] < alpha).sum(),
         len(precision), "motif classes"),
        (f"the motif test finds the class's planted motif (q < {alpha})", motif_classes["own motif found"].sum(),
         len(motif_classes), "motif classes"),
        ("... and finds it for classes of shuffled labels (false positives)", shuffled_power["own motif found"].sum(),
         len(motif_classes), "motif classes"),
        (f"never-planted (reversed) patterns called at q < {alpha} (false positives)",
         int((never_planted["q_value"] < alpha).sum()), len(never_planted), "tests"),
        (f"calls (q < {alpha}) for the composition class's neurons (it has no motif; a call names another class's)",
         int(composition["tests with q < alpha"].sum()), int(composition["tests"].sum()), "tests"),
        ("suppressing a class's neurons hurts it most, beyond 2 random sd", supported_rows(specificity).sum(),
         len(specificity), "classes"),
    ]
    return pd.DataFrame([{"question": question, "yes": int(yes), "of": int(total), "counted over": unit}
                         for question, yes, total, unit in rows]).set_index("question")
