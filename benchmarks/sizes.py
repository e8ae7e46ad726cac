"""IG throughput and peak memory at the ESM-2 shapes: 8M, 35M and 150M measured, 650M and 3B extrapolated.

Each shape runs in its own process (so that its peak resident memory is its own): a randomly initialised classifier of
that shape (throughput does not depend on the weights), integrated gradients of `--examples` sequences with a fixed
`--steps`-node Gauss-Legendre rule in fp32, at most `--max-tokens` tokens per pass (what bounds activation memory).
Prints examples/s (median of `--repeats` runs after a warm-up), the ratio to the 8M shape measured in the same run,
and the peak resident memory of the process. The larger shapes are extrapolated, and labelled so, from a power law in
the non-embedding parameter count fitted to the measured shapes (time) and from weights + gradients + the measured
per-layer activation memory (memory).

    python benchmarks/sizes.py [--examples 8] [--steps 16] [--repeats 3] [--max-tokens 4096] [--max-residues 128]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

MEASURED = ("facebook/esm2_t6_8M_UR50D", "facebook/esm2_t12_35M_UR50D", "facebook/esm2_t30_150M_UR50D")
EXTRAPOLATED = ("facebook/esm2_t33_650M_UR50D", "facebook/esm2_t36_3B_UR50D")


def core_parameters(shape: str) -> int:
    """Parameters of the encoder layers (attention and feed-forward weights), which set the cost per token."""
    from kn_utils.model import ESM2_SHAPES

    layers, hidden, _heads, ffn = ESM2_SHAPES[shape]
    return layers * (4 * hidden * hidden + 2 * hidden * ffn)


def measure(shape: str, examples: int, steps: int, repeats: int, max_tokens: int, max_residues: int) -> dict:
    """One shape in this process: examples/s (median) and peak resident memory (MiB)."""
    import torch

    from finetune import benchmark_sequences
    from kn_utils.attribution import integrated_gradients
    from kn_utils.model import esm2_config, random_classifier

    sequences, labels = benchmark_sequences(examples, seed=0)
    model = random_classifier(esm2_config(shape=shape), 0, "sdpa", pooling="mean").eval()
    run = lambda: integrated_gradients(model, sequences, labels, max_residues, steps=steps, max_tokens=max_tokens)  # noqa: E731
    run()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return {"shape": shape, "examples_per_s": examples / statistics.median(seconds), "threads": torch.get_num_threads(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": sum(p.numel() for p in model.parameters())}


def extrapolate(rows: list[dict], shape: str) -> dict:
    """Examples/s from a power law in core parameters fitted to the measured rows; memory from the largest measured
    shape's activation memory per layer-width, plus weights and gradients (fp32, twice the parameters)."""
    from kn_utils.model import ESM2_SHAPES

    x = np.log([core_parameters(row["shape"]) for row in rows])
    slope, intercept = np.polyfit(x, np.log([row["examples_per_s"] for row in rows]), 1)
    largest = rows[-1]
    layers, hidden, _, ffn = ESM2_SHAPES[largest["shape"]]
    weights_mib = 2 * 4 * largest["parameters"] / 2**20
    activation_per_width = (largest["peak_rss_mib"] - weights_mib) / (layers * (hidden + ffn))
    layers, hidden, _, ffn = ESM2_SHAPES[shape]
    parameters = core_parameters(shape) + 33 * hidden  # encoder + embeddings
    return {"shape": shape, "examples_per_s": float(np.exp(intercept + slope * np.log(core_parameters(shape)))),
            "peak_rss_mib": 2 * 4 * parameters / 2**20 + activation_per_width * layers * (hidden + ffn),
            "parameters": parameters, "extrapolated": True, "time_exponent": float(slope)}


def main() -> None:
    """Measure each shape in a subprocess, then print the table with the extrapolated shapes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16, help="Gauss-Legendre nodes per example (fixed rule)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=4096, help="tokens per forward/backward pass (bounds memory)")
    parser.add_argument("--max-residues", type=int, default=128)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this shape and print JSON
    args = parser.parse_args()
    settings = (args.examples, args.steps, args.repeats, args.max_tokens, args.max_residues)
    if args.one:
        print(json.dumps(measure(args.one, *settings)))
        return
    rows = []
    for shape in MEASURED:
        command = [sys.executable, __file__, "--one", shape, "--examples", str(args.examples), "--steps", str(args.steps),
                   "--repeats", str(args.repeats), "--max-tokens", str(args.max_tokens), "--max-residues", str(args.max_residues)]
        rows.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    rows += [extrapolate(rows, shape) for shape in EXTRAPOLATED]
    print(f"IG, fixed {args.steps}-node Gauss-Legendre, fp32, {args.examples} examples of up to {args.max_residues} "
          f"residues, max_tokens {args.max_tokens}, {rows[0]['threads']} threads; medians of {args.repeats}")
    print("| shape | parameters | IG examples/s | vs 8M | peak memory (MiB) | |\n| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['shape'].split('/')[-1]} | {row['parameters'] / 1e6:,.0f}M | {row['examples_per_s']:.3f} | "
              f"{row['examples_per_s'] / rows[0]['examples_per_s']:.3f}x | {row['peak_rss_mib']:,.0f} | "
              f"{'extrapolated' if row.get('extrapolated') else 'measured'} |")


if __name__ == "__main__":
    main()
