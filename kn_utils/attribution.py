"""Integrated gradients (IG) of the true-class probability to every neuron, on one all-gates path per example, with
the quadrature refined until each example's attributions pass their own completeness check.

Every neuron gets a gate g_i multiplying its output (g = 1 is the model, g_i = 0 the neuron ablated: weight row and
bias zeroed). F(g) is the softmax probability of the true class. The path scales all gates at once, g = alpha * 1 for
alpha from 0 to 1, so one path per example attributes every neuron:
IG_i = integral_0^1 dF/dg_i(alpha * 1) d alpha, which for one neuron is the paper's a_i * integral dP(alpha a)/da_i.
Completeness: sum_i IG_i = F(1) - F(0), checkable per example.

The quadrature is adaptive and driven by that check (the rule itself, `quadrature`, is apart). The path is cut into
`panels` panels, placed so that each holds an equal share of the change of F (from F at `probes` points, forward
passes only: on a trained model F rises sharply over a short stretch of the path, at a place that differs between
examples), each integrated with `steps` Gauss-Legendre nodes. A panel passes when the sum of its attributions is
within its share of the example's tolerance of F(b) - F(a), the same check on the piece (F at the panel's ends costs a
forward pass each), and when a null rule on the same nodes estimates its neurons' errors within their share too: a sum
can come right by chance while single terms are off. A failing panel is halved and both halves integrated again (each
with half its share), up to `max_depth` halvings: nodes go where the integrand varies, and only on the examples that
need them. The panels' errors add up to at most the example's bound, so every converged example meets it.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .alphabet import encode
from .attention import attention_implementation, attention_kernel
from .inference import autocast, token_batches
from .kernels import fused_gelu
from .model import resolve_precision
from .neurons import NeuronIndex, gated

QUADRATURE_RULES = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


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


def null_rule(alphas: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weights on the same nodes that integrate every polynomial of degree < len(alphas) - 1 to zero (a null rule,
    Berntsen & Espelid), scaled to the 2-norm of `weights`: applied to the integrand, it measures what a lower-degree
    rule would miss, an error estimate at no extra evaluation."""
    differences = alphas[:, None] - alphas[None, :]
    np.fill_diagonal(differences, 1.0)
    null = 1.0 / differences.prod(1)  # the divided difference of order len(alphas) - 1
    return null * np.linalg.norm(weights) / np.linalg.norm(null)


def true_class_probability(model, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                           gates: torch.Tensor) -> torch.Tensor:
    """F(gates): softmax probability of each row's true class with neuron outputs multiplied by `gates`."""
    with gated(model, gates):
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
    return logits.softmax(-1).gather(1, labels[:, None])[:, 0]


def path_gradients(model, tokens: list[list[int]], labels: np.ndarray, examples: np.ndarray, alphas: np.ndarray,
                   weights: np.ndarray, groups: np.ndarray, n_groups: int, max_tokens: int,
                   precision: str) -> np.ndarray:
    """Per rule k and group, the sum over the group's rows r of weights[r, k] * dF/dg at g = alphas[r] * 1 for example
    examples[r]: (rules, n_groups, neurons) float64. A pass holds at most `max_tokens` tokens (rows x length)."""
    device = next(model.parameters()).device
    size = NeuronIndex.of(model).size
    totals = torch.zeros(weights.shape[1], n_groups, size, dtype=torch.float64, device=device)
    for batch, input_ids, mask in token_batches([tokens[e] for e in examples], max_tokens):
        gates = torch.as_tensor(alphas[batch], dtype=torch.float32, device=device)[:, None].repeat(1, size).requires_grad_(True)
        target = torch.as_tensor(labels[examples[batch]], device=device)
        with autocast(device, precision):
            probability = true_class_probability(model, input_ids.to(device), mask.to(device), target, gates)
        (gradient,) = torch.autograd.grad(probability.sum(), gates)
        row_weights = torch.as_tensor(weights[batch], dtype=torch.float64, device=device)
        for rule, total in enumerate(totals):
            total.index_add_(0, torch.as_tensor(groups[batch], device=device), gradient.double() * row_weights[:, rule, None])
    return totals.cpu().numpy()


