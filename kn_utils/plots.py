"""Figures of the study; each function draws one figure and returns it (saving is `save_figure`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .data import EC_CLASSES


def save_figure(figure: plt.Figure, folder: str | Path, name: str) -> Path:
    """Save `figure` as `folder/name.png` (150 dpi) and return the path."""
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150, bbox_inches="tight", metadata={"Software": None})
    return path


def class_counts_bar(counts: dict[str, dict[str, int]], paper_total: int | None = 11_731) -> plt.Figure:
    """Records per EC class and split, with the paper's balanced per-class share as a line."""
    frame = pd.DataFrame(counts).rename(index=lambda c: f"{c} {EC_CLASSES[int(c)]}")
    figure, axis = plt.subplots(figsize=(7, 3.5))
    frame.plot.bar(stacked=True, ax=axis, color=["#d95f02", "#1b9e77"][: frame.shape[1]])
    if paper_total:
        axis.axhline(paper_total / 6, color="grey", linestyle="--", label=f"paper: {paper_total / 6:.0f} per class")
    axis.set_ylabel("sequences")
    axis.set_xlabel("")
    axis.legend()
    axis.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    return figure


def length_histogram(lengths: pd.Series, classes: pd.Series, limits: dict[str, int]) -> plt.Figure:
    """Sequence lengths per EC class, with the length limits marked."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(0, min(int(lengths.max()), 1500), 60)
    for ec_class in sorted(classes.unique()):
        axis.hist(lengths[classes == ec_class], bins=bins, histtype="step", label=f"EC {ec_class}")
    for name, value in limits.items():
        axis.axvline(value, color="black", linestyle=":")
        axis.text(value, axis.get_ylim()[1] * 0.95, f" {name}", fontsize=8, va="top")
    axis.set_xlabel("residues")
    axis.set_ylabel("sequences")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def training_curve(history: list[dict], baselines: dict[str, float]) -> plt.Figure:
    """Training loss and test accuracy / balanced accuracy per epoch, with baseline levels."""
    frame = pd.DataFrame(history)
    figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_axis.plot(frame["epoch"], frame["train_loss"], marker="o")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss (cross-entropy)")
    for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        if metric in frame:
            score_axis.plot(frame["epoch"], frame[metric], marker="o", label=metric.replace("_", " "))
    for (name, level), style in zip(baselines.items(), ("--", ":", "-.")):
        score_axis.axhline(level, color="grey", linestyle=style, label=name)
    score_axis.set_xlabel("epoch")
    score_axis.set_ylabel("test score")
    score_axis.set_ylim(0, 1)
    score_axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def confusion_heatmap(matrix: np.ndarray) -> plt.Figure:
    """Confusion matrix (rows true EC class, columns predicted), counts annotated, colour row-normalised."""
    names = [f"{c}" for c in EC_CLASSES]
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", color="white" if normalised[row, column] > 0.5 else "black", fontsize=8)
    axis.set_xticks(range(len(names)), names)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted EC class")
    axis.set_ylabel("true EC class")
    figure.tight_layout()
    return figure


def scores_by_projection(table: pd.DataFrame, column: str, ylabel: str) -> plt.Figure:
    """Box plot of one neuron score per layer, query/key/value side by side."""
    from .neurons import PROJECTIONS

    figure, axis = plt.subplots(figsize=(8, 3.5))
    layers = sorted(table["layer"].unique())
    colours = {"query": "#1b9e77", "key": "#d95f02", "value": "#7570b3"}
    for offset, projection in zip((-0.27, 0, 0.27), PROJECTIONS):
        values = [table.loc[(table["layer"] == layer) & (table["projection"] == projection), column] for layer in layers]
        boxes = axis.boxplot(values, positions=np.array(layers) + offset, widths=0.22, patch_artist=True, showfliers=False)
        for box in boxes["boxes"]:
            box.set_facecolor(colours[projection])
        axis.plot([], [], color=colours[projection], linewidth=6, label=projection)
    axis.set_xticks(layers, [f"layer {layer}" for layer in layers])
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def histogram(values: np.ndarray, xlabel: str, marks: dict[str, float] | None = None, log: bool = False) -> plt.Figure:
    """A histogram of one distribution, with vertical marks (median, target...)."""
    figure, axis = plt.subplots(figsize=(6, 3))
    data = np.log10(np.maximum(values, 1e-12)) if log else values
    axis.hist(data, bins=50, color="#4c72b0")
    for (name, value), style in zip((marks or {}).items(), ("--", ":", "-.")):
        axis.axvline(np.log10(value) if log else value, color="black", linestyle=style, label=f"{name} {value:.3g}")
    axis.set_xlabel(f"log10 {xlabel}" if log else xlabel)
    axis.set_ylabel("count")
    if marks:
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def scatter_ranks(x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str) -> plt.Figure:
    """Rank-versus-rank scatter of two neuron scores."""
    from scipy.stats import rankdata

    figure, axis = plt.subplots(figsize=(4, 4))
    axis.scatter(rankdata(x), rankdata(y), s=2, alpha=0.3)
    axis.set_xlabel(f"rank by {xlabel}")
    axis.set_ylabel(f"rank by {ylabel}")
    figure.tight_layout()
    return figure


def accuracy_bars(results: pd.DataFrame, keep_fractions: list[float], levels: dict[str, float], metric: str = "accuracy") -> plt.Figure:
    """Figure 2: test metric per kept fraction and selection rule; random as mean with min-max error bars over seeds."""
    from .ablation import method_label

    plain = results[(results["method"] != "full") & (results["ablation"] == "zero") & ~results["matched"]
                    & results["keep_fraction"].isin(keep_fractions)].copy()
    plain["rule"] = plain.apply(method_label, axis=1)
    rules = list(dict.fromkeys(plain.sort_values("method", key=lambda m: m.map({"random": 0, "activation": 1, "ig_signed": 2, "ig_absolute": 3}))["rule"]))
    figure, axis = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(rules)
    fractions = sorted(keep_fractions, reverse=True)
    for offset, rule in enumerate(rules):
        stats = plain[plain["rule"] == rule].groupby("keep_fraction")[metric].agg(["mean", "min", "max"]).reindex(fractions)
        positions = np.arange(len(fractions)) + (offset - (len(rules) - 1) / 2) * width
        errors = np.vstack([stats["mean"] - stats["min"], stats["max"] - stats["mean"]])
        axis.bar(positions, stats["mean"], width, yerr=errors if rule == "random" else None, capsize=3, label=rule)
    for (name, level), style in zip(levels.items(), ("--", ":", "-.")):
        axis.axhline(level, color="black", linestyle=style, linewidth=1, label=f"{name} {level:.3f}")
    axis.set_xticks(range(len(fractions)), [f"keep {f:.0%}" for f in fractions])
    axis.set_ylabel(f"test {metric.replace('_', ' ')}")
    axis.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    return figure


def accuracy_curve(results: pd.DataFrame, levels: dict[str, float], metric: str = "accuracy") -> plt.Figure:
    """Test metric against kept fraction (log axis) per selection rule, zero ablation, unmatched."""
    from .ablation import method_label

    plain = results[(results["method"] != "full") & (results["ablation"] == "zero") & ~results["matched"]].copy()
    plain["rule"] = plain.apply(method_label, axis=1)
    figure, axis = plt.subplots(figsize=(7, 4))
    for rule, group in plain.groupby("rule"):
        curve = group.groupby("keep_fraction")[metric].mean()
        axis.plot(curve.index, curve.values, marker="o", markersize=3, label=rule)
    for (name, level), style in zip(levels.items(), ("--", ":", "-.")):
        axis.axhline(level, color="black", linestyle=style, linewidth=1, label=f"{name} {level:.3f}")
    axis.set_xscale("log")
    axis.set_xlabel("fraction of the 5,760 neurons kept")
    axis.set_ylabel(f"test {metric.replace('_', ' ')}")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def kept_heatmaps(grids: dict[tuple[str, float], np.ndarray], n_layers: int, bin_width: int) -> plt.Figure:
    """Figures 3-5: one panel per (method, sparsity); rows layer x {query, key, value}, cells fraction kept per unit group."""
    from .neurons import PROJECTIONS

    methods = list(dict.fromkeys(method for method, _ in grids))
    sparsities = list(dict.fromkeys(sparsity for _, sparsity in grids))
    figure, axes = plt.subplots(len(sparsities), len(methods), figsize=(3.2 * len(methods), 3.4 * len(sparsities)), squeeze=False)
    labels = [f"L{layer} {name[0].upper()}" for layer in range(n_layers) for name in PROJECTIONS]
    for row, sparsity in enumerate(sparsities):
        for column, method in enumerate(methods):
            axis = axes[row, column]
            image = axis.imshow(grids[(method, sparsity)], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            axis.set_title(f"{method}, {sparsity:.0%} sparsity", fontsize=9)
            axis.set_yticks(range(len(labels)), labels if column == 0 else [], fontsize=6)
            axis.set_xlabel(f"unit group ({bin_width} adjacent units)", fontsize=7)
            axis.tick_params(axis="x", labelsize=6)
    figure.colorbar(image, ax=axes, shrink=0.6, label="fraction kept")
    return figure


def kept_by_projection_bars(table: pd.DataFrame) -> plt.Figure:
    """Fraction kept per projection type, one panel per sparsity, bars per method."""
    sparsities = sorted(table["sparsity"].unique())
    figure, axes = plt.subplots(1, len(sparsities), figsize=(4 * len(sparsities), 3), squeeze=False)
    for axis, sparsity in zip(axes[0], sparsities):
        subset = table[table["sparsity"] == sparsity].pivot(index="method", columns="projection", values="fraction_kept")
        subset[["query", "key", "value"]].plot.bar(ax=axis, legend=axis is axes[0][0])
        axis.axhline(1 - sparsity, color="black", linestyle=":", linewidth=1)
        axis.set_title(f"{sparsity:.0%} sparsity", fontsize=9)
        axis.set_xlabel("")
        axis.tick_params(axis="x", rotation=30, labelsize=7)
    axes[0][0].set_ylabel("fraction kept")
    figure.tight_layout()
    return figure
