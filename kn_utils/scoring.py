"""Scores of every query/key/value neuron: mean activation magnitude, and the tables both scores go into.

Activation score: per sequence, the mean |output| of the unit over residue positions (`<cls>`, `<eos>`
and padding excluded), then the mean over sequences (each sequence counts once), in float64.
Integrated-gradients scores come from `attribution.integrated_gradients`; this module tabulates them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .alphabet import CLS_ID, EOS_ID, PAD_ID, encode
from .attention import attention_implementation
from .inference import token_batches
from .kernels import fused_gelu
from .neurons import NeuronIndex, recording


def residue_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, positions) mask of residue tokens: not `<cls>`, `<eos>` or padding."""
    return (input_ids != CLS_ID) & (input_ids != EOS_ID) & (input_ids != PAD_ID)


def batches(sequences: list[str], max_residues: int, max_tokens: int):
    """Length-bucketed (indices, input_ids, attention_mask) of at most `max_tokens` tokens each."""
    return token_batches([encode(sequence, max_residues) for sequence in sequences], max_tokens)


@torch.inference_mode()
def activation_scores(model, sequences: list[str], labels: np.ndarray, max_residues: int, num_classes: int | None = None,
                      max_tokens: int = 16384, progress: bool = False, fused_kernels: bool = True) -> dict[str, np.ndarray]:
    """Mean |activation| per neuron over sequences (`mean`, (size,)) and per true class (`per_class`, (classes, size)).

    Also `mean_signed`: the plain mean output per neuron, the value mean-ablation puts in its place.
    `fused_kernels`: GELU in torch's fused kernel (kernels.fused_gelu), as in inference.predict_logits.
    """
    index = NeuronIndex.of(model)
    num_classes = num_classes or model.config.num_labels
    device = next(model.parameters()).device
    per_example = np.zeros((len(sequences), index.size), dtype=np.float64)
    signed = np.zeros((len(sequences), index.size), dtype=np.float64)
    model.eval()
    with attention_implementation(model, "sdpa"), fused_gelu(fused_kernels):
        for batch, input_ids, mask in tqdm(list(batches(sequences, max_residues, max_tokens)), disable=not progress, desc="activations"):
            with recording(model) as outputs:
                model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
            residues = residue_positions(input_ids).to(device)[..., None].double()
            output = torch.cat(outputs, dim=-1).double()
            per_example[batch] = ((output.abs() * residues).sum(1) / residues.sum(1)).cpu().numpy()
            signed[batch] = ((output * residues).sum(1) / residues.sum(1)).cpu().numpy()
    per_class = class_means(per_example, labels, num_classes)
    return {"mean": per_example.mean(0), "per_class": per_class, "per_example": per_example, "mean_signed": signed.mean(0)}


def class_means(per_example: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, neurons) mean of per-example scores over each class's examples (NaN for an absent class)."""
    return np.stack([per_example[labels == c].mean(0) if (labels == c).any() else np.full(per_example.shape[1], np.nan)
                     for c in range(num_classes)])


def spearman(first, second) -> float:
    """Spearman rank correlation of two score vectors."""
    from scipy.stats import spearmanr

    return float(spearmanr(first, second).statistic)


def split_half_spearman(per_example: np.ndarray, seed: int = 0) -> float:
    """Spearman correlation of mean scores between two random disjoint halves of the examples (ranking stability)."""
    order = np.random.default_rng(seed).permutation(len(per_example))
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    return spearman(per_example[first].mean(0), per_example[second].mean(0))


def score_table(index: NeuronIndex, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """The tidy table: one row per neuron (neuron, layer, projection, unit) plus one column per score."""
    table = index.table()
    for name, values in scores.items():
        table[name] = np.asarray(values)
    return table


def per_class_table(index: NeuronIndex, per_class: dict[str, np.ndarray], classes: list[str]) -> pd.DataFrame:
    """Long side table: one row per (neuron, class) with one column per per-class score."""
    frames = []
    for label, name in enumerate(classes):
        frame = pd.DataFrame({"neuron": np.arange(index.size), "class_name": name})
        for name, values in per_class.items():
            frame[name] = values[label]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def median_class_variation(per_class: np.ndarray, mean: np.ndarray) -> float:
    """Median over neurons of the coefficient of variation of a score across classes (sd of class means / mean)."""
    return float(np.median(np.nanstd(per_class, axis=0) / mean))


def kinds_of(table: pd.DataFrame) -> list[str]:
    """The block kinds of a score table (query, key, value, ffn, head), in flat-id order."""
    return list(dict.fromkeys(table["projection"]))


def mean_by_projection(table: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean of a score column per block kind (all layers)."""
    return {projection: float(table.loc[table["projection"] == projection, column].mean()) for projection in kinds_of(table)}


def mean_by_block(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean of a score column per layer (rows) and block kind (columns: query/key/value, ffn, head)."""
    return table.groupby(["layer", "projection"])[column].mean().unstack()[kinds_of(table)]


def top_rows(table: pd.DataFrame, column: str, count: int = 10) -> list[dict]:
    """The `count` neurons with the highest `column` as result-file rows (layer, projection, unit, score)."""
    return table.nlargest(count, column)[["layer", "projection", "unit", column]].to_dict("records")


def signed_share_by_projection(table: pd.DataFrame) -> pd.DataFrame:
    """Signed and absolute IG summed per projection type, with each type's share of the signed total."""
    summary = table.groupby("projection")[["ig_signed", "ig_absolute"]].sum()
    summary["share_of_signed_total"] = summary["ig_signed"] / summary["ig_signed"].sum()
    return summary.loc[kinds_of(table)]
