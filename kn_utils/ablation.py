"""Submodels: keep a chosen set of query/key/value neurons and ablate the rest, reversibly, without copying the model.

Ablation is a gate on each projection's output (see `neurons.gated`): `zero` multiplies an ablated
neuron's output by 0 (the same as zeroing its weight row and bias), `mean` replaces it by the neuron's
mean output over residues. Leaving the block restores the model bit for bit; no weight is written.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from .neurons import NeuronIndex, gated
from .stats import top_k

METHODS = ("random", "activation", "ig_signed", "ig_absolute")


def keep_count(size: int, keep_fraction: float) -> int:
    """Number of neurons a keep fraction means (at least one)."""
    return max(1, int(round(size * keep_fraction)))


def select(scores: np.ndarray, keep_fraction: float, direction: str = "high") -> np.ndarray:
    """Sorted ids of the kept neurons: the top (`high`) or bottom (`low`) scores.

    Ties are broken by neuron id, so a selection is a pure function of its inputs.
    """
    raise_if_bad_fraction(keep_fraction)
    return np.sort(top_k(scores, keep_count(len(scores), keep_fraction), direction))


def select_random(size: int, keep_fraction: float, seed: int) -> np.ndarray:
    """Sorted ids of a uniformly random kept set of `keep_count(size, keep_fraction)` neurons."""
    raise_if_bad_fraction(keep_fraction)
    return np.sort(np.random.default_rng(seed).permutation(size)[: keep_count(size, keep_fraction)])


def select_matched(scores: np.ndarray, index: NeuronIndex, keep_fraction: float, direction: str = "high") -> np.ndarray:
    """Like `select`, but the same share kept in each block kind (query/key/value, ffn, head), ranked within it."""
    raise_if_bad_fraction(keep_fraction)
    table = index.table()
    kept = []
    for projection in index.kinds:
        ids = table.index[table["projection"] == projection].to_numpy()
        kept.append(ids[select(np.asarray(scores)[ids], keep_fraction, direction)])
    return np.sort(np.concatenate(kept))


def raise_if_bad_fraction(keep_fraction: float) -> None:
    """Refuse keep fractions outside (0, 1]."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], not {keep_fraction}")


def keep_mask(size: int, kept: np.ndarray) -> torch.Tensor:
    """A (size,) float tensor: 1 for kept neurons, 0 for ablated ones."""
    mask = torch.zeros(size)
    mask[torch.as_tensor(kept, dtype=torch.long)] = 1.0
    return mask


@contextlib.contextmanager
def submodel(model, kept: np.ndarray, ablation: str = "zero", means: np.ndarray | None = None) -> Iterator[None]:
    """Run the model with only `kept` neurons; the others zeroed (`zero`) or set to their mean output (`mean`)."""
    index = NeuronIndex.of(model)
    keep = keep_mask(index.size, kept).to(next(model.parameters()).device)
    if ablation == "zero":
        shift = None
    elif ablation == "mean":
        if means is None or len(means) != index.size:
            raise ValueError("mean ablation needs the mean output of every neuron (`means`, one per neuron)")
        shift = (1 - keep) * torch.as_tensor(means, dtype=torch.float32, device=keep.device)
    else:
        raise ValueError(f"ablation must be 'zero' or 'mean', not {ablation!r}")
    with gated(model, keep, shift):
        yield


def plan_sweep(keep_fractions: list[float], random_seeds: int, curve_fractions: list[float] = (),
               mean_ablation: bool = True) -> list[dict]:
    """The submodels of the study: random (several seeds), activation, IG signed/absolute by high and low score,
    then the controls (per-kind matched sizes, mean ablation unless `mean_ablation` is off: attention heads have no
    single mean output) and a finer curve. One dict per submodel."""
    plan = [{"method": "full", "direction": "-", "ablation": "none", "keep_fraction": 1.0, "seed": -1, "matched": False}]
    for fraction in keep_fractions:
        plan += [{"method": "random", "direction": "-", "ablation": "zero", "keep_fraction": fraction, "seed": seed, "matched": False}
                 for seed in range(random_seeds)]
        plan += [{"method": method, "direction": direction, "ablation": "zero", "keep_fraction": fraction, "seed": -1, "matched": False}
                 for method in METHODS[1:] for direction in ("high", "low")]
        plan += [{"method": method, "direction": "high", "ablation": "zero", "keep_fraction": fraction, "seed": -1, "matched": True}
                 for method in ("activation", "ig_signed")]
        plan += [{"method": method, "direction": direction, "ablation": "mean", "keep_fraction": fraction, "seed": seed, "matched": False}
                 for method, direction, seed in (("random", "-", 0), ("activation", "high", -1), ("ig_signed", "high", -1), ("ig_signed", "low", -1))
                 if mean_ablation]
    for fraction in curve_fractions:
        if fraction not in keep_fractions:
            plan += [{"method": method, "direction": direction, "ablation": "zero", "keep_fraction": fraction, "seed": seed, "matched": False}
                     for method, direction, seed in (("random", "-", 0), ("activation", "high", -1), ("ig_signed", "high", -1))]
    return plan


