"""Submodels: selection rules, masked model = hand-edited weights, restoring is exact."""
import copy

import numpy as np
import pytest
import torch

from kn_utils.ablation import keep_count, keep_mask, select, select_matched, select_random, submodel
from kn_utils.alphabet import encode, pad_batch
from kn_utils.neurons import NeuronIndex, hook_count, projections

SEQUENCES = ["MKTAYIAKQRQISFVKSHF", "MNIFEMLRID", "GSHMSLFDKLKGLVGKEKPLTG"]


def _logits(model):
    input_ids, mask = pad_batch([encode(s) for s in SEQUENCES])
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).logits


def test_selection_rules():
    scores = np.array([0.5, 3.0, -1.0, 3.0, 2.0, 0.0])
    assert select(scores, 0.5).tolist() == [1, 3, 4]
    assert select(scores, 0.5, "low").tolist() == [0, 2, 5]
    assert select(scores, 1 / 6).tolist() == [1]  # tie between 1 and 3 broken by id
    assert keep_count(5760, 0.01) == 58 and keep_count(10, 0.01) == 1
    with pytest.raises(ValueError, match="keep_fraction"):
        select(scores, 0)
    first, again, other = select_random(5760, 0.1, 1), select_random(5760, 0.1, 1), select_random(5760, 0.1, 2)
    assert len(first) == 576 and np.array_equal(first, again) and not np.array_equal(first, other)


def test_matched_selection_keeps_equal_numbers_per_projection(tiny_model):
    index = NeuronIndex.of(tiny_model)
    scores = np.arange(index.size, dtype=float)  # the last layer's value units score highest
    kept = select_matched(scores, index, 0.25)
    table = index.table().iloc[kept]
    assert table.groupby("projection").size().tolist() == [8, 8, 8]
    assert set(select(scores, 0.25)) != set(kept)


def test_submodel_equals_hand_edited_weights_and_restores_bit_for_bit(tiny_model):
    index = NeuronIndex.of(tiny_model)
    original = _logits(tiny_model)
    kept = select_random(index.size, 0.3, seed=0)
    with submodel(tiny_model, kept):
        masked = _logits(tiny_model)
        assert hook_count(tiny_model) == 6
    edited = copy.deepcopy(tiny_model)
    mask = keep_mask(index.size, kept)
    with torch.no_grad():
        for module, block in zip(projections(edited), index.split(mask)):
            module.weight.mul_(block[:, None])
            module.bias.mul_(block)
    torch.testing.assert_close(masked, _logits(edited), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(masked, original)
    assert hook_count(tiny_model) == 0 and torch.equal(_logits(tiny_model), original)
    with submodel(tiny_model, np.arange(index.size)):  # keeping everything is the model itself
        assert torch.equal(_logits(tiny_model), original)


def test_mean_ablation_replaces_outputs_by_their_means(tiny_model):
    index = NeuronIndex.of(tiny_model)
    means = np.linspace(-1, 1, index.size)
    kept = np.arange(0, index.size, 2)
    with submodel(tiny_model, kept, "mean", means):
        mean_ablated = _logits(tiny_model)
    edited = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for module, keep, mean in zip(projections(edited), index.split(keep_mask(index.size, kept)),
                                      index.split(torch.tensor(means, dtype=torch.float32))):
            module.weight.mul_(keep[:, None])
            module.bias.mul_(keep).add_((1 - keep) * mean)
    torch.testing.assert_close(mean_ablated, _logits(edited), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mean ablation needs"):
        with submodel(tiny_model, kept, "mean"):
            pass
