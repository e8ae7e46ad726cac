"""Inference throughput of the study's downstream stages with torch's fused GELU against transformers' own, same run.

Notebooks 03-07 spend their time in forward passes of the fine-tuned model: `predict_logits` (every ablated submodel
of notebook 05, the class-neuron effects of 07), `activation_scores` (03) and `integrated_gradients` (04, a forward
and a backward pass per quadrature step). transformers' ESM computes GELU as five elementwise operations over every
layer's (batch, position, 1,280) feed-forward output; `kernels.fused_gelu` swaps in torch's one-kernel exact GELU,
the same function to float32 rounding (`tests/test_kernels.py`). Each stage runs with `fused_kernels=True` (the
default) and `False`, alternating, on the same sequences and model; prints tokens (IG: examples) per second, the
medians of `--repeats` runs, and the ratio. Model: ESM-2 8M randomly initialised (throughput does not depend on the
weights). Sequences: the study's dataset with $KN_MIRROR, else random ones of realistic length.

    python benchmarks/inference.py [--sequences 512] [--repeats 3] [--ig-examples 16] [--precision auto|bf16|fp32]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from finetune import benchmark_sequences
from kn_utils.alphabet import encode
from kn_utils.model import PRECISIONS, device_name, esm2_config, random_classifier, resolve_precision, select_device
from study_settings import study_parameters  # benchmarks/study_settings.py
from kn_utils.attribution import integrated_gradients
from kn_utils.scoring import activation_scores
from kn_utils.inference import predict_logits


def timed(stage, fused: bool) -> float:
    """Seconds one call of `stage(fused)` takes."""
    started = time.perf_counter()
    stage(fused)
    return time.perf_counter() - started


def main() -> None:
    """Time each stage both ways, alternating, and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    study = {stage: study_parameters(stage) for stage in ("03_activations", "04_integrated_gradients", "05_ablation")}
    parser.add_argument("--sequences", type=int, default=512, help="sequences per prediction and activation pass")
    parser.add_argument("--ig-examples", type=int, default=16, help="examples per integrated-gradients pass")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating; medians are printed")
    parser.add_argument("--max-residues", type=int, default=study["05_ablation"]["max_residues"], help="residues per sequence")
    parser.add_argument("--precision", choices=PRECISIONS, default=study["05_ablation"]["precision"],
                        help="prediction and IG autocast (auto: bf16 where native); activations run fp32 as in 03")
    parser.add_argument("--device", default="auto", help="auto: a CUDA GPU when torch sees one, else the CPU")
    args = parser.parse_args()
    device = select_device(args.device)
    precision = resolve_precision(args.precision, device)
    sequences, labels = benchmark_sequences(args.sequences, seed=0)
    model = random_classifier(esm2_config(), 0, "eager", pooling="mean").to(device).eval()
    lengths = [len(encode(s, args.max_residues)) for s in sequences]  # with <cls> and <eos>, as the model reads them
    tokens, ig_tokens = sum(lengths), sum(lengths[:args.ig_examples])
    stages = {  # name: (call, amount per call, unit)
        "predict_logits (05, 07)": (lambda fused: predict_logits(model, sequences, args.max_residues, max_tokens=study["05_ablation"]["max_tokens"],
                                                                 precision=precision, fused_kernels=fused), tokens, "tokens/s"),
        "activation_scores (03)": (lambda fused: activation_scores(model, sequences, labels, args.max_residues,
                                                                   max_tokens=study["03_activations"]["max_tokens"],
                                                                   fused_kernels=fused), tokens, "tokens/s"),
        "integrated_gradients (04)": (
            lambda fused: integrated_gradients(model, sequences[:args.ig_examples], labels[:args.ig_examples],
                                               args.max_residues, steps=study["04_integrated_gradients"]["steps"],
                                               max_tokens=study["04_integrated_gradients"]["max_tokens"], precision=precision,
                                               fused_kernels=fused), args.ig_examples, "examples/s"),
    }
    print(f"device {device_name(device)}, {torch.get_num_threads()} threads, precision {precision}, "
          f"{len(sequences)} sequences ({tokens:,} tokens), {args.ig_examples} IG examples ({ig_tokens:,} tokens), "
          f"{args.max_residues} residues, medians of {args.repeats}")
    for name, (stage, amount, unit) in stages.items():
        stage(True)  # warm-up: allocator, thread pool, first-call dispatch
        seconds = {True: [], False: []}
        for _ in range(args.repeats):
            for fused in (False, True):
                seconds[fused].append(timed(stage, fused))
        stock, fused = (amount / statistics.median(seconds[f]) for f in (False, True))
        print(f"{name:36s} stock GELU {stock:10,.2f} {unit}   fused GELU {fused:10,.2f} {unit}   {fused / stock:.2f}x")


if __name__ == "__main__":
    main()