def kept_neurons(spec: dict, scores: pd.DataFrame, index: NeuronIndex) -> np.ndarray:
    """The kept neuron ids of one planned submodel, from the tidy score table (columns named like the methods)."""
    if spec["method"] == "full":
        return np.arange(index.size)
    if spec["method"] == "random":
        return select_random(index.size, spec["keep_fraction"], spec["seed"])
    values = scores[spec["method"]].to_numpy()
    if spec["matched"]:
        return select_matched(values, index, spec["keep_fraction"], spec["direction"])
    return select(values, spec["keep_fraction"], spec["direction"])


def run_sweep(model, sequences: list[str], labels: np.ndarray, plan: list[dict], scores: pd.DataFrame,
              means: np.ndarray, max_residues: int, precision: str = "fp32", max_tokens: int = 2048,
              progress: bool = False) -> pd.DataFrame:
    """Evaluate every planned submodel on the sequences: one row per submodel with its metrics and kept count."""
    from tqdm import tqdm

    from .metrics import classification_metrics
    from .inference import predict_logits

    index = NeuronIndex.of(model)
    rows = []
    for spec in tqdm(plan, disable=not progress, desc="submodels"):
        kept = kept_neurons(spec, scores, index)
        with submodel(model, kept, "zero" if spec["ablation"] == "none" else spec["ablation"], means):
            logits = predict_logits(model, sequences, max_residues, max_tokens=max_tokens, precision=precision)
        rows.append({**spec, "n_kept": len(kept), **classification_metrics(logits, labels)})
    return pd.DataFrame(rows)


# The paper's Table 1 (test accuracy by kept fraction), for side-by-side comparison.
PAPER_TABLE1 = {
    "random": {1.0: 0.9131, 0.5: 0.1798, 0.25: 0.0878, 0.1: 0.1866, 0.01: 0.1866},
    "activation": {1.0: 0.9131, 0.5: 0.2850, 0.25: 0.2842, 0.1: 0.2889, 0.01: 0.2965},
    "integrated gradients": {1.0: 0.9131, 0.5: 0.3550, 0.25: 0.3122, 0.1: 0.2890, 0.01: 0.2965},
}


def method_label(row) -> str:
    """Readable name of a submodel's selection rule, e.g. 'IG signed (high)' or 'activation, matched'."""
    names = {"random": "random", "activation": "activation", "ig_signed": "IG signed", "ig_absolute": "IG |.|", "full": "full model"}
    label = names[row["method"]]
    if row["direction"] in ("high", "low") and row["method"] != "activation":
        label += f" ({row['direction']})"
    elif row["method"] == "activation" and row["direction"] == "low":
        label += " (low)"
    if row.get("matched"):
        label += ", matched per projection"
    if row["ablation"] == "mean":
        label += ", mean-ablated"
    return label


def table1(results: pd.DataFrame, keep_fractions: list[float], metric: str = "accuracy") -> pd.DataFrame:
    """Our Table 1: one row per selection rule (random as mean ± sd over seeds), one column per kept fraction."""

    full = full_accuracy(results, metric)
    plain = plain_zero(results)
    plain = plain[plain["keep_fraction"].isin(keep_fractions)].copy()
    plain["rule"] = plain.apply(method_label, axis=1)
    grouped = plain.groupby(["rule", "keep_fraction"])[metric].agg(["mean", "std", "count"])
    cells = grouped.apply(lambda r: f"{r['mean']:.4f} ± {r['std']:.4f}" if r["count"] > 1 else f"{r['mean']:.4f}", axis=1)
    table = cells.unstack("keep_fraction")[sorted(keep_fractions, reverse=True)]
    table.insert(0, 1.0, f"{full:.4f}")
    table.columns = [f"{fraction:.0%}" for fraction in table.columns]
    return table


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 in the same layout as `table1`."""

    table = pd.DataFrame(PAPER_TABLE1).T
    table.columns = [f"{fraction:.0%}" for fraction in table.columns]
    return table.map(lambda value: f"{value:.4f}")


def inference_speed(model, sequences: list[str], max_residues: int, kept: np.ndarray, repeats: int = 3,
                    precision: str = "fp32", max_tokens: int = 2048) -> dict[str, float]:
    """Median sequences/s of plain inference and of the same batches through a submodel's hooks, and their ratio."""
    import statistics
    import time

    from .inference import predict_logits

    timings: dict[str, list[float]] = {"plain": [], "submodel": []}
    for _ in range(repeats):
        for name in ("plain", "submodel"):
            context = submodel(model, kept) if name == "submodel" else contextlib.nullcontext()
            started = time.perf_counter()
            with context:
                predict_logits(model, sequences, max_residues, max_tokens=max_tokens, precision=precision)
            timings[name].append(len(sequences) / (time.perf_counter() - started))
    speeds = {f"{name}_sequences_per_s": statistics.median(values) for name, values in timings.items()}
    speeds["ratio"] = speeds["submodel_sequences_per_s"] / speeds["plain_sequences_per_s"]
    return speeds


