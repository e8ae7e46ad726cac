"""Neuron addressing, hooks, activation scores and integrated gradients on a tiny ESM-2."""
import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from kn_utils.alphabet import encode, pad_batch
from kn_utils.model import random_classifier, esm2_config
from kn_utils.neurons import NeuronIndex, gated, hook_count, recording
from kn_utils.scoring import activation_scores, integrated_gradients, quadrature, true_class_probability

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


def test_ig_matches_captum(tiny_model):
    index = NeuronIndex.of(tiny_model)
    ours = integrated_gradients(tiny_model, SEQUENCES, LABELS, max_residues=64, steps=16, max_tokens=256)
    for row, (sequence, label) in enumerate(zip(SEQUENCES, LABELS)):
        input_ids, mask = pad_batch([encode(sequence)])

        def forward(gates):
            repeat = gates.shape[0]
            return true_class_probability(tiny_model, input_ids.expand(repeat, -1), mask.expand(repeat, -1),
                                          torch.full((repeat,), int(label)), gates)

        reference = IntegratedGradients(forward).attribute(torch.ones(1, index.size), baselines=torch.zeros(1, index.size),
                                                           n_steps=16, method="gausslegendre")
        np.testing.assert_allclose(ours["attributions"][row], reference[0].numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("rule, pooling", [("gausslegendre", "cls"), ("riemann_trapezoid", "cls"), ("gausslegendre", "mean")])
def test_completeness_with_enough_steps(tiny_config, rule, pooling):
    model = random_classifier(esm2_config(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                                initializer_range=0.3), 0, "eager", pooling).eval()  # larger weights: a curved path
    result = integrated_gradients(model, SEQUENCES, LABELS, max_residues=64, steps=64, rule=rule)
    delta = result["p_on"] - result["p_off"]
    assert np.abs(delta).min() > 1e-3  # switching all neurons off changes the prediction
    assert result["completeness_error"].max() < 0.01


def test_quadrature_rules():
    alphas, weights = quadrature(8)
    assert weights.sum() == pytest.approx(1) and 0 < alphas.min() and alphas.max() < 1
    assert np.dot(weights, alphas**5) == pytest.approx(1 / 6)  # exact for polynomials of degree < 16
    with pytest.raises(ValueError, match="unknown quadrature rule"):
        quadrature(8, "simpson")


def test_quadrature_weights_integrate_exactly():
    for rule in ("riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right"):
        alphas, weights = quadrature(11, rule)
        assert weights.sum() == pytest.approx(1), rule
    alphas, weights = quadrature(11, "riemann_trapezoid")
    assert np.dot(weights, alphas) == pytest.approx(0.5)


def test_ig_steps_in_chunks_equal_one_pass(tiny_model):
    whole = integrated_gradients(tiny_model, SEQUENCES, LABELS, max_residues=64, steps=12, max_tokens=100_000)
    chunked = integrated_gradients(tiny_model, SEQUENCES, LABELS, max_residues=64, steps=12, max_tokens=40)  # 1-3 steps per pass
    np.testing.assert_allclose(chunked["attributions"], whole["attributions"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(chunked["p_on"], whole["p_on"], atol=1e-7)


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


def test_ranking_stability_and_completeness_of_a_real_ig_run(tiny_model):
    from kn_utils.scoring import completeness_summary, ranking_stability

    ig = integrated_gradients(tiny_model, SEQUENCES, LABELS, 64, steps=16)
    summary = completeness_summary(ig)
    assert summary["completeness_error_median"] < 0.01 and summary["completeness_error_max"] >= summary["completeness_error_p90"]
    assert summary["p_on_mean"] == pytest.approx(ig["p_on"].mean())
    stability = ranking_stability(tiny_model, SEQUENCES, LABELS, ig, 64, examples=3, steps=32, rule="gausslegendre",
                                  max_tokens=4096, precision="fp32")
    assert stability["stability_examples"] == 3
    assert stability["steps_spearman"] > 0.99  # 16 and 32 nodes agree on a converged integrand
    shuffled = {**ig, "attributions": np.random.default_rng(0).permuted(ig["attributions"], axis=1)}
    broken = ranking_stability(tiny_model, SEQUENCES, LABELS, shuffled, 64, examples=3, steps=32, rule="gausslegendre",
                               max_tokens=4096, precision="fp32")
    assert broken["steps_spearman"] < 0.5  # scores that do not come from the model disagree with the finer run
