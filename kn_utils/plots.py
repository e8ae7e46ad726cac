"""Figures of the study; each function draws one figure and returns it (saving is `save_figure`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .data import class_titles, is_ec_task
from .provenance import atomic_path


def save_figure(figure: plt.Figure, folder: str | Path, name: str) -> Path:
    """Save `figure` as `folder/name.png` (150 dpi) through a temporary file, and return the path."""
    path = Path(folder) / f"{name}.png"
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
    return path


def class_counts_bar(counts: dict[str, dict[str, int]], paper_total: int | None = 11_731) -> plt.Figure:
    """Records per class and split; for the EC task with the paper's balanced per-class share as a line."""
    frame = pd.DataFrame(counts)
    classes = list(frame.index)
    frame.index = class_titles(classes)
    figure, axis = plt.subplots(figsize=(7, 3.5))
    frame.plot.bar(stacked=True, ax=axis, color=["#d95f02", "#1b9e77"][: frame.shape[1]])
    if paper_total and is_ec_task(classes):
        axis.axhline(paper_total / 6, color="grey", linestyle="--", label=f"paper: {paper_total / 6:.0f} per class")
    axis.set_ylabel("sequences")
    axis.set_xlabel("")
    axis.legend()
    axis.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    return figure


def length_histogram(lengths: pd.Series, labels: pd.Series, names: list[str], limits: dict[str, int]) -> plt.Figure:
    """Sequence lengths per class (`labels` index `names`), with the length limits marked."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(0, min(int(lengths.max()), 1500), 60)
    for label, name in enumerate(names):
        if (labels == label).any():
            axis.hist(lengths[labels == label], bins=bins, histtype="step", label=name)
    for name, value in limits.items():
        axis.axvline(value, color="black", linestyle=":")
        axis.text(value, axis.get_ylim()[1] * 0.95, f" {name}", fontsize=8, va="top")
    axis.set_xlabel("residues")
    axis.set_ylabel("sequences")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def training_curve(history: list[dict], baselines: dict[str, float], scored_on: str = "test") -> plt.Figure:
    """Training loss and the `scored_on` set's accuracy / balanced accuracy per epoch, with baseline levels."""
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
    score_axis.set_ylabel(f"{scored_on} score")
    score_axis.set_ylim(0, 1)
    score_axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def mlm_curve(history: list[dict], unigram_loss: float) -> plt.Figure:
    """MLM warm-start loss against steps, with the loss of guessing from residue frequencies alone."""
    frame = pd.DataFrame(history)
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    axis.plot(frame["step"], frame["loss"], marker=".")
    axis.axhline(unigram_loss, color="grey", linestyle="--", label="residue frequencies only")
    axis.set_xlabel("MLM step")
    axis.set_ylabel("masked-residue loss (nats)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def confusion_heatmap(matrix: np.ndarray, names: list[str]) -> plt.Figure:
    """Confusion matrix (rows true class, columns predicted), counts annotated, colour row-normalised."""
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", color="white" if normalised[row, column] > 0.5 else "black", fontsize=8)
    axis.set_xticks(range(len(names)), names)
    axis.set_yticks(range(len(names)), names)
    axis.tick_params(axis="x", rotation=90 if max(map(len, names)) > 3 else 0)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    figure.tight_layout()
    return figure


def scores_by_projection(table: pd.DataFrame, column: str, ylabel: str) -> plt.Figure:
    """Box plot of one neuron score per layer, the block kinds (query/key/value, ffn, head) side by side."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    layers = sorted(table["layer"].unique())
    colours = {"query": "#1b9e77", "key": "#d95f02", "value": "#7570b3", "ffn": "#e7298a", "head": "#66a61e"}
    kinds = list(dict.fromkeys(table["projection"]))
    step = 0.8 / len(kinds)
    for offset, projection in zip(np.arange(len(kinds)) * step - 0.4 + step / 2, kinds):
        values = [table.loc[(table["layer"] == layer) & (table["projection"] == projection), column] for layer in layers]
        boxes = axis.boxplot(values, positions=np.array(layers) + offset, widths=0.8 * step, patch_artist=True, showfliers=False)
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
    from .ablation import method_label, plain_zero

    plain = plain_zero(results)
    plain = plain[plain["keep_fraction"].isin(keep_fractions)].copy()
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


def accuracy_curve(results: pd.DataFrame, levels: dict[str, float], n_neurons: int, metric: str = "accuracy") -> plt.Figure:
    """Test metric against kept fraction (log axis) per selection rule, zero ablation, unmatched."""
    from .ablation import method_label, plain_zero

    plain = plain_zero(results).copy()
    plain["rule"] = plain.apply(method_label, axis=1)
    figure, axis = plt.subplots(figsize=(7, 4))
    for rule, group in plain.groupby("rule"):
        curve = group.groupby("keep_fraction")[metric].mean()
        axis.plot(curve.index, curve.values, marker="o", markersize=3, label=rule)
    for (name, level), style in zip(levels.items(), ("--", ":", "-.")):
        axis.axhline(level, color="black", linestyle=style, linewidth=1, label=f"{name} {level:.3f}")
    axis.set_xscale("log")
    axis.set_xlabel(f"fraction of the {n_neurons:,} neurons kept")
    axis.set_ylabel(f"test {metric.replace('_', ' ')}")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def kept_heatmaps(grids: dict[tuple[str, float], np.ndarray], n_layers: int, bin_width: int,
                  kinds: tuple[str, ...] = ("query", "key", "value")) -> plt.Figure:
    """Figures 3-5: one panel per (method, sparsity); rows layer x block kind, cells fraction kept per unit group."""
    from .neurons import block_name

    methods = list(dict.fromkeys(method for method, _ in grids))
    sparsities = list(dict.fromkeys(sparsity for _, sparsity in grids))
    figure, axes = plt.subplots(len(sparsities), len(methods), figsize=(3.2 * len(methods), 3.4 * len(sparsities)), squeeze=False,
                                layout="constrained")  # titles and labels never overlap the next row
    labels = [block_name(layer, name) for layer in range(n_layers) for name in kinds]
    for row, sparsity in enumerate(sparsities):
        for column, method in enumerate(methods):
            axis = axes[row, column]
            image = axis.imshow(grids[(method, sparsity)], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            axis.set_title(f"{method}, {sparsity:.0%} sparsity", fontsize=9)
            axis.set_yticks(range(len(labels)), labels if column == 0 else [], fontsize=6)
            if row == len(sparsities) - 1:
                axis.set_xlabel(f"unit group ({bin_width} adjacent units)", fontsize=8)
            axis.tick_params(axis="x", labelsize=6)
    figure.colorbar(image, ax=axes, shrink=0.6, label="fraction kept")
    return figure


def kept_by_projection_bars(table: pd.DataFrame) -> plt.Figure:
    """Fraction kept per block kind (query/key/value, ffn, head), one panel per sparsity, bars per method."""
    sparsities = sorted(table["sparsity"].unique())
    figure, axes = plt.subplots(1, len(sparsities), figsize=(4 * len(sparsities), 3), squeeze=False)
    for axis, sparsity in zip(axes[0], sparsities):
        subset = table[table["sparsity"] == sparsity].pivot(index="method", columns="projection", values="fraction_kept")
        subset[list(dict.fromkeys(table["projection"]))].plot.bar(ax=axis, legend=axis is axes[0][0])
        axis.axhline(1 - sparsity, color="black", linestyle=":", linewidth=1)
        axis.set_title(f"{sparsity:.0%} sparsity", fontsize=9)
        axis.set_xlabel("")
        axis.tick_params(axis="x", rotation=30, labelsize=7)
    axes[0][0].set_ylabel("fraction kept")
    figure.tight_layout()
    return figure


def overlap_figure(pairwise: pd.DataFrame, combinations: pd.Series, max_bars: int = 20) -> plt.Figure:
    """Class neuron sets: shared neurons per pair of classes (matrix) and neurons per exact class combination (bars)."""
    figure, (matrix_axis, bar_axis) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.6]})
    image = matrix_axis.imshow(pairwise.to_numpy(), cmap="Blues")
    for (row, column), value in np.ndenumerate(pairwise.to_numpy()):
        matrix_axis.text(column, row, str(value), ha="center", va="center", fontsize=8,
                         color="white" if value > pairwise.to_numpy().max() / 2 else "black")
    matrix_axis.set_xticks(range(len(pairwise)), [f"EC {c}" for c in pairwise.columns], fontsize=8)
    matrix_axis.set_yticks(range(len(pairwise)), [f"EC {c}" for c in pairwise.index], fontsize=8)
    matrix_axis.set_title("neurons shared by two classes' top sets", fontsize=9)
    figure.colorbar(image, ax=matrix_axis, shrink=0.7)
    shown = combinations.head(max_bars)
    bar_axis.bar(range(len(shown)), shown.to_numpy(), color="#4c72b0")
    bar_axis.set_xticks(range(len(shown)), [f"EC {key}" for key in shown.index], rotation=70, fontsize=7)
    bar_axis.set_ylabel("neurons in exactly these classes' sets")
    bar_axis.set_title("upset-style: exact combinations", fontsize=9)
    figure.tight_layout()
    return figure


def effect_matrices(effects: dict[str, dict[str, np.ndarray]], names: list[str], metric: str = "probability") -> plt.Figure:
    """One panel per scale factor: effect of class c's neurons on class c' minus the random-control mean, ± its sd."""
    figure, axes = plt.subplots(1, len(effects), figsize=(5.2 * len(effects), 4.4), squeeze=False)
    for axis, (factor, result) in zip(axes[0], effects.items()):
        random = result[f"{metric}_random"]
        net = result[metric] - random.mean(0)
        spread = random.std(0, ddof=1) if len(random) > 1 else np.zeros_like(net)
        limit = max(np.nanmax(np.abs(net)), 1e-6)
        image = axis.imshow(net, cmap="RdBu_r", vmin=-limit, vmax=limit)
        for (row, column), value in np.ndenumerate(net):
            axis.text(column, row, f"{value:+.3f}\n±{spread[row, column]:.3f}", ha="center", va="center", fontsize=6.5)
        axis.set_xticks(range(len(names)), names, fontsize=8, rotation=90 if max(map(len, names)) > 5 else 0)
        axis.set_yticks(range(len(names)), names, fontsize=8)
        axis.set_xlabel("effect on test examples of class")
        axis.set_ylabel("neurons of class")
        axis.set_title(f"neurons x{factor}: Δ {metric.replace('probability', 'true-class probability')}\nminus random control (± its sd)", fontsize=9)
        figure.colorbar(image, ax=axis, shrink=0.7)
    figure.tight_layout()
    return figure


def sequence_logos(windows: dict[str, list[str]], columns: int = 4) -> plt.Figure:
    """One information-content logo (logomaker) per neuron from the residue windows around its activation peaks."""
    import logomaker

    rows = int(np.ceil(len(windows) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 1.7 * rows), squeeze=False)
    for axis in axes.flat[len(windows):]:
        axis.axis("off")
    for axis, (name, sequences) in zip(axes.flat, windows.items()):
        counts = logomaker.alignment_to_matrix(sequences, to_type="information", characters_to_ignore="-.X")
        logomaker.Logo(counts, ax=axis, color_scheme="chemistry", show_spines=False)
        half = (len(sequences[0]) - 1) // 2
        axis.set_xticks([0, half, 2 * half], [f"-{half}", "peak", f"+{half}"], fontsize=7)
        axis.set_title(name, fontsize=8)
        axis.tick_params(axis="y", labelsize=6)
    figure.tight_layout()
    return figure