def plain_zero(results: pd.DataFrame) -> pd.DataFrame:
    """The sweep's zero-ablated submodels without the per-projection matching (the intact model is not among them)."""
    return results[(results["ablation"] == "zero") & ~results["matched"].astype(bool)]


def direction_table(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per kept fraction (largest first): high and low IG (signed and |.|) beside the mean of the random sets."""
    zero = plain_zero(results)
    ig = zero[zero["method"].isin(["ig_signed", "ig_absolute"])]
    directions = ig.pivot_table(index="keep_fraction", columns=["method", "direction"], values=metric)
    directions.columns = [f"{method} ({direction})" for method, direction in directions.columns]
    random_mean = zero[zero["method"] == "random"].groupby("keep_fraction")[metric].mean().rename("random (mean)")
    return directions.join(random_mean).sort_index(ascending=False)


def high_minus_low(directions: pd.DataFrame, keep_fractions: list[float], method: str = "ig_signed") -> dict[str, float]:
    """Accuracy of the high minus the low direction of `method` at each kept fraction (a `direction_table`)."""
    difference = (directions[f"{method} (high)"] - directions[f"{method} (low)"]).loc[keep_fractions]
    return {f"{fraction:.0%}": round(float(value), 4) for fraction, value in difference.items()}


def matched_table(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Activation and signed IG (high) with kept sizes matched per projection type beside the same rules unmatched."""
    matched = results[results["matched"]].pivot_table(index="keep_fraction", columns="method", values=metric)
    zero = plain_zero(results)
    unmatched = zero[zero["method"].isin(["activation", "ig_signed"]) & (zero["direction"] == "high")]
    unmatched = unmatched.pivot_table(index="keep_fraction", columns="method", values=metric)
    return matched.add_suffix(" matched").join(unmatched.add_suffix(" unmatched")).sort_index(ascending=False)


def mean_ablation_table(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """The mean-ablated submodels, one column per selection rule, kept fractions largest first."""
    rows = results[results["ablation"] == "mean"]
    if rows.empty:  # a sweep without mean ablation (attention heads)
        return pd.DataFrame()
    rows = rows.assign(rule=lambda frame: frame.apply(method_label, axis=1))
    return rows.pivot_table(index="keep_fraction", columns="rule", values=metric).sort_index(ascending=False)


def full_accuracy(results: pd.DataFrame, metric: str = "accuracy") -> float:
    """The intact model's accuracy (or `metric`) in the sweep."""
    return float(results.loc[results["method"] == "full", metric].iloc[0])


def sweep_records(results: pd.DataFrame) -> list[dict]:
    """The sweep as result-file rows (a random set's seed, None for the ranked rules)."""
    return results.assign(seed=results["seed"].where(results["seed"] >= 0, None)).to_dict("records")


FAMILY_RULES = (("ig_signed", "IG signed"), ("activation", "activation"))  # high scores kept, as Table 1's main rows


def family_comparison(sweeps: dict[str, pd.DataFrame], keep_fractions: list[float], metric: str = "accuracy") -> pd.DataFrame:
    """Sweeps of several neuron families on one model side by side: per family and kept fraction, the accuracy kept by
    IG signed and activation (high), random's mean and sd over seeds, and whether each rule beats random by > 2 sd."""
    rows = []
    for family, results in sweeps.items():
        plain = plain_zero(results)
        random = plain[plain["method"] == "random"].groupby("keep_fraction")[metric].agg(["mean", "std"])
        for fraction in keep_fractions:
            row = {"family": family, "kept": fraction, "random_mean": random.loc[fraction, "mean"],
                   "random_sd": random.loc[fraction, "std"]}
            for method, label in FAMILY_RULES:
                value = plain.loc[(plain["method"] == method) & (plain["direction"] == "high")
                                  & (plain["keep_fraction"] == fraction), metric].iloc[0]
                row[label] = value
                row[f"{label} beats random"] = bool(value > row["random_mean"] + 2 * row["random_sd"])
            rows.append(row)
    return pd.DataFrame(rows)


def family_winners(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per kept fraction and rule (IG signed, activation, random mean): the family that keeps the most accuracy."""
    columns = [label for _, label in FAMILY_RULES] + ["random_mean"]
    wide = comparison.pivot_table(index="kept", columns="family", values=columns)
    return pd.DataFrame({column: wide[column].idxmax(axis=1) for column in columns}).sort_index(ascending=False)
