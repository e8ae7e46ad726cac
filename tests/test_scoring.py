"""Neuron addressing, hooks, activation scores and score tables on a tiny ESM-2."""
import numpy as np
import pytest
import torch

from kn_utils.alphabet import encode, pad_batch
from kn_utils.model import random_classifier, esm2_config
from kn_utils.neurons import NeuronIndex, gated, hook_count, recording
from kn_utils.scoring import activation_scores

SEQUENCES = ["MKTAYIAKQRQISFVKSHF", "MNIFEMLRID", "GSHMSLFDKLKGLVGKEKPLTG", "MADQLTEEQ"]
LABELS = np.array([0, 3, 5, 1])


def test_index_is_derived_from_the_model(tiny_model):
    index = NeuronIndex.of(tiny_model)
    assert (index.n_layers, index.units, index.size) == (2, 16, 2 * 3 * 16)
    for flat in range(index.size):
        assert index.flat(*index.address(flat)) == flat
    assert index.address(16 + 5) == (0, "key", 5) and index.address(3 * 16) == (1, "query", 0)
    table = index.table()
    assert len(table) == index.size and table.groupby("projection").size().tolist() == [32, 32, 32]
    bigger = random_classifier(esm2_config(hidden_size=24, num_hidden_layers=3, num_attention_heads=4, intermediate_size=32), 0, "eager")
    assert NeuronIndex.of(bigger).size == 3 * 3 * 24


def _logits(model, sequences=SEQUENCES):
    input_ids, mask = pad_batch([encode(s) for s in sequences])
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).logits


def test_scaling_weight_row_and_bias_equals_scaling_the_output(tiny_config):
    model = random_classifier(tiny_config, 0, "eager").eval()
    index = NeuronIndex.of(model)
    alpha, flat = 0.37, index.flat(1, "key", 7)
    gates = torch.ones(index.size)
    gates[flat] = alpha
    with gated(model, gates):
        via_gate = _logits(model)
    layer, projection, unit = index.address(flat)
    module = getattr(model.esm.encoder.layer[layer].attention.self, projection)
    with torch.no_grad():
        module.weight[unit] *= alpha
        module.bias[unit] *= alpha
    torch.testing.assert_close(via_gate, _logits(model), rtol=1e-5, atol=1e-6)


def test_hooks_never_outlive_their_block(tiny_model):
    index = NeuronIndex.of(tiny_model)
    with pytest.raises(RuntimeError):
        with gated(tiny_model, torch.zeros(index.size)):
            assert hook_count(tiny_model) == 6
            raise RuntimeError("boom")
    assert hook_count(tiny_model) == 0
    with recording(tiny_model) as outputs:
        _logits(tiny_model)
    assert len(outputs) == 6 and hook_count(tiny_model) == 0
    with pytest.raises(ValueError, match="gates have 5 entries"):
        with gated(tiny_model, torch.ones(5)):
            pass


def test_activation_scores_skip_padding_and_special_tokens(tiny_model):
    scores = activation_scores(tiny_model, SEQUENCES, LABELS, max_residues=64, max_tokens=64)
    index = NeuronIndex.of(tiny_model)
    for row, sequence in enumerate(SEQUENCES):  # one sequence alone, no padding: the same means
        input_ids, mask = pad_batch([encode(sequence)])
        with recording(tiny_model) as outputs, torch.no_grad():
            tiny_model(input_ids=input_ids, attention_mask=mask)
        expected = torch.cat(outputs, -1)[0, 1:-1].abs().double().mean(0).numpy()
        np.testing.assert_allclose(scores["per_example"][row], expected, rtol=1e-5)
    assert scores["mean"].shape == (index.size,) and scores["per_class"].shape == (6, index.size)
    np.testing.assert_allclose(scores["per_class"][5], scores["per_example"][2])
    assert np.isnan(scores["per_class"][2]).all()


def test_score_summaries_per_projection_block_and_class():
    from kn_utils.scoring import (mean_by_block, mean_by_projection, median_class_variation, score_table,
                                  signed_share_by_projection, top_rows)

    index = NeuronIndex(2, 4)
    values = np.arange(index.size, dtype=float)  # flat id as the score: layer 1's value units highest
    table = score_table(index, {"activation": values, "ig_signed": values - 10, "ig_absolute": values})
    assert mean_by_projection(table, "activation") == {"query": 7.5, "key": 11.5, "value": 15.5}
    blocks = mean_by_block(table, "activation")
    assert blocks.columns.tolist() == ["query", "key", "value"] and blocks.loc[1, "value"] == pytest.approx(21.5)
    assert [row["unit"] for row in top_rows(table, "activation", 2)] == [3, 2] and top_rows(table, "activation", 1)[0]["layer"] == 1
    shares = signed_share_by_projection(table)
    assert shares.index.tolist() == ["query", "key", "value"] and shares["share_of_signed_total"].sum() == pytest.approx(1)
    assert shares.loc["query", "ig_signed"] == pytest.approx(7.5 * 8 - 80)
    per_class = np.stack([values + 1, values + 1, values + 1])
    assert median_class_variation(per_class, values + 1) == 0.0  # no class dependence at all
    assert median_class_variation(np.stack([(values + 1) * 0.5, (values + 1) * 1.5]), values + 1) == pytest.approx(0.5)
