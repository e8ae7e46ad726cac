"""Where kept neurons sit: kept fractions by layer, projection and groups of adjacent units; tests of the paper's claims."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .neurons import PROJECTIONS, NeuronIndex


def kept_grid(kept: np.ndarray, index: NeuronIndex, bin_width: int) -> np.ndarray:
    """(layers x 3 projections, units / bin_width) fraction of kept neurons among each group of adjacent units."""
    if index.units % bin_width:
        raise ValueError(f"bin width {bin_width} does not divide the {index.units} units of a projection")
    mask = np.zeros(index.size)
    mask[kept] = 1
    return mask.reshape(index.n_layers * len(PROJECTIONS), index.units // bin_width, bin_width).mean(-1)


def kept_by_projection(kept: np.ndarray, index: NeuronIndex) -> dict[str, float]:
    """Fraction of each projection type's neurons (all layers) that is kept."""
    projection = index.table()["projection"].to_numpy()
    mask = np.isin(np.arange(index.size), kept)
    return {name: float(mask[projection == name].mean()) for name in PROJECTIONS}


def kept_by_layer_projection(kept: np.ndarray, index: NeuronIndex) -> dict[str, float]:
    """Fraction kept of every (layer, projection), keyed 'layer0.query' etc."""
    mask = np.isin(np.arange(index.size), kept).reshape(index.n_layers, len(PROJECTIONS), index.units).mean(-1)
    return {f"layer{layer}.{name}": float(mask[layer, p]) for layer in range(index.n_layers) for p, name in enumerate(PROJECTIONS)}


def value_least_statistic(fractions: dict[str, float]) -> float:
    """Claim 'value neurons are the least important': min(query, key) kept fraction minus value's (> 0 supports it)."""
    return min(fractions["query"], fractions["key"]) - fractions["value"]


def key_densest_statistic(fractions: dict[str, float]) -> float:
    """Claim 'knowledge neurons concentrate in key projections': key's kept fraction minus max(query, value)."""
    return fractions["key"] - max(fractions["query"], fractions["value"])


def permutation_test(kept: np.ndarray, index: NeuronIndex, statistic, permutations: int = 10_000, seed: int = 0) -> dict[str, float]:
    """One-sided test of `statistic(kept fractions by projection)` against kept sets of the same size drawn at random.

    A random kept set's counts per projection type are multivariate hypergeometric, drawn directly;
    p = (1 + #{null >= observed}) / (1 + permutations).
    """
    projection = index.table()["projection"].to_numpy()
    observed = statistic(kept_by_projection(kept, index))
    totals = np.array([(projection == name).sum() for name in PROJECTIONS])
    draws = np.random.default_rng(seed).multivariate_hypergeometric(totals, len(kept), size=permutations)
    null = np.array([statistic(dict(zip(PROJECTIONS, row / totals))) for row in draws])
    return {"statistic": float(observed), "p_value": float((1 + (null >= observed - 1e-12).sum()) / (1 + permutations)),
            "null_mean": float(null.mean()), "permutations": permutations}


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, position in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[position]))
        adjusted[position] = running
    return adjusted.tolist()


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two kept sets."""
    a, b = set(map(int, first)), set(map(int, second))
    return len(a & b) / len(a | b) if a | b else 1.0


def expected_random_jaccard(size: int, kept: int) -> float:
    """The chance level of the Jaccard index for two independent uniformly random kept sets of `kept` out of `size`
    neurons: expected overlap over expected union (k²/n over 2k - k²/n), within 1% of the expected index here."""
    overlap = kept * kept / size
    return overlap / (2 * kept - overlap)


def jaccard_matrix(selections: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise Jaccard indices of named kept sets."""
    names = list(selections)
    return pd.DataFrame([[jaccard(selections[a], selections[b]) for b in names] for a in names], index=names, columns=names)
