"""Class-specific knowledge neurons: per-class top sets, their overlap, and what scaling them does to each class.

A class's knowledge neurons are the neurons with the highest mean signed IG over the test examples of that
class (they raise its probability most). Scaling a set by 0 suppresses it and by 2 amplifies it (Dai et al.
2022 did this for factual knowledge); the effect on every class is measured against random sets of the
same size drawn from the same (layer, projection) blocks, so that a set cannot look special merely for
sitting in an influential layer.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import torch

from .metrics import classification_metrics, true_class_probabilities
from .neurons import NeuronIndex, gated
from .inference import predict_logits
from .stats import top_k


def top_per_class(per_class: np.ndarray, size: int) -> list[np.ndarray]:
    """Sorted ids of the `size` highest-scoring neurons of each class (rows of `per_class`); ties by id."""
    return [np.sort(top_k(scores, size)) for scores in np.asarray(per_class, dtype=np.float64)]


def membership(sets: list[np.ndarray], names: list[str]) -> pd.DataFrame:
    """One row per neuron in any set, one boolean column per set: the table an upset plot draws."""
    neurons = np.unique(np.concatenate(sets)) if sets else np.array([], dtype=int)
    return pd.DataFrame({name: np.isin(neurons, ids) for name, ids in zip(names, sets)}, index=pd.Index(neurons, name="neuron"))


def combination_counts(table: pd.DataFrame) -> pd.Series:
    """Neurons per exact combination of sets (e.g. '1+3' = in the sets of classes 1 and 3 only), largest first."""
    keys = table.apply(lambda row: "+".join(name for name, member in row.items() if member), axis=1)
    return keys.value_counts().rename("neurons")


def pairwise_overlap(sets: list[np.ndarray], names: list[str]) -> pd.DataFrame:
    """Neurons shared by each pair of sets (diagonal: set sizes)."""
    frame = pd.DataFrame(0, index=names, columns=names)
    for (i, a), (j, b) in combinations(enumerate(sets), 2):
        frame.iloc[i, j] = frame.iloc[j, i] = len(np.intersect1d(a, b))
    for i, ids in enumerate(sets):
        frame.iloc[i, i] = len(ids)
    return frame


def shared_and_specific(sets: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(neurons in every set, per set the neurons in no other set)."""
    shared = sets[0]
    for ids in sets[1:]:
        shared = np.intersect1d(shared, ids)
    specific = [np.setdiff1d(ids, np.concatenate([other for j, other in enumerate(sets) if j != i])) for i, ids in enumerate(sets)]
    return shared, specific


def matched_random(ids: np.ndarray, index: NeuronIndex, seed: int) -> np.ndarray:
    """A random set with as many neurons as `ids` in each (layer, kind) block, avoiding `ids` where it can."""
    rng = np.random.default_rng(seed)
    ranges = index.block_ranges()
    blocks = np.searchsorted([end for _, end in ranges], np.asarray(ids), side="right")
    drawn = []
    for block, count in zip(*np.unique(blocks, return_counts=True)):
        first, end = ranges[block]
        candidates = np.setdiff1d(np.arange(first, end), ids)
        if len(candidates) < count:  # the set fills most of its block: draw from the whole block
            candidates = np.arange(first, end)
        drawn.append(rng.choice(candidates, size=count, replace=False))
    return np.sort(np.concatenate(drawn)) if drawn else np.array([], dtype=int)


def balanced_subset(labels: np.ndarray, per_class: int, seed: int = 0, max_share: float = 0.5) -> np.ndarray:
    """Sorted indices of at most `per_class` examples of each class, and at most `max_share` of the class.

    The rest of each class is left for selecting the neurons, so that the sets are never chosen on the
    examples they are evaluated on.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        chosen.append(members[:min(per_class, int(len(members) * max_share))])
    return np.sort(np.concatenate(chosen))


def scaled_logits(model, sequences: list[str], ids: np.ndarray, factor: float, max_residues: int,
                  precision: str = "auto", max_tokens: int = 2048) -> np.ndarray:
    """Logits with the neurons `ids` multiplied by `factor` (0 suppresses, 2 amplifies), every other neuron as is."""
    index = NeuronIndex.of(model)
    gates = torch.ones(index.size, device=next(model.parameters()).device)
    gates[torch.as_tensor(np.asarray(ids), dtype=torch.long)] = factor
    with gated(model, gates):
        return predict_logits(model, sequences, max_residues, max_tokens=max_tokens, precision=precision)


def per_class_effect(logits: np.ndarray, base_logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per true class: mean change in true-class probability and change in accuracy, scaled minus base."""
    delta_p = true_class_probabilities(logits, labels) - true_class_probabilities(base_logits, labels)
    delta_correct = (logits.argmax(1) == labels).astype(float) - (base_logits.argmax(1) == labels).astype(float)
    pick = [labels == c for c in range(num_classes)]
    return {"probability": np.array([delta_p[m].mean() if m.any() else np.nan for m in pick]),
            "accuracy": np.array([delta_correct[m].mean() if m.any() else np.nan for m in pick])}


