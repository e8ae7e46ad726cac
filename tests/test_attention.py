"""The trimmed eager attention kernels (unscaled: the bf16 CPU default; lean: opt-in): the stock kernel's values,
padding masked; kernels switched and restored."""
from __future__ import annotations

import warnings

import pytest
import torch

from kn_utils.alphabet import encode, pad_batch
from kn_utils.attention import LEAN_EAGER, UNSCALED_EAGER, attention_implementation, attention_kernel
from kn_utils.model import random_classifier
from kn_utils.pretraining import MLMConfig, masked_lm, pretrain_mlm

SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MNIFEMLRIDEGLRLKIYKDTEG", "GSHMSLFDKLKGLVGKEKPLTGGAVSLL"]


def logits_and_gradients(model, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch's logits and the flattened parameter gradients of its cross-entropy."""
    input_ids, mask = pad_batch([encode(sequence, 64) for sequence in SEQUENCES])
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(input_ids=input_ids, attention_mask=mask).logits
    torch.nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1, 2])).backward()
    return logits.detach().float(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("kernel", [UNSCALED_EAGER, LEAN_EAGER])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_trimmed_kernels_match_the_stock_eager_kernel(tiny_config, precision, kernel):
    """Both give the stock values exactly in fp32. Under bf16 autocast the unscaled kernel (the default there) still
    does, bit for bit; the lean one matches to bf16 rounding, gradients included."""
    tiny_config.num_labels = 3
    model = random_classifier(tiny_config, 0, "eager", pooling="mean").train()
    stock_logits, stock_gradients = logits_and_gradients(model, precision)
    with attention_implementation(model, kernel):
        logits, gradients = logits_and_gradients(model, precision)
    assert model.config._attn_implementation == "eager"
    if precision == "fp32" or kernel == UNSCALED_EAGER:
        assert torch.equal(logits, stock_logits) and torch.equal(gradients, stock_gradients)
    else:
        assert torch.allclose(logits, stock_logits, atol=0.02)
        assert (gradients - stock_gradients).norm() < 0.05 * stock_gradients.norm()


@pytest.mark.parametrize("kernel", [UNSCALED_EAGER, LEAN_EAGER])
def test_trimmed_kernels_ignore_padding(tiny_config, kernel):
    """A padded sequence scores as it does alone: the kernel gets and applies the padding mask."""
    model = random_classifier(tiny_config, 0, kernel, pooling="mean").eval()
    input_ids, mask = pad_batch([encode(sequence, 64) for sequence in SEQUENCES])
    alone_ids, alone_mask = pad_batch([encode(SEQUENCES[1], 64)])
    with torch.no_grad():
        padded = model(input_ids=input_ids, attention_mask=mask).logits[1]
        alone = model(input_ids=alone_ids, attention_mask=alone_mask).logits[0]
        unmasked = model(input_ids=input_ids, attention_mask=torch.ones_like(mask)).logits[1]
    assert torch.allclose(padded, alone, atol=1e-5)
    assert not torch.allclose(unmasked, alone, atol=1e-3)  # padding attended to would move the logits


def test_mlm_warm_start_runs_the_kernel_of_its_precision_and_restores_the_callers(tiny_config, tmp_path, monkeypatch):
    """The MLM loop switches to `attention_kernel(precision)` and gives the model back with the caller's kernel."""
    model = masked_lm(tiny_config, 0)
    model.set_attn_implementation(LEAN_EAGER)
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: (seen.append(model.config._attn_implementation),
                                                                  forward(*args, **kwargs))[1])
    config = MLMConfig(steps=2, max_tokens=128, max_residues=40, precision="bf16", log_every=1, checkpoint_every=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 on a CPU without it
        pretrain_mlm(model, SEQUENCES, config, tmp_path)
    assert seen and set(seen) == {attention_kernel("bf16")} and model.config._attn_implementation == LEAN_EAGER
