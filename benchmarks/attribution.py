"""Integrated gradients: kn_utils against Captum on the same all-gates path, same examples, same model, same run.

Path (both): one gate per neuron multiplying its output; baseline 0 (all off), input 1 (all on), the gate vector being
Captum's input; F = P(true class). Captum: `IntegratedGradients(...).attribute(ones, baselines=zeros, n_steps=N,
method="gausslegendre", internal_batch_size=...)`, one example at a time (Captum's input is one gate vector per
example), the nodes of a pass bounded by `--max-tokens` as ours are, the same attention kernel, GELU and precision.
Ours: `kn_utils.attribution.integrated_gradients`, examples x nodes batched by length.

Rows, each with its completeness (median and 90th percentile of the relative error) and the error of the attributions
themselves against a fine rule (`--reference-steps` nodes, fp32; median over examples of the relative L1 distance):
  1. Same nodes: Captum and ours with the same fixed `--steps` Gauss-Legendre nodes.
  2. Same accuracy: ours adaptive (notebook 04's setting in profiles/full.yaml) against Captum with the fewest fixed
     nodes among `--captum-steps` that is at least as accurate, by neuron error and by completeness (median and 90th
     percentile, the bounds notebook 04 is held to), else its most.
  3. Second baseline, kept from the earlier benchmark: Captum one projection at a time (the other 17 left on), its
     default 50 steps, padded to the window; a different path, so only its speed is comparable.
Medians of `--repeats` consecutive runs of each; the ratio is ours / Captum in examples per second.
Model: `--model DIR` (a fine-tuned run's model folder, e.g. runs/full/model: the path's curvature, hence the nodes
the adaptive rule spends, depends on the weights) with a seeded random sample of that run's test sequences (the first
chains' paths are easier than most); else a random-init 8M model on random sequences, labelled as such.

    python benchmarks/attribution.py [--model runs/full/model] [--examples 24] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients

from kn_utils.alphabet import PAD_ID, encode, pad_batch
from kn_utils.attention import attention_implementation, attention_kernel
from kn_utils.attribution import integrated_gradients, true_class_probability
from kn_utils.inference import autocast
from kn_utils.kernels import fused_gelu
from kn_utils.model import PRECISIONS, device_name, esm2_config, load_finetuned, random_classifier, resolve_precision
from kn_utils.neurons import NeuronIndex
from study_settings import study_parameters  # benchmarks/study_settings.py


def inputs(model_dir: str | None, count: int, max_residues: int):
    """(model, sequences, labels, description): a run's model and its test set, else a random-init 8M model."""
    if model_dir:
        import pandas as pd

        model, _ = load_finetuned(model_dir)
        test = pd.read_parquet(Path(model_dir).parent / "dataset.parquet").query("split == 'test'")
        test = test.sample(n=min(count, len(test)), random_state=0)  # a random sample: the first chains' paths are easier
        return model, test["sequence"].tolist(), test["label"].to_numpy(), f"fine-tuned model {model_dir}, {len(test)} random test chains"
    rng = np.random.default_rng(0)
    lengths = rng.integers(int(0.6 * max_residues), max_residues + 1, size=count)
    sequences = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in lengths]
    model = random_classifier(esm2_config(initializer_range=0.1), 0, "eager").eval()
    return model, sequences, rng.integers(0, 6, count), "random-init 8M model, random sequences"


