"""Training-step throughput of ESM-2 8M under each attention kernel, in one process, against transformers' eager kernel.

Kernels: `eager` (transformers' stock eager kernel), `kn_eager_unscaled` (the same kernel without ESM's multiplication
of the scores by 1.0: what training uses under bf16 on CPU, bit for bit the stock kernel's logits and gradients, which
the script checks before timing), `kn_eager` (the opt-in lean kernel of `kn_utils.attention`: mask
cast to the scores' dtype, so softmax runs in bf16 under autocast) and `sdpa` (torch's scaled_dot_product_attention).
One fixed batch of random chains at the study's window and batch size, a full training step each time (forward,
cross-entropy, backward, gradient clipping, AdamW; the fused GELU and AdamW that training uses); the kernels take
turns round by round, so drifts in the machine's speed hit them alike. Prints the median tokens per second of
`--rounds` rounds of `--steps` steps and the ratio to `eager`. Defaults: the `full` profile's window and batch; `--max-residues 256 --max-tokens 4096` for longer windows.

    python benchmarks/attention.py [--rounds 8] [--steps 4] [--max-residues N] [--max-tokens N] [--precision P]
                                   [--device auto|cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from kn_utils.alphabet import STANDARD_RESIDUES, encode, pad_batch
from kn_utils.attention import LEAN_EAGER, UNSCALED_EAGER
from kn_utils.kernels import fused_gelu
from kn_utils.model import PRECISIONS, device_name, esm2_config, random_classifier, resolve_precision, select_device
from study_settings import study_parameters  # benchmarks/study_settings.py
from kn_utils.inference import autocast
from kn_utils.training import adamw, optimiser_step

def random_batch(max_residues: int, max_tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch as the study's bucketing makes it: as many chains of about `max_residues` as `max_tokens` allows."""
    rng = np.random.default_rng(seed)
    count = max(1, max_tokens // (max_residues + 2))
    chains = ["".join(rng.choice(sorted(STANDARD_RESIDUES), max_residues - i % 3)) for i in range(count)]  # a little padding
    input_ids, mask = pad_batch([encode(chain, max_residues) for chain in chains])
    return input_ids, mask, torch.as_tensor(rng.integers(0, 6, count))


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer reads the steps' end rather than their launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    """Check the control is exact, then time a training step under each kernel and print medians and ratios."""
    defaults = study_parameters("02_finetune")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per kernel and round")
    parser.add_argument("--max-residues", type=int, default=int(defaults["max_residues"]))
    parser.add_argument("--max-tokens", type=int, default=int(defaults["max_tokens"]))
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--device", default="auto", help="auto: a CUDA GPU when torch sees one, else the CPU")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = select_device(args.device)
    precision = resolve_precision(args.precision, device)
    model = random_classifier(esm2_config(), 0, "eager", pooling="mean").to(device).train()
    optimizer = adamw(model, 2e-4, 0.01, fused=True)
    input_ids, mask, labels = (tensor.to(device) for tensor in random_batch(args.max_residues, args.max_tokens, 0))
    tokens = int(mask.sum())

    def loss_under(kernel: str) -> torch.Tensor:
        """Cross-entropy of the batch with `kernel`, forward under the run's precision."""
        model.set_attn_implementation(kernel)
        with autocast(device, precision):
            logits = model(input_ids=input_ids, attention_mask=mask).logits
        return torch.nn.functional.cross_entropy(logits.float(), labels)

    def gradients(kernel: str) -> list[torch.Tensor]:
        """The loss and every parameter gradient under `kernel`."""
        model.zero_grad()
        loss = loss_under(kernel)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]

    exact = all(torch.equal(a, b) for a, b in zip(gradients("eager"), gradients(UNSCALED_EAGER)))
    print(f"{device_name(device)}, {torch.get_num_threads()} CPU threads, precision {precision}; batch "
          f"{len(labels)} chains x {input_ids.shape[1]} tokens ({tokens} real)")
    print(f"{UNSCALED_EAGER} equals eager bit for bit (loss and gradients): {exact}")

    def step(kernel: str) -> None:
        """One training step, as `kn_utils.training.train` takes it."""
        optimiser_step(model, optimizer, loss_under(kernel), grad_clip=1.0)

    kernels = ["eager", UNSCALED_EAGER, LEAN_EAGER, "sdpa"]
    rates: dict[str, list[float]] = {kernel: [] for kernel in kernels}
    for kernel in kernels:  # first calls allocate and pick algorithms
        step(kernel)
    for _ in range(args.rounds):
        for kernel in kernels:
            step(kernel)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(kernel)
            synchronize(device)
            rates[kernel].append(tokens * args.steps / (time.perf_counter() - start))
    base = statistics.median(rates["eager"])
    for kernel in kernels:
        median = statistics.median(rates[kernel])
        print(f"{kernel:17s} {median:8,.0f} tokens/s  {median / base:5.2f}x eager   "
              f"rounds {[round(rate) for rate in rates[kernel]]}")


if __name__ == "__main__":
    with fused_gelu():
        main()
