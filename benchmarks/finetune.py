"""Training throughput of kn_utils' fine-tuning loop against a plain baseline, measured in the same run.

Ours: length-bucketed batches (no padding computed) under the study's precision (`auto`: bf16 autocast where the CPU
or GPU computes bf16 natively, else fp32; `--precision` to force one), with the attention kernel `train` picks for it
(`kn_utils.attention.attention_kernel`: the stock eager kernel's exact trim under bf16 on CPU, SDPA in fp32) and torch's
fused GELU and AdamW (`fused_kernels`); the same loop without the fused kernels; under bf16 also the same loop with the
opt-in lean eager kernel (`kn_eager`); then the same loop with `torch_compile=True`,
whose first epoch pays the compilation: it is reported both over all epochs and in steady state (epochs after the
first).
Baseline: the stock recipe, fixed-length batches padded to `max_residues`, the library's default attention
(SDPA) in fp32. Both train the same ESM-2 8M architecture on the same sequences with AdamW; throughput
counts real (non-padding) tokens per second. Prints the median of `--repeats` runs of each and the ratio.
Both run on the device `--device` names (auto: a CUDA GPU when torch sees one, else the CPU); `--no-compile` skips
the compiled runs, which on a GPU recompile for every new batch shape.

Defaults: the `full` profile's fine-tuning window and batch (`max_residues`, `max_tokens`), so the ratio is the
study's; `--max-residues 256 --max-tokens 4096` measures longer windows, where attention weighs more.

    python benchmarks/finetune.py [--sequences 256] [--repeats 3] [--epochs 3] [--max-residues N] [--max-tokens N]
                                   [--device auto|cpu|cuda] [--no-compile]
"""
from __future__ import annotations

import argparse
import os
import statistics
from contextlib import nullcontext
from functools import partial
import tempfile
import time
from unittest import mock

import numpy as np
import torch

from kn_utils.alphabet import encode, pad_batch
from kn_utils.attention import LEAN_EAGER
from kn_utils.model import PRECISIONS, device_name, esm2_config, random_classifier, resolve_precision, select_device
from study_settings import study_parameters  # benchmarks/study_settings.py
import kn_utils.training
from kn_utils.training import TrainConfig, train


def benchmark_sequences(count: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Training sequences of the study's dataset when the mirror is available, else random ones of realistic length."""
    mirror = os.environ.get("KN_MIRROR")
    if mirror:
        from kn_utils.data import build_dataset
        from kn_utils.sources import resolve_sources

        frame, _ = build_dataset(*resolve_sources(mirror).values())
        frame = frame.sample(count, random_state=seed)
        return frame["sequence"].tolist(), frame["label"].to_numpy()
    rng = np.random.default_rng(seed)
    lengths = rng.gamma(3.3, 100, size=count).astype(int) + 30  # median ~300 like the PDB enzyme chains
    return ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in lengths], rng.integers(0, 6, count)


def ours(sequences: list[str], labels: np.ndarray, max_residues: int, max_tokens: int, epochs: int = 1,
         torch_compile: bool = False, precision: str = "auto", kernel: str | None = None,
         fused_kernels: bool = True, device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    """Real tokens per second of `kn_utils.training.train`: over all `epochs`, and over the epochs after the first.

    `kernel` forces an attention implementation in place of the one `train` picks for the precision;
    `fused_kernels=False` trains with transformers' GELU and the per-parameter AdamW loop (the loop before fusion).
    """
    model = random_classifier(esm2_config(), 0, "eager").to(device)
    config = TrainConfig(epochs=epochs, max_residues=max_residues, max_tokens=max_tokens, warmup_steps=10,
                         checkpoint_every=10**9, torch_compile=torch_compile, precision=precision,
                         fused_kernels=fused_kernels)
    forced = mock.patch.object(kn_utils.training, "attention_kernel", lambda *_: kernel) if kernel else nullcontext()
    with tempfile.TemporaryDirectory() as folder, forced:
        outcome = train(model, sequences, labels, [], labels[:0], config, folder)
    per_epoch = outcome["train_tokens"] / epochs
    first = outcome["history"][0]["train_seconds"]
    steady = per_epoch * (epochs - 1) / (outcome["train_seconds"] - first) if epochs > 1 else per_epoch / first
    return outcome["train_tokens"] / outcome["train_seconds"], steady


def baseline(sequences: list[str], labels: np.ndarray, max_residues: int, max_tokens: int,
             device: torch.device = torch.device("cpu")) -> float:
    """Real tokens per second of a plain loop: fixed-length padded batches, default attention, fp32."""
    model = random_classifier(esm2_config(), 0, "sdpa").to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)
    width = max_residues + 2
    batch_size = max(1, max_tokens // width)
    tokens = [encode(s, max_residues) for s in sequences]
    real, started = 0, time.perf_counter()
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start : start + batch_size]
        input_ids, mask = pad_batch(batch + [[0] * width])  # pad every batch to the fixed width
        input_ids, mask = input_ids[:-1], mask[:-1]
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels[start : start + batch_size], device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        real += int(mask.sum())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return real / (time.perf_counter() - started)