@torch.no_grad()
def path_probabilities(model, tokens: list[list[int]], labels: np.ndarray, examples: np.ndarray, alphas: np.ndarray,
                       max_tokens: int, precision: str) -> np.ndarray:
    """F(alphas[r] * 1) of example examples[r], for every row r (float64)."""
    device = next(model.parameters()).device
    size = NeuronIndex.of(model).size
    values = np.zeros(len(examples))
    for batch, input_ids, mask in token_batches([tokens[e] for e in examples], max_tokens):
        gates = torch.as_tensor(alphas[batch], dtype=torch.float32, device=device)[:, None].expand(len(batch), size)
        target = torch.as_tensor(labels[examples[batch]], device=device)
        with autocast(device, precision):
            values[batch] = true_class_probability(model, input_ids.to(device), mask.to(device), target, gates).cpu().numpy()
    return values


def variation_mesh(probed: np.ndarray, panels: int, floor: float = 0.5) -> np.ndarray:
    """Panel bounds (examples, panels + 1) on [0, 1] that share the change of F equally: from F at equally spaced
    probes (examples, probes + 1), each probe interval weighted by its |change in F| plus `floor` times the mean change
    (so that no stretch of the path goes without nodes)."""
    grid = np.linspace(0, 1, probed.shape[1])
    change = np.abs(np.diff(probed, axis=1))
    weight = change + floor * change.mean(1, keepdims=True) + 1e-12
    cumulative = np.concatenate([np.zeros((len(weight), 1)), np.cumsum(weight, 1)], 1)
    targets = np.linspace(0, 1, panels + 1)
    return np.stack([np.interp(targets, row / row[-1], grid) for row in cumulative])


