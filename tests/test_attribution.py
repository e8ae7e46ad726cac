"""Integrated gradients on a tiny ESM-2: against Captum, completeness with the adaptive quadrature, convergence."""
import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from kn_utils.alphabet import encode, pad_batch
from kn_utils.attribution import (completeness_summary, convergence_table, integrated_gradients, quadrature,
                                  split_half_stability, top_overlap, true_class_probability)
from kn_utils.model import esm2_config, random_classifier
from kn_utils.neurons import NeuronIndex
from tests.conftest import random_protein

SEQUENCES = ["MKTAYIAKQRQISFVKSHF", "MNIFEMLRID", "GSHMSLFDKLKGLVGKEKPLTG", "MADQLTEEQ"]
LABELS = np.array([0, 3, 5, 1])


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


@pytest.fixture(scope="module")
def curved():
    """A tiny model with large weights, so that the all-gates path bends sharply, and twelve examples of it."""
    model = random_classifier(esm2_config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                          initializer_range=0.3), 0, "eager").eval()
    rng = np.random.default_rng(0)
    sequences = [random_protein(rng, int(length)) for length in rng.integers(10, 60, 12)]
    return model, sequences, rng.integers(0, 6, 12)


def test_the_adaptive_quadrature_meets_the_completeness_bound_where_a_fixed_rule_fails(curved):
    model, sequences, labels = curved
    fixed = integrated_gradients(model, sequences, labels, 64, steps=4)
    assert np.median(fixed["completeness_error"]) > 0.05  # the test has something to fix
    adaptive = integrated_gradients(model, sequences, labels, 64, steps=4, tolerance=0.01, absolute_tolerance=1e-5)
    assert adaptive["converged"].all()
    assert (np.minimum(adaptive["completeness_error"], adaptive["absolute_error"] / 1e-5 * 0.01) <= 0.01).all()
    reference = integrated_gradients(model, sequences, labels, 64, steps=256)
    assert reference["completeness_error"].max() < 1e-3
    # every neuron's attribution, not only their sum, is close to the fine rule's; at a fraction of its nodes
    scale = np.abs(reference["attributions"]).max()
    assert np.abs(adaptive["attributions"] - reference["attributions"]).max() < 0.01 * scale  # the null rule caught a
    # 4-node panel whose sum came right by chance (47 % off on one neuron) without it
    assert np.abs(fixed["attributions"] - reference["attributions"]).max() > 0.05 * scale
    assert adaptive["nodes"].mean() < 100 and len(set(adaptive["nodes"])) > 1  # nodes only where an example needs them


def test_the_adaptive_quadrature_stops_at_max_depth_and_says_so(curved):
    model, sequences, labels = curved
    shallow = integrated_gradients(model, sequences, labels, 64, steps=2, tolerance=1e-6, max_depth=1)
    assert (shallow["nodes"] <= 2 + 4).all() and not shallow["converged"].all()
    plain = integrated_gradients(model, sequences, labels, 64, steps=2, tolerance=1e-6, max_depth=0)
    np.testing.assert_allclose(plain["attributions"], integrated_gradients(model, sequences, labels, 64, steps=2)["attributions"])
    assert integrated_gradients(model, sequences, labels, 64, steps=2)["converged"] is None


def test_completeness_summary_reports_relative_and_absolute_error(curved):
    model, sequences, labels = curved
    ig = integrated_gradients(model, sequences, labels, 64, steps=4, tolerance=0.01)
    summary = completeness_summary(ig)
    assert summary["completeness_error_median"] <= 0.01 and summary["converged_share"] == 1.0
    assert summary["absolute_error_max"] == pytest.approx(np.abs(ig["attributions"].astype(float).sum(1) - (ig["p_on"] - ig["p_off"])).max(), rel=1e-3)
    assert summary["nodes_mean"] == ig["nodes"].mean() and summary["p_on_mean"] == pytest.approx(ig["p_on"].mean())
    assert "converged_share" not in completeness_summary(integrated_gradients(model, sequences, labels, 64, steps=4))
    assert summary["within_bound"]
    coarse = completeness_summary(integrated_gradients(model, sequences, labels, 64, steps=1, rule="riemann_left"))
    assert not coarse["within_bound"] and coarse["completeness_error_p90_beyond_small_change"] > 0.05


