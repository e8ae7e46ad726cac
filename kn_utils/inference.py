"""Inference helpers every stage shares: length-bucketed batches, the autocast of a precision, and class logits.

Scoring, ablation and class-neuron code import these without depending on the training loop.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from tqdm import tqdm

from .alphabet import encode, pad_batch
from .attention import attention_implementation, attention_kernel
from .kernels import fused_gelu
from .model import resolve_precision


def length_batches(lengths: np.ndarray, max_tokens: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Group indices of similar length so a padded batch holds at most `max_tokens` tokens.

    With `rng`, ties are broken at random and batch order shuffled (training); without, order is fixed (evaluation).
    """
    noise = rng.random(len(lengths)) if rng is not None else np.arange(len(lengths)) / max(len(lengths), 1)
    order = np.lexsort((noise, lengths))
    batches, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * lengths[order[stop]] <= max_tokens:
            stop += 1
        batches.append(order[start:stop])
        start = stop
    if rng is not None:
        rng.shuffle(batches)
    return batches


def token_batches(tokens: list[list[int]], max_tokens: int):
    """Length-bucketed (indices, input_ids, attention_mask) of encoded sequences, at most `max_tokens` tokens each, in
    a fixed order (evaluation)."""
    for batch in length_batches(np.array([len(t) for t in tokens]), max_tokens):
        input_ids, mask = pad_batch([tokens[i] for i in batch])
        yield batch, input_ids, mask


def autocast(device: torch.device, precision: str):
    """bf16 autocast context for `precision='bf16'`, a no-op for 'fp32' (callers resolve `auto` first: resolve_precision)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"autocast takes a resolved precision, 'bf16' or 'fp32', not {precision!r}")
    return nullcontext()


@torch.inference_mode()
def predict_logits(model, sequences: list[str], max_residues: int, max_tokens: int = 8192,
                   precision: str = "fp32", progress: bool = False, fused_kernels: bool = True) -> np.ndarray:
    """Class logits for each sequence (first `max_residues` residues), batched by length; float32 numpy.

    `fused_kernels`: GELU in torch's one fused kernel (kernels.fused_gelu: the same function; benchmarks/inference.py).
    """
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    tokens = [encode(sequence, max_residues) for sequence in sequences]
    lengths = np.array([len(t) for t in tokens])
    logits = np.zeros((len(sequences), model.config.num_labels), dtype=np.float32)
    with attention_implementation(model, attention_kernel(precision, device)), fused_gelu(fused_kernels):
        for batch in tqdm(length_batches(lengths, max_tokens), disable=not progress, desc="predict"):
            input_ids, mask = pad_batch([tokens[i] for i in batch])
            with autocast(device, precision):
                out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            logits[batch] = out.float().cpu().numpy()
    model.train(was_training)
    return logits
