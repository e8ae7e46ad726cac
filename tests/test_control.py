"""The positive control's checks against planted truth: each answers yes where the truth is there and no where not."""
import numpy as np
import pandas as pd
import pytest

from kn_utils import control
from kn_utils.neurons import NeuronIndex, projections


def test_precision_at_k_finds_planted_neurons_and_the_shuffled_null_does_not():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], 20)
    attributions = rng.normal(0, 1, (80, 100))
    for label, first in enumerate([0, 50, 20, 70]):  # class 0 rests on neurons 0-4, class 1 on 50-54, ...: a
        attributions[np.ix_(labels == label, np.arange(first, first + 5))] += 3.0  # class-blind ranking mixes them
    response = np.zeros(100)
    response[:10] = 1.0  # ... which are among the 10 that fire on its motif
    table = control.precision_table(attributions, labels, {0: response}, ["a", "b", "c", "d"], k=5, responsive_count=10,
                                    permutations=200, seed=0, method_scores={"other": np.tile(np.arange(100.0), (4, 1))})
    row = table.loc["a"]
    assert row["IG precision@k"] == 1.0 and row["other precision@k"] == 0.0 and row["chance"] == 0.1
    assert row["shuffled labels mean"] < 0.5 and row["p_value"] < 0.05
    unrelated = control.precision_table(attributions, labels, {0: -response}, ["a", "b", "c", "d"], 5, 10, 200, 0)
    assert unrelated.loc["a", "IG precision@k"] == 0.0 and unrelated.loc["a", "p_value"] > 0.5


def test_motif_response_is_high_for_a_neuron_that_fires_on_the_motif_only(tiny_model):
    from kn_utils.alphabet import encode

    index = NeuronIndex.of(tiny_model)
    target, w_token = 3, encode("W", 8)[1]  # unit 3 of layer 0's query is made to output 5 on W residues, 0 elsewhere
    sequences = ["MKTAYWWWWAKQRQISF", "MNIFEMLRWWWWIDEGL", "GSHMSLFDKLKGLVG"]
    spans = [(5, 9), (8, 12), None]
    seen = {}

    def remember(_module, _args, kwargs):
        seen["ids"] = kwargs["input_ids"]

    def fire_on_w(_module, _inputs, output):
        output = output.clone()
        output[..., target] = 5.0 * (seen["ids"] == w_token).to(output.dtype)
        return output
    handles = [tiny_model.register_forward_pre_hook(remember, with_kwargs=True),
               projections(tiny_model)[0].register_forward_hook(fire_on_w)]
    try:
        response = control.motif_response(tiny_model, sequences, spans, 64, max_tokens=10_000)
    finally:
        for handle in handles:
            handle.remove()
    assert response.shape == (index.size,) and int(np.argmax(response)) == target and response[target] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no sequence has a planted motif"):
        control.motif_response(tiny_model, sequences, [None] * 3, 64)


def test_sweep_verdicts_and_motif_power_read_the_stage_outputs_right():
    rows = [{"method": "random", "direction": "-", "ablation": "zero", "matched": False, "keep_fraction": 0.25,
             "seed": seed, "accuracy": value} for seed, value in enumerate([0.30, 0.32, 0.34])]
    rows += [{"method": "ig_signed", "direction": "high", "ablation": "zero", "matched": False, "keep_fraction": 0.25,
              "seed": -1, "accuracy": 0.9},
             {"method": "activation", "direction": "high", "ablation": "zero", "matched": False, "keep_fraction": 0.25,
              "seed": -1, "accuracy": 0.33}]
    verdicts = control.sweep_verdicts(pd.DataFrame(rows), [0.25])
    assert verdicts.loc["25%", "IG > random + 2 sd"] and verdicts.loc["25%", "IG > activation"]
    assert verdicts.loc["25%", "IG z vs random"] == pytest.approx((0.9 - 0.32) / 0.02)
    tests = pd.DataFrame({"neuron": [1, 1, 2, 3], "motif": ["m_a", "m_b", "m_a", "m_a"], "q_value": [0.01, 0.5, 0.2, 0.03]})
    probe = pd.DataFrame({"class_name": ["m_a", "m_b", "comp"], "rank": 0, "neuron": [1, 2, 3]})
    power = control.motif_power(tests, probe, {"m_a": "m_a", "m_b": "m_b", "comp": None})
    assert power["own motif found"].tolist() == [True, False, False]
    assert power.loc["comp", "tests with q < alpha"] == 1 and power.loc["m_a", "smallest q, own motif"] == 0.01
    assert np.isnan(power.loc["m_b", "smallest q, own motif"])  # its neuron was never tested for m_b