def test_convergence_table_ranks_fixed_rules_against_the_reference(curved):
    model, sequences, labels = curved
    table = convergence_table(model, sequences[:6], labels[:6], 64,
                              {"2 nodes": {"steps": 2}, "adaptive": {"steps": 4, "tolerance": 0.001}}, {"steps": 128})
    assert table.loc["reference", "Spearman signed"] == pytest.approx(1) and table.loc["reference", "top-10% overlap"] == 1
    assert table.loc["adaptive", "Spearman signed"] > table.loc["2 nodes", "Spearman signed"]
    assert table.loc["adaptive", "median error"] <= 0.001 < table.loc["2 nodes", "median error"]
    assert table.loc["2 nodes", "nodes per example"] == 2


def test_split_half_stability_and_top_overlap():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=200)
    stable = signal + 0.1 * rng.normal(size=(50, 200))
    assert split_half_stability(stable)["split_half_spearman"] > 0.95
    assert abs(split_half_stability(rng.normal(size=(50, 200)))["split_half_spearman"]) < 0.3
    assert top_overlap(signal, signal) == 1 and top_overlap(signal, -signal) == 0


def test_the_variation_mesh_puts_panels_where_f_changes():
    from kn_utils.attribution import variation_mesh

    probed = np.array([[0.3, 0.3, 0.3, 0.3, 0.3, 0.9, 0.9, 0.9, 0.9], [0.5] * 9])  # a step between probes 4 and 5
    bounds = variation_mesh(probed, 4, floor=0.1)
    assert bounds.shape == (2, 5) and (bounds[:, 0] == 0).all() and (bounds[:, -1] == 1).all()
    assert (np.diff(bounds, axis=1) > 0).all()
    assert ((bounds[0, 1:-1] > 0.5) & (bounds[0, 1:-1] < 0.625)).sum() >= 2  # most bounds inside the step
    np.testing.assert_allclose(bounds[1], np.linspace(0, 1, 5))  # a flat path: equal panels


def test_panels_placed_by_probes_meet_the_bound_too(curved):
    model, sequences, labels = curved
    placed = integrated_gradients(model, sequences, labels, 64, steps=4, panels=3, probes=8, tolerance=0.01,
                                  absolute_tolerance=1e-5)
    reference = integrated_gradients(model, sequences, labels, 64, steps=256)
    assert placed["converged"].all() and (placed["completeness_error"] <= 0.01).all()
    scale = np.abs(reference["attributions"]).max()
    assert np.abs(placed["attributions"] - reference["attributions"]).max() < 0.01 * scale
    assert (placed["nodes"] >= 12).all()  # three panels of four nodes at least


def test_a_gate_is_not_rounded_to_bf16_under_autocast(tiny_model):
    """Under bf16 autocast the gate multiplies the projection's output at its own precision: a gate of 0.53 (bf16: 0.53125)
    must give another output than a gate of 0.53125, or bf16 IG evaluates its path at points up to 0.002 off."""
    from kn_utils.inference import autocast
    from kn_utils.neurons import gated

    input_ids, mask = pad_batch([encode(sequence) for sequence in SEQUENCES])
    size = NeuronIndex.of(tiny_model).size
    logits = {}
    for gate in (0.53, float(torch.tensor(0.53).bfloat16())):
        with torch.no_grad(), autocast(torch.device("cpu"), "bf16"), gated(tiny_model, torch.full((size,), gate)):
            logits[gate] = tiny_model(input_ids=input_ids, attention_mask=mask).logits.float()
    first, second = logits.values()
    assert not torch.equal(first, second)
    with torch.no_grad(), autocast(torch.device("cpu"), "bf16"), gated(tiny_model, torch.ones(size)):  # gates of 1 leave bf16 outputs as they are
        gated_on = tiny_model(input_ids=input_ids, attention_mask=mask).logits.float()
    with torch.no_grad(), autocast(torch.device("cpu"), "bf16"):
        assert torch.equal(gated_on, tiny_model(input_ids=input_ids, attention_mask=mask).logits.float())
