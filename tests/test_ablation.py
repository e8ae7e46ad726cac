"""Submodels: selection rules, masked model = hand-edited weights, restoring is exact."""
import copy

import numpy as np
import pandas as pd
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


def _sweep() -> pd.DataFrame:
    """A sweep table as run_sweep writes it, with accuracies chosen so every table below has one right answer."""
    rows = [{"method": "full", "direction": "-", "ablation": "none", "keep_fraction": 1.0, "seed": -1, "matched": False,
             "accuracy": 0.9}]
    for fraction, base in ((0.5, 0.6), (0.1, 0.4)):
        rows += [{"method": "random", "direction": "-", "ablation": "zero", "keep_fraction": fraction, "seed": seed,
                  "matched": False, "accuracy": base - 0.1 + 0.05 * seed} for seed in range(3)]
        rows += [{"method": method, "direction": direction, "ablation": "zero", "keep_fraction": fraction, "seed": -1,
                  "matched": False, "accuracy": base + shift}
                 for method, direction, shift in (("activation", "high", 0.01), ("activation", "low", -0.01),
                                                  ("ig_signed", "high", 0.2), ("ig_signed", "low", -0.3),
                                                  ("ig_absolute", "high", 0.1), ("ig_absolute", "low", -0.2))]
        rows += [{"method": method, "direction": "high", "ablation": "zero", "keep_fraction": fraction, "seed": -1,
                  "matched": True, "accuracy": base + shift} for method, shift in (("activation", 0.02), ("ig_signed", 0.15))]
        rows += [{"method": "ig_signed", "direction": "high", "ablation": "mean", "keep_fraction": fraction, "seed": -1,
                  "matched": False, "accuracy": base + 0.25}]
    return pd.DataFrame(rows)


def test_direction_table_and_high_minus_low_read_the_plain_zero_ablated_rows():
    from kn_utils.ablation import direction_table, high_minus_low

    table = direction_table(_sweep())
    assert table.index.tolist() == [0.5, 0.1]  # largest kept fraction first
    assert table.loc[0.5, "ig_signed (high)"] == pytest.approx(0.8) and table.loc[0.1, "ig_absolute (low)"] == pytest.approx(0.2)
    assert table.loc[0.5, "random (mean)"] == pytest.approx(0.55)  # mean of 0.5, 0.55, 0.6: matched and mean rows left out
    assert high_minus_low(table, [0.5, 0.1]) == {"50%": 0.5, "10%": 0.5}
    assert high_minus_low(table, [0.1], "ig_absolute") == {"10%": 0.3}


def test_matched_mean_ablation_and_full_model_tables():
    from kn_utils.ablation import full_accuracy, matched_table, mean_ablation_table, plain_zero, table1

    results = _sweep()
    matched = matched_table(results)
    assert list(matched.columns) == ["activation matched", "ig_signed matched", "activation unmatched", "ig_signed unmatched"]
    assert matched.loc[0.1, "ig_signed matched"] == pytest.approx(0.55) and matched.loc[0.1, "ig_signed unmatched"] == pytest.approx(0.6)
    mean = mean_ablation_table(results)
    assert mean.columns.tolist() == ["IG signed (high), mean-ablated"] and mean.loc[0.5].item() == pytest.approx(0.85)
    assert full_accuracy(results) == 0.9 and len(plain_zero(results)) == 2 * (3 + 6)
    assert table1(results, [0.5, 0.1]).loc["IG signed (high)", "50%"] == "0.8000"