def integrated_gradients(model, sequences: list[str], labels: np.ndarray, max_residues: int, steps: int = 8,
                         rule: str = "gausslegendre", tolerance: float | None = None, absolute_tolerance: float = 0.0,
                         neuron_tolerance: float = 0.1, max_depth: int = 5, panels: int = 1, probes: int = 0,
                         max_tokens: int = 8192, precision: str = "fp32", progress: bool = False,
                         fused_kernels: bool = True) -> dict[str, np.ndarray]:
    """IG of the true-class probability to every neuron, one all-neuron path per example.

    `steps` nodes of `rule` per panel; `panels` panels to start with, equal or (`probes` > 0) placed by the change of F
    (`variation_mesh`). Without `tolerance`, no refinement: one panel is the plain fixed rule. With it, a panel [a, b] of
    an example passes two checks, each on its share (1 / panels, halved at each split) of the example's budget: completeness,
    |sum_i IG_i - (F(b) - F(a))| <= max(tolerance * |F(1) - F(0)|, absolute_tolerance); and, since a sum can come right
    while its terms are wrong, the null rule's estimate of the neurons' errors (`null_rule`, L1 over neurons) within
    `neuron_tolerance` of the L1 norm of the example's attributions (or within `absolute_tolerance`). A failing panel is halved, up to `max_depth`
    times. A pass holds at most `max_tokens` tokens (rows x length), so memory is bounded whatever the node count.
    Returns per example `attributions` (float32), `p_on` = F(1), `p_off` = F(0), `completeness_error` (relative),
    `absolute_error` (in probability), `nodes` (gradient evaluations) and `converged` (both checks passed on every
    panel; None without a tolerance).
    `fused_kernels`: GELU and its gradient in torch's fused kernel (kernels.fused_gelu), as in inference.predict_logits.
    """
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device)
    labels = np.asarray(labels)
    tokens = [encode(sequence, max_residues) for sequence in sequences]
    count, size = len(sequences), NeuronIndex.of(model).size
    nodes, node_weights = quadrature(steps, rule)
    rules = np.stack([node_weights, null_rule(nodes, node_weights)], 1)  # (steps, 2): the rule and its error estimate
    attributions = np.zeros((count, size))
    spent = np.zeros(count, dtype=int)
    converged = np.ones(count, dtype=bool)
    model.eval()
    with attention_implementation(model, attention_kernel(precision, device)), fused_gelu(fused_kernels):
        ends = path_probabilities(model, tokens, labels, np.repeat(np.arange(count), 2), np.tile([1.0, 0.0], count),
                                  max_tokens, precision).reshape(count, 2)
        p_on, p_off = ends[:, 0], ends[:, 1]
        allowed = np.maximum((tolerance or 0.0) * np.abs(p_on - p_off), absolute_tolerance)
        bounds = np.tile(np.linspace(0, 1, panels + 1), (count, 1))
        if probes and panels > 1:  # F at equally spaced points (forward passes only) places the panels
            grid = np.linspace(0, 1, probes + 1)[1:-1]
            probed = path_probabilities(model, tokens, labels, np.repeat(np.arange(count), len(grid)), np.tile(grid, count),
                                        max_tokens, precision).reshape(count, -1)
            bounds = variation_mesh(np.column_stack([p_off, probed, p_on]), panels)
        inner = path_probabilities(model, tokens, labels, np.repeat(np.arange(count), panels - 1), bounds[:, 1:-1].ravel(),
                                   max_tokens, precision).reshape(count, -1)
        values = np.column_stack([p_off, inner, p_on])
        # pending panels: example, start, stop, F(start), F(stop), share of the example's error budget
        example, start, stop = np.repeat(np.arange(count), panels), bounds[:, :-1].ravel(), bounds[:, 1:].ravel()
        f_start, f_stop, share = values[:, :-1].ravel(), values[:, 1:].ravel(), np.full(count * panels, 1 / panels)
        scale = np.zeros(count)  # L1 norm of each example's attributions, from its first panels
        for depth in tqdm(range(max_depth + 1 if tolerance is not None else 1), disable=not progress, desc="IG depth"):
            width = stop - start
            rows = np.repeat(np.arange(len(example)), steps)
            sums, null = path_gradients(model, tokens, labels, example[rows], start[rows] + np.tile(nodes, len(example)) * width[rows],
                                        np.tile(rules, (len(example), 1)) * width[rows, None], rows, len(example), max_tokens,
                                        precision)
            np.add.at(spent, example, steps)
            if depth == 0:
                np.add.at(scale, example, np.abs(sums).sum(1))
            passed = np.ones(len(example), dtype=bool)
            if tolerance is not None:
                passed = ((np.abs(sums.sum(1) - (f_stop - f_start)) <= allowed[example] * share)
                          & (np.abs(null).sum(1) <= np.maximum(neuron_tolerance * scale[example], absolute_tolerance) * share))
            if depth == max_depth:
                converged[example[~passed]] = False
                passed[:] = True  # refined as far as allowed: kept, and reported by `converged`
            np.add.at(attributions, example[passed], sums[passed])
            failed = ~passed
            if not failed.any():
                break
            example, start, stop, f_start, f_stop, share = (a[failed] for a in (example, start, stop, f_start, f_stop, share))
            middle = (start + stop) / 2
            f_middle = path_probabilities(model, tokens, labels, example, middle, max_tokens, precision)
            example, start, stop = np.repeat(example, 2), np.stack([start, middle], 1).ravel(), np.stack([middle, stop], 1).ravel()
            f_start, f_stop = np.stack([f_start, f_middle], 1).ravel(), np.stack([f_middle, f_stop], 1).ravel()
            share = np.repeat(share / 2, 2)
    delta = p_on - p_off
    absolute = np.abs(attributions.sum(1) - delta)
    return {"attributions": attributions.astype(np.float32), "p_on": p_on, "p_off": p_off,
            "completeness_error": absolute / np.maximum(np.abs(delta), 1e-12), "absolute_error": absolute,
            "nodes": spent, "converged": converged if tolerance is not None else None}


def completeness_summary(ig: dict[str, np.ndarray], small_change: float = 0.05) -> dict[str, float]:
    """Completeness of an IG run: the relative error (median, 90th percentile, max), the absolute error in probability
    (median, 90th percentile, max; and its max over the examples whose |F(1) - F(0)| < `small_change`, where the relative
    error is ill-conditioned), the share of examples within the tolerance, nodes per example, and the mean F(1), F(0)."""
    relative, absolute = ig["completeness_error"], ig["absolute_error"]
    small = np.abs(ig["p_on"] - ig["p_off"]) < small_change
    summary = {"completeness_error_median": float(np.median(relative)), "completeness_error_p90": float(np.quantile(relative, 0.9)),
               "completeness_error_max": float(relative.max()), "absolute_error_median": float(np.median(absolute)),
               "absolute_error_p90": float(np.quantile(absolute, 0.9)), "absolute_error_max": float(absolute.max()),
               "completeness_error_p90_beyond_small_change": float(np.quantile(relative[~small], 0.9)) if (~small).any() else 0.0,
               "small_change_examples": int(small.sum()),
               "small_change_absolute_error_max": float(absolute[small].max()) if small.any() else 0.0,
               "nodes_mean": float(ig["nodes"].mean()), "nodes_max": int(ig["nodes"].max()),
               "p_on_mean": float(ig["p_on"].mean()), "p_off_mean": float(ig["p_off"].mean())}
    if ig.get("converged") is not None:
        summary["converged_share"] = float(np.mean(ig["converged"]))
    summary["within_bound"] = within_bound(summary)
    return summary


