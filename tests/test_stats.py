"""The shared statistics: corrections against their textbook values, the permutation p-value rule, stable top-k."""
import numpy as np
import pytest

from kn_utils.stats import benjamini_hochberg, holm, permutation_p_value, top_k


def test_holm_against_hand_computed_values():
    # sorted p 0.01, 0.03, 0.04 times 3, 2, 1, then made monotone: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []


def test_benjamini_hochberg_against_hand_computed_values():
    # p * m / rank, then the running minimum from the largest rank down
    assert np.allclose(benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5])), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert (benjamini_hochberg([0.001, 0.2, 0.02]) >= [0.001, 0.2, 0.02]).all()


def test_permutation_p_value_counts_ties_and_is_never_zero():
    null = np.array([0.1, 0.2, 0.3, 0.3 - 1e-15])
    assert permutation_p_value(0.3, null) == pytest.approx(3 / 5)  # 0.3 and its float twin reach it
    assert permutation_p_value(10.0, null) == pytest.approx(1 / 5)
    assert permutation_p_value(-1.0, null) == 1.0


def test_top_k_breaks_ties_by_the_smaller_id_in_both_directions():
    scores = np.array([1.0, 3.0, 3.0, 0.0, 3.0])
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(scores, 2, "low").tolist() == [3, 0]
    assert top_k(-scores, 3, "low").tolist() == top_k(scores, 3).tolist()
    with pytest.raises(ValueError, match="direction"):
        top_k(scores, 1, "middle")
