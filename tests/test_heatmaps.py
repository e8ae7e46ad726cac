"""Kept-neuron maps and the tests of the paper's claims."""
import numpy as np
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