def scaling_effects(model, sequences: list[str], labels: np.ndarray, sets: list[np.ndarray], factor: float,
                    max_residues: int, random_seeds: int = 5, precision: str = "auto", max_tokens: int = 2048,
                    progress: bool = False) -> dict[str, np.ndarray]:
    """Effect matrices (set of class c x true class c') of scaling each set by `factor`, and of matched random sets.

    Returns, for metric in (probability, accuracy): `{metric}` (sets x classes) for the class sets,
    `{metric}_random` (seeds x sets x classes) for the random controls, and `base_metrics` of the intact model.
    """
    from tqdm import tqdm

    index = NeuronIndex.of(model)
    num_classes = model.config.num_labels
    base = predict_logits(model, sequences, max_residues, max_tokens=max_tokens, precision=precision)
    shape = (len(sets), num_classes)
    out = {"probability": np.zeros(shape), "accuracy": np.zeros(shape),
           "probability_random": np.zeros((random_seeds, *shape)), "accuracy_random": np.zeros((random_seeds, *shape))}
    jobs = [(row, seed) for row in range(len(sets)) for seed in [None, *range(random_seeds)]]
    for row, seed in tqdm(jobs, disable=not progress, desc=f"scale x{factor:g}"):
        ids = sets[row] if seed is None else matched_random(sets[row], index, seed=1_000 * row + seed)
        effect = per_class_effect(scaled_logits(model, sequences, ids, factor, max_residues, precision, max_tokens),
                                  base, labels, num_classes)
        for metric, values in effect.items():
            if seed is None:
                out[metric][row] = values
            else:
                out[f"{metric}_random"][seed, row] = values
    out["base_metrics"] = classification_metrics(base, labels)
    return out


def specificity_table(effects: dict[str, np.ndarray], names: list[str], metric: str = "probability") -> pd.DataFrame:
    """Per class set: its effect on its own class, the mean effect on the other classes, and the random control.

    `z_vs_random` = (own-class effect - random mean) / random sd over seeds; `own_minus_others` > 0 for an
    amplification that favours its class, < 0 for a suppression that hurts its class most. `own_rank` ranks
    the own class within its row of effects net of the random mean, in the direction of the own effect:
    1 = no other class is hurt (or helped) more.
    """
    own = np.diag(effects[metric])
    net = effects[metric] - effects[f"{metric}_random"].mean(0)
    own_net = np.diag(net)
    own_rank = 1 + np.where(own_net[:, None] < 0, net < own_net[:, None], net > own_net[:, None]).sum(1)
    others = (effects[metric].sum(1) - own) / (effects[metric].shape[1] - 1)
    random_own = np.stack([np.diag(matrix) for matrix in effects[f"{metric}_random"]])  # seeds x sets
    spread = random_own.std(0, ddof=1) if len(random_own) > 1 else np.full(len(own), np.nan)
    return pd.DataFrame({"own_class": own, "other_classes": others, "own_minus_others": own - others,
                         "random_own_mean": random_own.mean(0), "random_own_sd": spread,
                         "z_vs_random": (own - random_own.mean(0)) / np.where(spread > 0, spread, np.nan), "own_rank": own_rank},
                        index=pd.Index(names, name="neurons of class"))


def mean_pairwise(pairwise: pd.DataFrame) -> float:
    """Mean number of neurons shared by two different classes' sets (off-diagonal of `pairwise_overlap`)."""
    values = pairwise.to_numpy()
    return float(values[np.triu_indices(len(values), 1)].mean())


def specific_table(specific: list[np.ndarray], names: list[str], index: NeuronIndex, shown: int = 10) -> pd.DataFrame:
    """Per class: how many of its neurons no other class's set holds, and the first `shown` of them by name."""
    return pd.DataFrame({"specific neurons": [len(ids) for ids in specific],
                         f"first {shown} (layer.projection.unit)": [", ".join(index.names(ids[:shown])) for ids in specific]},
                        index=pd.Index(names, name="class"))


def supported_rows(specificity: pd.DataFrame) -> pd.Series:
    """Per class set of a `specificity_table` at factor 0: does suppressing it hurt its own class more than the others
    on average, and more than 2 random-control sd below the matched random sets?"""
    return (specificity["own_minus_others"] < 0) & (specificity["z_vs_random"] < -2)


def suppression_support(specificity: pd.DataFrame) -> dict[str, int]:
    """Classes whose suppression (a `specificity_table` at factor 0) is `supported_rows`; and those hit hardest in
    their row."""
    return {"supported": int(supported_rows(specificity).sum()),
            "strict": int((specificity["own_rank"] == 1).sum())}


def effect_record(effects: dict[str, np.ndarray]) -> dict:
    """A `scaling_effects` result as result-file lists: per metric the class sets' effects, the random mean and sd."""
    return {metric: {"effect": effects[metric].tolist(), "random_mean": effects[f"{metric}_random"].mean(0).tolist(),
                     "random_sd": effects[f"{metric}_random"].std(0, ddof=1).tolist()} for metric in ("probability", "accuracy")}


def probe_table(per_class: np.ndarray, names: list[str], count: int) -> pd.DataFrame:
    """The `count` top neurons of each class by its mean signed IG: one row per (class, rank, neuron)."""
    return pd.DataFrame([{"class_name": name, "rank": rank, "neuron": int(neuron)}
                         for name, scores in zip(names, per_class) for rank, neuron in enumerate(top_k(scores, count))])
