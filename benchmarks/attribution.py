"""Integrated gradients: kn_utils' batched all-neuron path against the straightforward Captum use, same examples, same run.

Ours: `kn_utils.scoring.integrated_gradients`, one path per example scaling all 5,760 gates, `--steps`
Gauss-Legendre nodes, examples x steps batched by length, `--precision` autocast (auto: bf16 where the CPU has it
natively, else fp32).
Baseline: Captum `IntegratedGradients` with its defaults (50 Gauss-Legendre steps), one example at a
time, one projection at a time (the other 17 left on), each example padded to `max_residues`, fp32.
Prints examples per second and peak memory (RSS growth) of each, medians of `--repeats` runs, and the ratio.

    python benchmarks/attribution.py [--examples 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch
from captum.attr import IntegratedGradients

from kn_utils.alphabet import PAD_ID, encode, pad_batch
from kn_utils.model import PRECISIONS, device_name, esm2_config, random_classifier, resolve_precision
from kn_utils.neurons import NeuronIndex
from kn_utils.scoring import integrated_gradients, true_class_probability



def _sequences(count: int, length: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Random protein-like sequences of 60-100 % of `length` residues and random labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(int(0.6 * length), length + 1, size=count)
    return ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in lengths], rng.integers(0, 6, count)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(model, sequences, labels, max_residues: int, steps: int, precision: str) -> float:
    """Examples per second of our batched IG."""
    started = time.perf_counter()
    integrated_gradients(model, sequences, labels, max_residues, steps=steps, precision=precision)
    return len(sequences) / (time.perf_counter() - started)


def captum_baseline(model, sequences, labels, max_residues: int) -> float:
    """Examples per second of Captum IG, one example and one projection at a time, padded, default settings."""
    index = NeuronIndex.of(model)
    started = time.perf_counter()
    model.set_attn_implementation("sdpa")
    for sequence, label in zip(sequences, labels):
        tokens = encode(sequence, max_residues)
        input_ids, mask = pad_batch([tokens + [PAD_ID] * (max_residues + 2 - len(tokens))])
        mask = (input_ids != PAD_ID).long()
        for block in range(index.size // index.units):
            def forward(block_gates, block=block):
                rows = block_gates.shape[0]
                gates = torch.ones(rows, index.size)
                gates[:, block * index.units : (block + 1) * index.units] = block_gates
                return true_class_probability(model, input_ids.expand(rows, -1), mask.expand(rows, -1),
                                              torch.full((rows,), int(label)), gates)

            IntegratedGradients(forward).attribute(torch.ones(1, index.units), baselines=torch.zeros(1, index.units))
    model.set_attn_implementation("eager")
    return len(sequences) / (time.perf_counter() - started)


def main() -> None:
    """Alternate the two methods `--repeats` times; print medians, peak memory and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-residues", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    args = parser.parse_args()
    precision = resolve_precision(args.precision, "cpu")
    model = random_classifier(esm2_config(initializer_range=0.1), 0, "eager").eval()
    sequences, labels = _sequences(args.examples, args.max_residues)
    print(f"ESM-2 8M architecture, {NeuronIndex.of(model).size} neurons, {args.examples} examples of up to "
          f"{args.max_residues} residues, torch {torch.__version__}, {torch.get_num_threads()} threads, {device_name('cpu')}")
    results: dict[str, list[float]] = {"captum": [], "ours": []}
    peaks: dict[str, float] = {}
    for repeat in range(args.repeats):
        for name in ("ours", "captum"):
            before = _peak_mb()
            if name == "ours":
                value = ours(model, sequences, labels, args.max_residues, args.steps, precision)
            else:
                value = captum_baseline(model, sequences, labels, args.max_residues)
            results[name].append(value)
            peaks[name] = max(peaks.get(name, 0.0), _peak_mb())
            print(f"  run {repeat + 1} {name:6s} {value:8.3f} examples/s (peak RSS so far {peaks[name]:.0f} MB, was {before:.0f})", flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"captum (1 example x 1 projection, 50 steps, padded, fp32): {medians['captum']:.3f} examples/s")
    print(f"ours (all neurons on one path, {args.steps} steps, batched, {precision}): {medians['ours']:.3f} examples/s")
    print(f"peak RSS: {peaks['ours']:.0f} MB after ours, {peaks['captum']:.0f} MB after captum (one process, cumulative)")
    print(f"ratio ours / captum: {medians['ours'] / medians['captum']:.1f}x")


if __name__ == "__main__":
    main()