def captum_path(model, sequences, labels, max_residues: int, steps: int, max_tokens: int, precision: str) -> np.ndarray:
    """Captum IG on the all-gates path, one example at a time: (examples, neurons) attributions."""
    size, device = NeuronIndex.of(model).size, next(model.parameters()).device
    out = np.zeros((len(sequences), size), dtype=np.float32)
    with attention_implementation(model, attention_kernel(precision, device)), fused_gelu(True):
        for row, (sequence, label) in enumerate(zip(sequences, labels)):
            input_ids, mask = pad_batch([encode(sequence, max_residues)])

            def forward(gates):
                with autocast(device, precision):
                    return true_class_probability(model, input_ids.expand(len(gates), -1), mask.expand(len(gates), -1),
                                                  torch.full((len(gates),), int(label)), gates)

            ig = IntegratedGradients(forward).attribute(torch.ones(1, size), baselines=torch.zeros(1, size), n_steps=steps,
                                                        method="gausslegendre",
                                                        internal_batch_size=max(1, max_tokens // input_ids.shape[1]))
            out[row] = ig[0].detach().numpy()
    return out


def captum_per_projection(model, sequences, labels, max_residues: int) -> None:
    """The earlier baseline: Captum one projection at a time, default settings, padded, fp32."""
    index = NeuronIndex.of(model)
    for sequence, label in zip(sequences, labels):
        tokens = encode(sequence, max_residues)
        input_ids, _ = pad_batch([tokens + [PAD_ID] * (max_residues + 2 - len(tokens))])
        mask = (input_ids != PAD_ID).long()
        for block in range(index.size // index.units):
            def forward(block_gates, block=block):
                gates = torch.ones(block_gates.shape[0], index.size)
                gates[:, block * index.units : (block + 1) * index.units] = block_gates
                return true_class_probability(model, input_ids.expand(len(gates), -1), mask.expand(len(gates), -1),
                                              torch.full((len(gates),), int(label)), gates)

            IntegratedGradients(forward).attribute(torch.ones(1, index.units), baselines=torch.zeros(1, index.units))


def accuracy(attributions: np.ndarray, reference: np.ndarray, delta: np.ndarray) -> tuple[float, float, float]:
    """(median relative completeness error, its 90th percentile, median relative L1 error against the reference)."""
    completeness = np.abs(attributions.astype(float).sum(1) - delta) / np.maximum(np.abs(delta), 1e-12)
    neurons = np.abs(attributions - reference).sum(1) / np.abs(reference).sum(1)
    return float(np.median(completeness)), float(np.quantile(completeness, 0.9)), float(np.median(neurons))


def timed(call, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last call's result."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    """Time each method, print examples/s, accuracy and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    study = study_parameters("04_integrated_gradients")  # the notebook's defaults, then the full profile's settings
    parser.add_argument("--model", default=None, help="a fine-tuned model folder (runs/<profile>/model); default random init")
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-residues", type=int, default=study["max_residues"])
    parser.add_argument("--max-tokens", type=int, default=study["max_tokens"])
    parser.add_argument("--steps", type=int, default=16, help="fixed nodes of the same-nodes row")
    parser.add_argument("--captum-steps", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--reference-steps", type=int, default=128)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--projection-baseline-examples", type=int, default=2, help="0 skips the per-projection baseline")
    args = parser.parse_args()
    precision = resolve_precision(args.precision, "cpu")
    model, sequences, labels, described = inputs(args.model, args.examples, args.max_residues)
    print(f"{described}; {NeuronIndex.of(model).size} neurons, {len(sequences)} examples of up to {args.max_residues} residues, "
          f"{precision}, torch {torch.__version__}, {torch.get_num_threads()} threads, {device_name('cpu')}", flush=True)
    common = {"max_tokens": args.max_tokens, "precision": precision}
    reference = integrated_gradients(model, sequences, labels, args.max_residues, steps=args.reference_steps, **common)
    delta, fine = reference["p_on"] - reference["p_off"], reference["attributions"]
    adaptive = {name: study[name] for name in ("steps", "panels", "probes", "tolerance", "absolute_tolerance",
                                               "neuron_tolerance", "max_depth")}
    runs = {f"ours fixed {args.steps}": lambda: integrated_gradients(model, sequences, labels, args.max_residues, steps=args.steps, **common)["attributions"],
            "ours adaptive": lambda: integrated_gradients(model, sequences, labels, args.max_residues, **adaptive, **common)["attributions"]}
    for steps in sorted(set(args.captum_steps) | {args.steps}):
        runs[f"captum {steps}"] = lambda steps=steps: captum_path(model, sequences, labels, args.max_residues, steps, args.max_tokens, precision)
    rows = {}
    for name, call in runs.items():
        seconds, attributions = timed(call, args.repeats)
        rows[name] = (len(sequences) / seconds, *accuracy(attributions, fine, delta))
        print(f"  {name:18s} {rows[name][0]:7.3f} examples/s, completeness error median {rows[name][1]:.2e}, 90th pct "
              f"{rows[name][2]:.2e}, neuron error vs {args.reference_steps} nodes {rows[name][3]:.2e}", flush=True)
    same_nodes = rows[f"ours fixed {args.steps}"][0] / rows[f"captum {args.steps}"][0]
    print(f"same path, same {args.steps} nodes, {precision}: ours / captum = {same_nodes:.1f}x")
    for criterion, columns in (("neuron error", [3]), ("completeness median and 90th pct", [1, 2])):
        target = [rows["ours adaptive"][c] for c in columns]
        candidates = [name for name in runs if name.startswith("captum")
                      and all(rows[name][c] <= bound for c, bound in zip(columns, target))]
        match = min(candidates, key=lambda name: int(name.split()[1])) if candidates else max(
            (name for name in runs if name.startswith("captum")), key=lambda name: int(name.split()[1]))
        print(f"same path, same accuracy ({criterion}): ours adaptive ({', '.join(f'{t:.1e}' for t in target)}) / {match} "
              f"({', '.join(f'{rows[match][c]:.1e}' for c in columns)}{'' if candidates else ', still less accurate'}) "
              f"= {rows['ours adaptive'][0] / rows[match][0]:.1f}x")
    if args.projection_baseline_examples:
        count = args.projection_baseline_examples
        seconds, _ = timed(lambda: captum_per_projection(model, sequences[:count], labels[:count], args.max_residues), 1)
        print(f"second baseline, another path: captum per projection (50 steps, padded, fp32) {count / seconds:.3f} examples/s; "
              f"ours adaptive / it = {rows['ours adaptive'][0] / (count / seconds):.1f}x")


if __name__ == "__main__":
    main()
