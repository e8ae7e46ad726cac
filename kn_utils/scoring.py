"""Scores of every query/key/value neuron: mean activation magnitude, and integrated gradients.

Activation score: per sequence, the mean |output| of the unit over residue positions (`<cls>`, `<eos>`
and padding excluded), then the mean over sequences (each sequence counts once), in float64.

Integrated gradients (IG): every neuron gets a gate g_i multiplying its output (g = 1 is the model,
g_i = 0 is the neuron ablated: weight row and bias zeroed). F(g) is the softmax probability of the true
class. The path scales all 5,760 gates at once, g = alpha * 1 for alpha from 0 to 1, so that one path
per example attributes every neuron; the integral is a quadrature over `steps` values of alpha.
IG_i = integral_0^1 dF/dg_i(alpha * 1) d alpha, which for one neuron is the paper's
a_i * integral dP(alpha a)/da_i d alpha. Completeness: sum_i IG_i = F(all on) - F(all off).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .alphabet import CLS_ID, EOS_ID, PAD_ID, encode, pad_batch
from .attention import attention_implementation, attention_kernel
from .kernels import fused_gelu
from .model import resolve_precision
from .neurons import PROJECTIONS, NeuronIndex, gated, recording
from .inference import autocast, length_batches

QUADRATURE_RULES = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


def residue_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, positions) mask of residue tokens: not `<cls>`, `<eos>` or padding."""
    return (input_ids != CLS_ID) & (input_ids != EOS_ID) & (input_ids != PAD_ID)


def batches(sequences: list[str], max_residues: int, max_tokens: int, rows_per_example: int = 1):
    """Length-bucketed (indices, input_ids, attention_mask) with `rows_per_example` rows per example in the budget."""
    tokens = [encode(sequence, max_residues) for sequence in sequences]
    lengths = np.array([len(t) for t in tokens]) * rows_per_example
    for batch in length_batches(lengths, max_tokens):
        input_ids, mask = pad_batch([tokens[i] for i in batch])
        yield batch, input_ids, mask


@torch.inference_mode()
def activation_scores(model, sequences: list[str], labels: np.ndarray, max_residues: int, num_classes: int = 6,
                      max_tokens: int = 16384, progress: bool = False, fused_kernels: bool = True) -> dict[str, np.ndarray]:
    """Mean |activation| per neuron over sequences (`mean`, (size,)) and per true class (`per_class`, (classes, size)).

    Also `mean_signed`: the plain mean output per neuron, the value mean-ablation puts in its place.
    `fused_kernels`: GELU in torch's fused kernel (kernels.fused_gelu), as in inference.predict_logits.
    """
    index = NeuronIndex.of(model)
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