# The study's completeness bound (docs/experiments.md): median relative error, 90th percentile of the relative error
# where |F(1) - F(0)| >= 0.05, and the absolute error (probability) where it is smaller.
COMPLETENESS_BOUND = {"median": 0.01, "p90": 0.05, "small_change_absolute": 0.005}


def within_bound(summary: dict) -> bool:
    """Whether a `completeness_summary` meets COMPLETENESS_BOUND."""
    return bool(summary["completeness_error_median"] <= COMPLETENESS_BOUND["median"]
                and summary["completeness_error_p90_beyond_small_change"] <= COMPLETENESS_BOUND["p90"]
                and summary["small_change_absolute_error_max"] <= COMPLETENESS_BOUND["small_change_absolute"])


def split_half_stability(attributions: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Spearman of the mean signed, and of the mean absolute, attributions between two random halves of the examples."""
    from .scoring import split_half_spearman

    return {"split_half_spearman": split_half_spearman(attributions, seed=seed),
            "split_half_spearman_absolute": split_half_spearman(np.abs(attributions), seed=seed)}


def top_overlap(first: np.ndarray, second: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the top `fraction` of neurons by `first` that are also in the top `fraction` by `second`."""
    count = max(1, int(round(fraction * len(first))))
    return len(set(np.argsort(-first)[:count]) & set(np.argsort(-second)[:count])) / count


def convergence_table(model, sequences: list[str], labels: np.ndarray, max_residues: int, settings: dict[str, dict],
                      reference: dict, max_tokens: int = 4096) -> pd.DataFrame:
    """IG of the same examples under each setting (name -> `integrated_gradients` keywords) against a fine `reference`
    (keywords): nodes per example, completeness (relative and absolute), the error of the attributions themselves
    (median over examples of the L1 distance to the reference's, relative to its L1 norm), rank agreement of the
    signed and absolute scores with the reference's (Spearman; overlap of the top 10 % signed), and time."""
    from .scoring import spearman

    runs = {}
    for name, options in {**settings, "reference": reference}.items():
        started = time.perf_counter()
        runs[name] = integrated_gradients(model, sequences, labels, max_residues, max_tokens=max_tokens, **options)
        runs[name]["seconds"] = time.perf_counter() - started
    fine = runs["reference"]["attributions"]
    rows = []
    for name, ig in runs.items():
        options = {**settings, "reference": reference}[name]
        rows.append({"setting": name, "precision": resolve_precision(options.get("precision", "fp32"), next(model.parameters()).device),
                     "nodes per example": ig["nodes"].mean(),
                     "median error": np.median(ig["completeness_error"]), "90th pct error": np.quantile(ig["completeness_error"], 0.9),
                     "median abs. error": np.median(ig["absolute_error"]),
                     "neuron error vs reference": np.median(np.abs(ig["attributions"] - fine).sum(1) / np.abs(fine).sum(1)),
                     "Spearman signed": spearman(ig["attributions"].mean(0), fine.mean(0)),
                     "Spearman absolute": spearman(np.abs(ig["attributions"]).mean(0), np.abs(fine).mean(0)),
                     "top-10% overlap": top_overlap(ig["attributions"].mean(0), fine.mean(0)),
                     "examples/s": len(sequences) / ig["seconds"]})
    return pd.DataFrame(rows).set_index("setting")


def convergence_settings(adaptive: dict, device) -> dict[str, dict]:
    """The settings notebook 04 compares: fixed Gauss-Legendre rules of 8, 16 and 32 nodes in fp32 (and in bf16 where
    the device computes it natively), and the adaptive setting the run uses (`integrated_gradients` keywords)."""
    settings = {f"{nodes} nodes fp32": {"steps": nodes, "precision": "fp32"} for nodes in (8, 16, 32)}
    if resolve_precision("auto", device) == "bf16":
        settings.update({f"{nodes} nodes bf16": {"steps": nodes, "precision": "bf16"} for nodes in (8, 32)})
    settings["adaptive (this run)"] = dict(adaptive)
    return settings
