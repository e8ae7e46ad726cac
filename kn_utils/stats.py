"""The study's statistics in one place: multiple-testing corrections, permutation p-values, and stable top-k.

Corrections come from the libraries that maintain them (statsmodels' Holm, scipy's Benjamini-Hochberg); the null
draws stay with the tests that know their null (heatmaps: random kept sets; motifs: random peak positions), and
share one p-value rule here.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control
from statsmodels.stats.multitest import multipletests


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (statsmodels)."""
    p = np.asarray(p_values, dtype=np.float64)
    return multipletests(p, method="holm")[1].tolist() if len(p) else []


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate), in the input order (scipy)."""
    p = np.asarray(p_values, dtype=np.float64)
    return false_discovery_control(p, method="bh") if len(p) else p


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided p-value of `observed` against null draws: (1 + #{null >= observed}) / (1 + draws), never 0.

    A relative tolerance counts null values equal to the observed one in floating point as reaching it, as
    scipy.stats.permutation_test does.
    """
    null = np.asarray(null, dtype=np.float64)
    reached = null >= observed - 1e-12 * max(1.0, abs(observed))
    return float((1 + reached.sum()) / (1 + len(null)))


def top_k(scores, k: int, direction: str = "high") -> np.ndarray:
    """Ids of the `k` highest (`high`) or lowest (`low`) scores, best first; ties broken by the smaller id."""
    if direction not in ("high", "low"):
        raise ValueError(f"direction must be 'high' or 'low', not {direction!r}")
    values = np.asarray(scores, dtype=np.float64)
    keys = -values if direction == "high" else values
    return np.lexsort((np.arange(len(keys)), keys))[:k]