def quadrature(steps: int, rule: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of a quadrature rule on [0, 1]; the weights sum to 1.

    Gauss-Legendre (Captum's default, exact for polynomials of degree < 2 * steps) is the rule of choice.
    Captum's `riemann_trapezoid` weights sum to (steps - 1) / steps, biasing completeness; ours do not.
    """
    if rule not in QUADRATURE_RULES:
        raise ValueError(f"unknown quadrature rule {rule!r}; use one of {QUADRATURE_RULES}")
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "riemann_trapezoid":
        weights = np.full(steps, 1 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1 / steps)


def true_class_probability(model, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                           gates: torch.Tensor) -> torch.Tensor:
    """F(gates): softmax probability of each row's true class with neuron outputs multiplied by `gates`."""
    with gated(model, gates):
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
    return logits.softmax(-1).gather(1, labels[:, None])[:, 0]


def integrated_gradients(model, sequences: list[str], labels: np.ndarray, max_residues: int, steps: int = 8,
                         rule: str = "gausslegendre", max_tokens: int = 8192, precision: str = "fp32",
                         progress: bool = False, fused_kernels: bool = True) -> dict[str, np.ndarray]:
    """IG of the true-class probability to every neuron, one all-neuron path per example.

    A forward/backward pass holds at most `max_tokens` tokens (examples x steps x length): when one
    example's steps do not fit, its steps are taken in chunks, so peak memory is set by `max_tokens`
    whatever the step count. Returns `attributions` (examples, size) float32, and per example
    `p_on` = F(1), `p_off` = F(0) and `completeness_error` = |sum_i IG_i - (p_on - p_off)| / |p_on - p_off|.
    `fused_kernels`: GELU and its gradient in torch's fused kernel (kernels.fused_gelu), as in inference.predict_logits.
    """
    index = NeuronIndex.of(model)
    device = next(model.parameters()).device
    alphas, weights = quadrature(steps, rule)
    alpha_column = torch.tensor(alphas, dtype=torch.float32, device=device)
    step_weights = torch.tensor(weights, dtype=torch.float64, device=device)
    attributions = np.zeros((len(sequences), index.size), dtype=np.float32)
    p_on, p_off = np.zeros(len(sequences)), np.zeros(len(sequences))
    model.eval()
    precision = resolve_precision(precision, device)
    with attention_implementation(model, attention_kernel(precision, device)), fused_gelu(fused_kernels):
        for batch, input_ids, mask in tqdm(list(batches(sequences, max_residues, max_tokens, steps)), disable=not progress, desc="IG"):
            input_ids, mask = input_ids.to(device), mask.to(device)
            target = torch.as_tensor(labels[batch], device=device)
            chunk = max(1, min(steps, max_tokens // (len(batch) * input_ids.shape[1])))  # steps per pass
            total = torch.zeros(len(batch), index.size, dtype=torch.float64, device=device)
            for start in range(0, steps, chunk):
                stop = min(start + chunk, steps)
                rows, count = len(batch) * (stop - start), stop - start
                gates = alpha_column[start:stop].repeat(len(batch))[:, None].expand(rows, index.size).clone().requires_grad_(True)
                with autocast(device, precision):
                    probability = true_class_probability(model, input_ids.repeat_interleave(count, 0),
                                                         mask.repeat_interleave(count, 0), target.repeat_interleave(count), gates)
                (gradient,) = torch.autograd.grad(probability.sum(), gates)
                total += torch.einsum("bsn,s->bn", gradient.double().view(len(batch), count, index.size), step_weights[start:stop])
            attributions[batch] = total.float().cpu().numpy()
            with torch.no_grad(), autocast(device, precision):
                ends = torch.stack([torch.ones(index.size, device=device), torch.zeros(index.size, device=device)])
                for value, store in zip(ends, (p_on, p_off)):
                    store[batch] = true_class_probability(model, input_ids, mask, target, value.expand(len(batch), -1)).cpu().numpy()
    delta = p_on - p_off
    error = np.abs(attributions.astype(np.float64).sum(1) - delta) / np.maximum(np.abs(delta), 1e-12)
    return {"attributions": attributions, "p_on": p_on, "p_off": p_off, "completeness_error": error}


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


def per_class_table(index: NeuronIndex, per_class: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long side table: one row per (neuron, EC class) with one column per per-class score."""

    from .data import LABELS

    frames = []
    for label, ec_class in enumerate(LABELS):
        frame = pd.DataFrame({"neuron": np.arange(index.size), "ec_class": ec_class})
        for name, values in per_class.items():
            frame[name] = values[label]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def median_class_variation(per_class: np.ndarray, mean: np.ndarray) -> float:
    """Median over neurons of the coefficient of variation of a score across classes (sd of class means / mean)."""
    return float(np.median(np.nanstd(per_class, axis=0) / mean))


def mean_by_projection(table: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean of a score column per projection type (all layers)."""
    return {projection: float(table.loc[table["projection"] == projection, column].mean()) for projection in PROJECTIONS}


def mean_by_block(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean of a score column per layer (rows) and projection (columns, query/key/value)."""
    return table.groupby(["layer", "projection"])[column].mean().unstack()[list(PROJECTIONS)]


def top_rows(table: pd.DataFrame, column: str, count: int = 10) -> list[dict]:
    """The `count` neurons with the highest `column` as result-file rows (layer, projection, unit, score)."""
    return table.nlargest(count, column)[["layer", "projection", "unit", column]].to_dict("records")


def signed_share_by_projection(table: pd.DataFrame) -> pd.DataFrame:
    """Signed and absolute IG summed per projection type, with each type's share of the signed total."""
    summary = table.groupby("projection")[["ig_signed", "ig_absolute"]].sum()
    summary["share_of_signed_total"] = summary["ig_signed"] / summary["ig_signed"].sum()
    return summary.loc[list(PROJECTIONS)]


def completeness_summary(ig: dict[str, np.ndarray]) -> dict[str, float]:
    """Median and 90th percentile of the relative completeness error, and the mean P(true class) with all gates on
    and all off."""
    error = ig["completeness_error"]
    return {"completeness_error_median": float(np.median(error)), "completeness_error_p90": float(np.quantile(error, 0.9)),
            "completeness_error_max": float(error.max()), "p_on_mean": float(ig["p_on"].mean()),
            "p_off_mean": float(ig["p_off"].mean())}


def ranking_stability(model, sequences: list[str], labels: np.ndarray, ig: dict[str, np.ndarray], max_residues: int,
                      examples: int, steps: int, rule: str, max_tokens: int, precision: str) -> dict[str, float]:
    """How stable the IG rankings are: Spearman between two halves of the examples, and between this run's steps and
    `steps` nodes on the first `examples` examples, for the signed and the absolute score."""
    subset = slice(0, min(examples, len(sequences)))
    fine = integrated_gradients(model, sequences[subset], labels[subset], max_residues, steps=steps, rule=rule,
                                max_tokens=max_tokens, precision=precision)
    coarse = ig["attributions"][subset]
    return {"split_half_spearman": split_half_spearman(ig["attributions"], seed=0),
            "split_half_spearman_absolute": split_half_spearman(np.abs(ig["attributions"]), seed=0),
            "steps_spearman": spearman(coarse.mean(0), fine["attributions"].mean(0)),
            "steps_spearman_absolute": spearman(np.abs(coarse).mean(0), np.abs(fine["attributions"]).mean(0)),
            "stability_examples": subset.stop}


def stability_table(stability: dict[str, float], steps: int, reference_steps: int) -> pd.DataFrame:
    """A `ranking_stability` result as a table: halves and step counts (rows) by signed and absolute score."""
    rows = ["halves of the test set", f"{steps} vs {reference_steps} steps ({stability['stability_examples']} examples)"]
    return pd.DataFrame({"signed": [stability["split_half_spearman"], stability["steps_spearman"]],
                         "absolute": [stability["split_half_spearman_absolute"], stability["steps_spearman_absolute"]]},
                        index=rows).rename_axis("Spearman")
