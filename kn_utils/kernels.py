"""A fused GELU for ESM while a model trains or predicts: the same function as transformers' ESM `gelu`, in one pass.

transformers' ESM computes GELU as five elementwise operations, `x * 0.5 * (1 + erf(x / sqrt 2))`, each with its own
backward, over the (batch, position, 1,280) output of every layer's feed-forward projection; on CPU these passes cost
about a sixth of a bf16 training step of ESM-2 8M (docs/running.md, Training kernels). torch's `gelu` computes the same exact
(erf) GELU in one fused kernel, forward and backward: in float32 the two differ by at most about 1e-6 (measured against
float64), and in bf16 torch's rounds once instead of at each of the five steps. `fused_gelu()` swaps it in for a block
and restores transformers' own afterwards: the fine-tuning and masked-LM loops (`fused_kernels` in their configs) and
the inference stages (`inference.predict_logits`, `scoring.activation_scores` and `integrated_gradients`,
`motifs.activation_peaks`; `fused_kernels=False` gives the stock GELU). Outside those calls a model runs
transformers' code unchanged; `benchmarks/inference.py` measures what the swap buys each stage.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import transformers.models.esm.modeling_esm as modeling_esm


def gelu(states: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU in one fused kernel, with its fused backward."""
    return torch.nn.functional.gelu(states)


@contextmanager
def fused_gelu(enabled: bool = True):
    """Within the block, ESM models compute GELU with torch's fused kernel (`enabled`); transformers' own after."""
    previous = modeling_esm.gelu
    if enabled:
        modeling_esm.gelu = gelu
    try:
        yield
    finally:
        modeling_esm.gelu = previous