def main() -> None:
    """Run both loops `--repeats` times, alternating, and print medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sequences", type=int, default=256, help="training sequences (the dataset's with $KN_MIRROR)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, alternating; medians are printed")
    study = study_parameters("02_finetune")
    parser.add_argument("--max-residues", type=int, default=study["max_residues"], help="residues per sequence")
    parser.add_argument("--max-tokens", type=int, default=study["max_tokens"], help="padded tokens per batch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run of our loops (the baseline runs one)")
    parser.add_argument("--precision", choices=PRECISIONS, default=study["precision"],
                        help="our loops' autocast (auto: bf16 only where the device computes it natively)")
    parser.add_argument("--device", default="auto", help="auto: a CUDA GPU when torch sees one, else the CPU")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile runs (on a GPU each new batch shape recompiles for minutes)")
    args = parser.parse_args()
    device = select_device(args.device)
    precision = resolve_precision(args.precision, device)
    sequences, labels = benchmark_sequences(args.sequences, 0)
    print(f"{len(sequences)} sequences, {sum(min(len(s), args.max_residues) + 2 for s in sequences):,} real tokens per epoch, "
          f"max_residues {args.max_residues}, {args.max_tokens} tokens per batch, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {device_name(device)}, our precision {precision}")
    labels_of = {"baseline": "baseline (padded, default attention, fp32)",
                 "ours": f"ours (length-bucketed, {precision})",
                 "unfused": "ours without the fused GELU and AdamW",
                 "lean_kernel": "ours with the lean eager kernel (opt-in)",
                 "compiled": "ours + torch.compile, steady state",
                 "compiled_all": "ours + torch.compile, compilation included"}
    if precision != "bf16":  # the lean kernel differs from the stock one only under bf16
        del labels_of["lean_kernel"]
    if args.no_compile:
        del labels_of["compiled"], labels_of["compiled_all"]
    results: dict[str, list[float]] = {name: [] for name in labels_of}
    ours_here = partial(ours, sequences, labels, args.max_residues, args.max_tokens, args.epochs, precision=precision,
                        device=device)
    for repeat in range(args.repeats):
        results["baseline"].append(baseline(sequences, labels, args.max_residues, args.max_tokens, device))
        results["ours"].append(ours_here()[0])
        results["unfused"].append(ours_here(fused_kernels=False)[0])
        if "lean_kernel" in results:
            results["lean_kernel"].append(ours_here(kernel=LEAN_EAGER)[0])
        if "compiled" in results:
            every, steady = ours_here(torch_compile=True)
            results["compiled"].append(steady)
            results["compiled_all"].append(every)
        print(f"  run {repeat + 1}: " + ", ".join(f"{name} {values[-1]:.0f}" for name, values in results.items())
              + " tokens/s", flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, label in labels_of.items():
        ratio = "" if name == "baseline" else f"  {medians[name] / medians['baseline']:.2f}x the baseline"
        print(f"{label:45s} {medians[name]:7.0f} tokens/s (median of {args.repeats}){ratio}")


if __name__ == "__main__":
    main()
