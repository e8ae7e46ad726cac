"""Data-parallel scoring and sweeps over torch.distributed: examples or submodels dealt across the ranks `torchrun`
starts (`ranks`), every rank's rows gathered back in the original order.

One process is the default: each function then calls the single-process one it wraps, unchanged. With N ranks every
rank returns the same, complete result (to float tolerance: a shard batches its examples with other neighbours, so
padding and summation order differ).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from . import attribution, scoring
from .ablation import run_sweep
from .ranks import gather_rows, shard, world


def _my_examples(sequences: list[str], labels: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """This rank's shard of the examples: (indices, sequences, labels)."""
    rank, size = world()
    mine = shard(np.array([len(sequence) for sequence in sequences]), rank, size)
    return mine, [sequences[i] for i in mine], np.asarray(labels)[mine]


def activation_scores(model, sequences: list[str], labels: np.ndarray, max_residues: int, num_classes: int | None = None,
                      **options) -> dict[str, np.ndarray]:
    """scoring.activation_scores with the examples sharded across ranks: per-example rows gathered, means over all."""
    if world()[1] == 1:
        return scoring.activation_scores(model, sequences, labels, max_residues, num_classes, **options)
    num_classes = num_classes or model.config.num_labels
    mine, my_sequences, my_labels = _my_examples(sequences, labels)
    local = scoring.activation_scores(model, my_sequences, my_labels, max_residues, num_classes, **options)
    per_example = gather_rows(local["per_example"], mine, len(sequences))
    signed = torch.as_tensor(local["mean_signed"] * len(mine), dtype=torch.float64)
    dist.all_reduce(signed)  # the sums of the signed means; divided by every example below
    return {"mean": per_example.mean(0), "per_class": scoring.class_means(per_example, np.asarray(labels), num_classes),
            "per_example": per_example, "mean_signed": signed.numpy() / len(sequences)}


def integrated_gradients(model, sequences: list[str], labels: np.ndarray, max_residues: int, **options) -> dict:
    """attribution.integrated_gradients with the examples sharded across ranks; every per-example array gathered."""
    if world()[1] == 1:
        return attribution.integrated_gradients(model, sequences, labels, max_residues, **options)
    mine, my_sequences, my_labels = _my_examples(sequences, labels)
    local = attribution.integrated_gradients(model, my_sequences, my_labels, max_residues, **options)
    return {name: gather_rows(values, mine, len(sequences)) for name, values in local.items()}


def sweep(model, sequences: list[str], labels: np.ndarray, plan: list[dict], scores: pd.DataFrame, means: np.ndarray,
          max_residues: int, **options) -> pd.DataFrame:
    """ablation.run_sweep with the submodels dealt across ranks; every rank gets all rows, in the plan's order."""
    rank, size = world()
    if size == 1:
        return run_sweep(model, sequences, labels, plan, scores, means, max_residues, **options)
    mine = np.arange(rank, len(plan), size)
    local = run_sweep(model, sequences, labels, [plan[i] for i in mine], scores, means, max_residues, **options)
    parts = [None] * size
    dist.all_gather_object(parts, (mine, local))
    rows = pd.concat([frame.set_axis(indices) for indices, frame in parts if len(frame)]).sort_index()
    return rows.reset_index(drop=True)
