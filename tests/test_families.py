"""Neuron families: q/k/v outputs, feed-forward intermediate units, attention heads; one index, one gate, one hook."""
import numpy as np
import pytest
import torch

from kn_utils.alphabet import encode
from kn_utils.attribution import completeness_summary, integrated_gradients
from kn_utils.class_neurons import matched_random
from kn_utils.neurons import NeuronIndex, gated, hook_count, parse_family, recording, use_family

SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MNIFEMLRIDEGLRLKIYKDTEGY", "GSHMSLFDKLKGLVGKEKPLTG"]


def _logits(model, sequence="MKTAYIAKQRQISFVKSHFSRQ"):
    ids = torch.tensor([encode(sequence)])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_family_specs_are_parsed_in_one_order_and_a_typo_is_refused():
    assert parse_family("ffn+qkv") == ("qkv", "ffn") and parse_family("ffn+heads") == ("heads", "ffn")
    with pytest.raises(ValueError, match="unknown \\['mlp'\\]"):
        parse_family("qkv+mlp")


def test_the_index_of_every_family_round_trips_and_keeps_the_qkv_ids(tiny_model):
    qkv = NeuronIndex.of(tiny_model)
    every = NeuronIndex.of(tiny_model, "qkv+ffn+heads")
    assert every.kinds == ("query", "key", "value", "head", "ffn") and every.size == 2 * (3 * 16 + 4 + 32)
    assert all(every.flat(*every.address(i)) == i for i in range(every.size))
    assert every.name(every.flat(1, "ffn", 3)) == "L1.ffn.3" and every.name(every.flat(0, "head", 2)) == "L0.head.2"
    assert [qkv.name(i) for i in range(48)] == [every.name(i) for i in range(48)]  # layer 0's q/k/v ids unchanged
    table = every.table()
    assert table["projection"].value_counts().to_dict() == {"ffn": 64, "query": 32, "key": 32, "value": 32, "head": 8}
    use_family(tiny_model, "ffn")
    assert NeuronIndex.of(tiny_model).family == "ffn" and NeuronIndex.of(tiny_model, "qkv").size == 96


def _remove_ffn_unit(model):
    dense = model.esm.encoder.layer[1].intermediate.dense
    dense.weight[5] = 0
    dense.bias[5] = 0  # GELU(0) = 0: the unit is off


def _remove_head(model):
    model.esm.encoder.layer[0].attention.output.dense.weight[:, 8:12] = 0  # head 2 of 4, 4 dims each


@pytest.mark.parametrize("family, unit, remove", [("ffn", (1, "ffn", 5), _remove_ffn_unit),
                                                  ("heads", (0, "head", 2), _remove_head)])
def test_a_gate_at_zero_is_the_unit_removed_from_the_weights(tiny_model, family, unit, remove):
    import copy

    use_family(tiny_model, family)
    index = NeuronIndex.of(tiny_model)
    gates = torch.ones(index.size)
    gates[index.flat(*unit)] = 0
    with gated(tiny_model, gates):
        hooked = _logits(tiny_model)
    edited = copy.deepcopy(tiny_model)
    with torch.no_grad():
        remove(edited)
    torch.testing.assert_close(hooked, _logits(edited), rtol=0, atol=1e-6)
    assert not torch.allclose(hooked, _logits(tiny_model)) and hook_count(tiny_model) == 0


def test_mean_ablation_of_heads_is_refused(tiny_model):
    use_family(tiny_model, "heads")
    size = NeuronIndex.of(tiny_model).size
    with pytest.raises(ValueError, match="mean ablation .* not defined for attention heads"):
        with gated(tiny_model, torch.ones(size), offsets=torch.zeros(size)):
            pass


def test_recording_gives_one_column_per_unit_of_the_family(tiny_model):
    use_family(tiny_model, "qkv+ffn+heads")
    index = NeuronIndex.of(tiny_model)
    ids = torch.tensor([encode(SEQUENCES[0])])
    with recording(tiny_model) as outputs, torch.no_grad():
        tiny_model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert [output.shape[-1] for output in outputs] == index.widths
    heads = outputs[3]  # layer 0's head block: mean |context| of each head's 4 dims
    assert heads.shape == (1, ids.shape[1], 4) and (heads >= 0).all()


@pytest.mark.parametrize("family", ["ffn", "heads", "qkv+ffn"])
def test_ig_is_complete_for_every_family(tiny_model, family):
    use_family(tiny_model, family)
    labels = np.array([0, 3, 5])
    ig = integrated_gradients(tiny_model, SEQUENCES, labels, 64, steps=8, tolerance=0.01, panels=2, max_depth=4)
    assert ig["attributions"].shape == (3, NeuronIndex.of(tiny_model).size)
    assert completeness_summary(ig)["within_bound"]


def test_matched_random_sets_keep_the_block_make_up_of_uneven_blocks(tiny_model):
    index = NeuronIndex.of(tiny_model, "qkv+ffn+heads")
    ids = np.array([index.flat(0, "ffn", u) for u in range(10)] + [index.flat(1, "head", 1), index.flat(1, "key", 0)])
    drawn = matched_random(ids, index, seed=0)
    kinds = [index.address(i)[:2] for i in drawn]
    assert sorted(kinds) == sorted(index.address(i)[:2] for i in ids) and not set(drawn) & set(ids)
