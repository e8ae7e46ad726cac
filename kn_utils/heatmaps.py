"""Where kept neurons sit: kept fractions by layer, projection and groups of adjacent units; tests of the paper's claims."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from .ablation import select, select_random
from .neurons import NeuronIndex, block_name
from .stats import holm, permutation_p_value


def kept_grid(kept: np.ndarray, index: NeuronIndex, bin_width: int) -> np.ndarray:
    """(layers x block kinds, widest block / bin_width) fraction of kept neurons among each group of adjacent units;
    a narrower block's row ends in NaN (a 320-unit key block beside a 1,280-unit ffn block)."""
    uneven = sorted({width for width in index.widths if width % bin_width})
    if uneven:
        raise ValueError(f"bin width {bin_width} does not divide the {uneven} units of a block of family {index.family!r}")
    mask = np.zeros(index.size)
    mask[kept] = 1
    grid = np.full((len(index.widths), max(index.widths) // bin_width), np.nan)
    for row, (first, end) in enumerate(index.block_ranges()):
        grid[row, :(end - first) // bin_width] = mask[first:end].reshape(-1, bin_width).mean(-1)
    return grid


def kept_by_projection(kept: np.ndarray, index: NeuronIndex) -> dict[str, float]:
    """Fraction of each block kind's neurons (all layers) that is kept."""
    projection = index.table()["projection"].to_numpy()
    mask = np.isin(np.arange(index.size), kept)
    return {name: float(mask[projection == name].mean()) for name in index.kinds}


def kept_by_layer_projection(kept: np.ndarray, index: NeuronIndex) -> dict[str, float]:
    """Fraction kept of every (layer, kind) block, keyed by block name ('L0.query', neurons.block_name)."""
    mask = np.isin(np.arange(index.size), kept)
    names = [block_name(layer, kind) for layer in range(index.n_layers) for kind in index.kinds]
    return {name: float(mask[first:end].mean()) for name, (first, end) in zip(names, index.block_ranges())}


def value_least_statistic(fractions: dict[str, float]) -> float:
    """Claim 'value neurons are the least important': min(query, key) kept fraction minus value's (> 0 supports it)."""
    return min(fractions["query"], fractions["key"]) - fractions["value"]


def key_densest_statistic(fractions: dict[str, float]) -> float:
    """Claim 'knowledge neurons concentrate in key projections': key's kept fraction minus max(query, value)."""
    return fractions["key"] - max(fractions["query"], fractions["value"])


def permutation_test(kept: np.ndarray, index: NeuronIndex, statistic, permutations: int = 10_000, seed: int = 0) -> dict[str, float]:
    """One-sided test of `statistic(kept fractions by projection)` against kept sets of the same size drawn at random.

    A random kept set's counts per projection type are multivariate hypergeometric, drawn directly;
    p-value: stats.permutation_p_value.
    """
    projection = index.table()["projection"].to_numpy()
    observed = statistic(kept_by_projection(kept, index))
    totals = np.array([(projection == name).sum() for name in index.kinds])
    draws = np.random.default_rng(seed).multivariate_hypergeometric(totals, len(kept), size=permutations)
    null = np.array([statistic(dict(zip(index.kinds, row / totals))) for row in draws])
    return {"statistic": float(observed), "p_value": permutation_p_value(observed, null),
            "null_mean": float(null.mean()), "permutations": permutations}


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


# The selection rules notebook 06 draws: a name, and (score column, direction) or None for a random set.
RULES = {"random": None, "activation": ("activation", "high"), "IG signed (high)": ("ig_signed", "high"),
         "IG signed (low)": ("ig_signed", "low")}
CLAIMS = {"value least important": value_least_statistic, "key densest": key_densest_statistic}


def selections(scores: pd.DataFrame, size: int, sparsities: list[float], seed: int = 0,
               rules: dict | None = None) -> dict[tuple[str, float], np.ndarray]:
    """The kept set of every rule (RULES) at every sparsity (share of neurons dropped), keyed (rule, sparsity)."""
    rules = RULES if rules is None else rules
    return {(name, sparsity): (select_random(size, 1 - sparsity, seed) if rule is None
                               else select(scores[rule[0]].to_numpy(), 1 - sparsity, rule[1]))
            for name, rule in rules.items() for sparsity in sparsities}


def projection_table(selections: dict[tuple[str, float], np.ndarray], index: NeuronIndex) -> pd.DataFrame:
    """Kept fraction of each block kind, one row per (rule, sparsity, projection: the kind)."""
    return pd.DataFrame([{"method": name, "sparsity": sparsity, "projection": projection, "fraction_kept": fraction}
                         for (name, sparsity), kept in selections.items()
                         for projection, fraction in kept_by_projection(kept, index).items()])


def claim_tests(selections: dict[tuple[str, float], np.ndarray], index: NeuronIndex, permutations: int,
                seed: int = 0) -> pd.DataFrame:
    """Every claim (CLAIMS) tested on every non-random selection against random kept sets of its size, with
    Holm-adjusted p-values over all of them (`p_holm`); none for a family without query/key/value units (the claims
    are about them)."""
    if not {"query", "key", "value"} <= set(index.kinds):
        return pd.DataFrame(columns=["claim", "method", "sparsity", "statistic", "p_value", "null_mean", "permutations", "p_holm"])
    tests = pd.DataFrame([{"claim": claim, "method": name, "sparsity": sparsity,
                           **permutation_test(kept, index, statistic, permutations, seed)}
                          for claim, statistic in CLAIMS.items() for (name, sparsity), kept in selections.items()
                          if name != "random"])
    tests["p_holm"] = holm(tests["p_value"])
    return tests


def overlap_table(selections: dict[tuple[str, float], np.ndarray], size: int) -> pd.DataFrame:
    """Jaccard index of every pair of rules at every sparsity, beside that of two random sets of the same size."""
    rows = []
    for sparsity in sorted({sparsity for _, sparsity in selections}):
        named = {name: kept for (name, at), kept in selections.items() if at == sparsity}
        matrix = jaccard_matrix(named)
        for first, second in combinations(sorted(named), 2):
            rows.append({"sparsity": sparsity, "pair": f"{first} / {second}", "jaccard": matrix.loc[first, second],
                         "random expectation": expected_random_jaccard(size, len(named[first]))})
    return pd.DataFrame(rows)
