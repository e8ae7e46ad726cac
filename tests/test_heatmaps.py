"""Kept-neuron maps and the tests of the paper's claims."""
import numpy as np
import pandas as pd
import pytest

from kn_utils import heatmaps
from kn_utils.ablation import select_random
from kn_utils.neurons import NeuronIndex

INDEX = NeuronIndex(n_layers=6, units=320)


def test_kept_grid_rows_and_bins():
    key_of_layer_2 = np.arange(INDEX.flat(2, "key", 0), INDEX.flat(2, "key", 0) + 160)
    grid = heatmaps.kept_grid(key_of_layer_2, INDEX, 16)
    assert grid.shape == (18, 20)
    assert grid[2 * 3 + 1, :10].tolist() == [1.0] * 10 and grid.sum() == 10
    with pytest.raises(ValueError, match="does not divide"):
        heatmaps.kept_grid(key_of_layer_2, INDEX, 200)


def test_claims_detected_only_when_present():
    keys = np.concatenate([np.arange(INDEX.flat(layer, "key", 0), INDEX.flat(layer, "key", 0) + 20) for layer in range(6)])
    key_test = heatmaps.permutation_test(keys, INDEX, heatmaps.key_densest_statistic, 2000)
    value_test = heatmaps.permutation_test(keys, INDEX, heatmaps.value_least_statistic, 2000)
    assert key_test["statistic"] == pytest.approx(120 / 1920) and key_test["p_value"] < 0.001
    assert value_test["p_value"] > 0.05  # value and query are equally empty: no evidence value is least
    random = heatmaps.permutation_test(select_random(INDEX.size, 0.1, 3), INDEX, heatmaps.key_densest_statistic, 2000)
    assert random["p_value"] > 0.01


def test_jaccard():
    assert heatmaps.jaccard(np.array([1, 2, 3]), np.array([2, 3, 4])) == 0.5
    draws = [heatmaps.jaccard(select_random(5760, 0.1, s), select_random(5760, 0.1, s + 100)) for s in range(20)]
    assert np.mean(draws) == pytest.approx(heatmaps.expected_random_jaccard(5760, 576), rel=0.1)


def _scores() -> pd.DataFrame:
    """Scores under which the top activation and signed-IG neurons are all key units."""
    table = INDEX.table()
    key = (table["projection"] == "key").to_numpy()
    ramp = np.arange(INDEX.size, dtype=float) / INDEX.size
    return table.assign(activation=ramp + key, ig_signed=ramp * 0.1 + key, ig_absolute=ramp)


def test_selections_keep_the_asked_share_by_each_rule():
    selections = heatmaps.selections(_scores(), INDEX.size, [0.5, 0.99], seed=0)
    assert set(selections) == {(rule, sparsity) for rule in heatmaps.RULES for sparsity in (0.5, 0.99)}
    assert all(len(kept) == round(INDEX.size * (1 - sparsity)) for (_, sparsity), kept in selections.items())
    assert heatmaps.kept_by_projection(selections[("activation", 0.99)], INDEX)["key"] > 0
    high, low = selections[("IG signed (high)", 0.5)], selections[("IG signed (low)", 0.5)]
    assert not set(high) & set(low)  # the two halves of one ranking
    table = heatmaps.projection_table(selections, INDEX)
    assert len(table) == len(selections) * 3 and table["fraction_kept"].between(0, 1).all()


def test_claim_tests_find_a_planted_key_density_and_correct_for_every_test():
    selections = heatmaps.selections(_scores(), INDEX.size, [0.9], seed=0)
    tests = heatmaps.claim_tests(selections, INDEX, permutations=500, seed=0).set_index(["claim", "method"])
    assert len(tests) == 2 * 3  # two claims x three non-random rules
    assert tests.loc[("key densest", "activation"), "p_holm"] < 0.05  # every kept neuron is a key unit
    assert (tests["p_holm"] >= tests["p_value"]).all() and (tests["p_holm"] <= 1).all()
    assert tests.loc[("key densest", "IG signed (low)"), "p_value"] > 0.5  # the low end holds no key unit


def test_overlap_table_pairs_every_rule_once_per_sparsity():
    selections = heatmaps.selections(_scores(), INDEX.size, [0.5, 0.9], seed=0)
    overlaps = heatmaps.overlap_table(selections, INDEX.size)
    assert len(overlaps) == 2 * 6 and overlaps["pair"].nunique() == 6
    low_high = overlaps[(overlaps["pair"] == "IG signed (high) / IG signed (low)")]
    assert (low_high["jaccard"] == 0).all()
    row = overlaps[(overlaps["sparsity"] == 0.9) & (overlaps["pair"] == "activation / random")].iloc[0]
    assert row["random expectation"] == pytest.approx(heatmaps.expected_random_jaccard(INDEX.size, 576))
