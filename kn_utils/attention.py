"""Attention kernels: the one each precision and device runs (an exact trim of the stock eager kernel under bf16 on CPU),
and a faster eager kernel for bf16 on CPU (opt-in)."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

LEAN_EAGER = "kn_eager"
UNSCALED_EAGER = "kn_eager_unscaled"


def trimmed_eager_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None, dropout: float,
                            mask_in_scores_dtype: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformers' eager attention less a multiplication by a scaling of 1.0 (ESM scales the query before its rotary
    embedding and passes 1.0 here); with `mask_in_scores_dtype` the padding mask is cast to the scores' dtype first."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3))
    if scaling != 1.0:
        scores = scores * scaling
    if attention_mask is not None:
        if mask_in_scores_dtype:
            attention_mask = attention_mask.clamp(min=torch.finfo(scores.dtype).min).to(scores.dtype)
        scores = scores + attention_mask
    probabilities = torch.nn.functional.softmax(scores, dim=-1)
    probabilities = torch.nn.functional.dropout(probabilities, p=dropout, training=module.training)
    output = torch.matmul(probabilities.to(value.dtype), value)
    return output.transpose(1, 2).contiguous(), probabilities


def unscaled_eager_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                             **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformers' eager attention without its multiplication of the scores by a scaling of 1.0 (ESM's).

    x * 1.0 is x in every dtype, so logits and gradients are the stock kernel's bit for bit (`tests/test_attention.py`;
    `benchmarks/attention.py` checks it before timing), and the (batch, heads, length, length) scores are passed over
    once less forward and backward. The float32 padding mask still promotes the scores, so softmax runs in float32 as
    in the stock kernel.
    """
    return trimmed_eager_attention(module, query, key, value, attention_mask, scaling, dropout,
                                   mask_in_scores_dtype=False)


def lean_eager_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                         **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformers' eager attention with scores and probabilities kept in the inputs' dtype (bf16 under autocast).

    Not the default: training keeps the stock kernel's arithmetic (`attention_kernel`); pass
    `attn_implementation="kn_eager"` to opt in. Two full fine-tuning runs with it scored below three seeds with the
    stock kernel, by less than the test set's sampling error (docs/running.md, Attention kernel), so the record's arithmetic
    stays the default.

    The stock kernel adds its float32 padding mask to the bf16 scores, so softmax and its backward run over float32
    copies of the (batch, heads, length, length) scores, and it multiplies them by ESM's scaling of 1.0. Here the
    mask is cast to the scores' dtype instead and a scaling of 1.0 is skipped: the forward values are the stock
    kernel's to bf16 rounding (the probabilities reach the value matmul in bf16 either way), and a bf16 training step
    of ESM-2 8M is faster on CPU (docs/running.md, Attention kernel). In float32 it computes exactly what the stock kernel does.
    """
    return trimmed_eager_attention(module, query, key, value, attention_mask, scaling, dropout,
                                   mask_in_scores_dtype=True)


AttentionInterface.register(UNSCALED_EAGER, unscaled_eager_attention)
AttentionMaskInterface.register(UNSCALED_EAGER, eager_mask)
AttentionInterface.register(LEAN_EAGER, lean_eager_attention)
AttentionMaskInterface.register(LEAN_EAGER, eager_mask)  # the same additive padding mask the stock eager kernel gets


def attention_kernel(precision: str, device: torch.device | str = "cpu") -> str:
    """The attention kernel a resolved precision and device run: SDPA in fp32 and on GPUs (fused kernels), the stock
    eager kernel's exact trim `kn_eager_unscaled` under bf16 on CPU (SDPA's bf16 path there is several times slower)."""
    return "sdpa" if precision == "fp32" or torch.device(device).type != "cpu" else UNSCALED_EAGER


@contextmanager
def attention_implementation(model, implementation: str):
    """Switch the model's attention kernel for a block, restoring the caller's afterwards."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)
