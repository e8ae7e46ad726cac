"""The fused GELU and AdamW the training loops and inference stages use: transformers' values to rounding, switched
on only where asked."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers.models.esm.modeling_esm as modeling_esm

from kn_utils.alphabet import encode, pad_batch
from kn_utils.kernels import fused_gelu
from kn_utils.model import random_classifier
from kn_utils.motifs import activation_peaks
from kn_utils.pretraining import MLMConfig, masked_lm, pretrain_mlm
from kn_utils.attribution import integrated_gradients
from kn_utils.scoring import activation_scores
from kn_utils.inference import predict_logits
from kn_utils.training import TrainConfig, adamw, optimiser_step, train
from test_attention import SEQUENCES, logits_and_gradients


def test_fused_gelu_is_transformers_gelu_to_float32_rounding():
    """Same function: within 2e-6 of transformers' ESM gelu in float32 over [-12, 12], and of its float64 value."""
    states = torch.linspace(-12, 12, 100_001)
    stock = modeling_esm.gelu(states)
    with fused_gelu():
        fused = modeling_esm.gelu(states)
    exact = modeling_esm.gelu(states.double())
    assert (fused - stock).abs().max() < 2e-6 and (fused.double() - exact).abs().max() < 2e-6
    assert not torch.equal(fused, stock)  # a different kernel did compute it


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_model_with_fused_gelu_matches_the_stock_model(tiny_config, precision):
    """A padded batch's logits and gradients with the fused GELU equal transformers' to rounding of the precision."""
    tiny_config.num_labels = 3
    model = random_classifier(tiny_config, 0, "eager", pooling="mean").train()
    stock_logits, stock_gradients = logits_and_gradients(model, precision)
    with fused_gelu():
        fused_logits, fused_gradients = logits_and_gradients(model, precision)
    tolerance = 1e-5 if precision == "fp32" else 0.02
    assert torch.allclose(fused_logits, stock_logits, atol=tolerance)
    assert (fused_gradients - stock_gradients).norm() < tolerance * 5 * stock_gradients.norm()


def test_fused_gelu_restores_transformers_gelu_after_an_error_and_when_disabled():
    """The swap lasts only for the block, even one that raises; `enabled=False` leaves transformers' in place."""
    stock = modeling_esm.gelu
    with pytest.raises(RuntimeError), fused_gelu():
        assert modeling_esm.gelu is not stock
        raise RuntimeError("inside the block")
    assert modeling_esm.gelu is stock
    with fused_gelu(enabled=False):
        assert modeling_esm.gelu is stock


def test_fused_adamw_takes_the_same_steps_as_the_loop(tiny_config):
    """Three optimiser steps with the fused update leave the weights where the per-parameter loop leaves them."""
    input_ids, mask = pad_batch([encode(sequence, 64) for sequence in SEQUENCES])
    weights = []
    for fused in (False, True):
        model = random_classifier(tiny_config, 0, "eager", pooling="mean").train()
        optimizer = adamw(model, 1e-2, 0.01, fused=fused)
        assert bool(optimizer.defaults["fused"]) == fused
        for _ in range(3):
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            optimiser_step(model, optimizer, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])), 1.0)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    initial = torch.cat([p.detach().flatten() for p in random_classifier(tiny_config, 0, "eager").parameters()])
    assert torch.allclose(weights[0], weights[1], atol=1e-6) and not torch.allclose(weights[0], initial, atol=1e-4)


@pytest.fixture
def counted_gelu(monkeypatch):
    """Counts of calls to the fused GELU and to transformers' own, and the counting stock function installed."""
    stock = modeling_esm.gelu
    calls = {"fused": 0, "stock": 0}
    monkeypatch.setattr("kn_utils.kernels.gelu", lambda states: (calls.__setitem__("fused", calls["fused"] + 1),
                                                                 torch.nn.functional.gelu(states))[1])
    monkeypatch.setattr(modeling_esm, "gelu", lambda states: (calls.__setitem__("stock", calls["stock"] + 1),
                                                              stock(states))[1])
    return calls, modeling_esm.gelu


def test_training_loops_use_the_fused_kernels_only_while_they_run(tiny_config, tmp_path, counted_gelu):
    """Fine-tuning and the MLM warm start call the fused GELU (and a fused AdamW) by default, the stock ones with
    `fused_kernels=False`, and leave transformers' GELU in place when they return."""
    calls, counting_stock = counted_gelu
    labels = np.array([0, 1, 2])
    for fused in (True, False):
        calls.update(fused=0, stock=0)
        model = random_classifier(tiny_config, 0, "eager", pooling="mean")
        config = TrainConfig(epochs=1, max_tokens=256, max_residues=40, precision="fp32", pooling="mean",
                             fused_kernels=fused)
        train(model, SEQUENCES, labels, [], labels[:0], config, tmp_path / f"train-{fused}")
        pretrain_mlm(masked_lm(tiny_config, 0), SEQUENCES, MLMConfig(steps=1, max_tokens=256, max_residues=40,
                     precision="fp32", fused_kernels=fused), tmp_path / f"mlm-{fused}")
        assert (calls["fused"] > 0, calls["stock"] > 0) == (fused, not fused)
        assert modeling_esm.gelu is counting_stock


def test_inference_stages_use_the_fused_gelu_by_default_and_match_the_stock_one(tiny_config, counted_gelu):
    """Prediction, activation scores, integrated gradients and activation peaks run the fused GELU unless
    `fused_kernels=False`, restore transformers' afterwards, and give its figures to float32 rounding."""
    calls, counting_stock = counted_gelu
    model = random_classifier(tiny_config, 0, "eager", pooling="mean").eval()
    labels = np.array([0, 1, 2])
    stages = {
        "logits": lambda fused: predict_logits(model, SEQUENCES, 40, max_tokens=128, fused_kernels=fused),
        "activations": lambda fused: activation_scores(model, SEQUENCES, labels, 40, max_tokens=128,
                                                       fused_kernels=fused)["per_example"],
        "attributions": lambda fused: integrated_gradients(model, SEQUENCES, labels, 40, steps=4, max_tokens=512,
                                                           fused_kernels=fused)["attributions"],
        "peaks": lambda fused: activation_peaks(model, SEQUENCES, np.arange(48, 96, 6), 40,  # layer 2: after a GELU
                                                 fused_kernels=fused)[0],
    }
    for name, stage in stages.items():
        results = {}
        for fused in (True, False):
            calls.update(fused=0, stock=0)
            results[fused] = stage(fused)
            assert (calls["fused"] > 0, calls["stock"] > 0) == (fused, not fused), name
            assert modeling_esm.gelu is counting_stock, name
        scale = np.abs(results[False]).max()
        assert np.abs(results[True] - results[False]).max() <= 1e-5 * scale, name
        assert not np.array_equal(results[True], results[False]), name  # a different kernel did compute it
