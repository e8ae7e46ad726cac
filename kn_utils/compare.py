"""Two runs of the study side by side (e.g. random split against the split that keeps UniProt accessions apart)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .ablation import select, table1
from .heatmaps import expected_random_jaccard, jaccard, kept_by_projection
from .neurons import NeuronIndex
from .provenance import read_json

STAGE_FILES = ("data", "finetune", "ablation")


def run_available(run: str | Path) -> bool:
    """True when a run holds the result files and neuron scores a comparison reads."""
    run = Path(run)
    return all((run / f"{stage}.json").exists() for stage in STAGE_FILES) and (run / "neuron_scores.parquet").exists()


def headline(runs: dict[str, Path]) -> pd.DataFrame:
    """Test sizes, accuracy metrics and the full-model accuracy per run, one column per run."""
    rows = {}
    for name, run in runs.items():
        data, finetune = read_json(run / "data.json"), read_json(run / "finetune.json")
        rows[name] = {"split": data["provenance"]["parameters"].get("split"), "n_train": finetune["n_train"],
                      "n_test": finetune["n_test"], "accuracy": finetune["accuracy"],
                      "balanced_accuracy": finetune["balanced_accuracy"], "macro_f1": finetune["macro_f1"],
                      "majority_baseline": finetune["majority_baseline"]}
    return pd.DataFrame(rows)


def table1_side_by_side(runs: dict[str, Path], keep_fractions: list[float]) -> pd.DataFrame:
    """Table 1 (test accuracy per selection rule and kept fraction) of each run, rows labelled by run."""
    frames = []
    for name, run in runs.items():
        results = pd.DataFrame(read_json(run / "ablation.json")["submodels"])
        results["matched"] = results["matched"].astype(bool)
        frames.append(table1(results, keep_fractions).assign(run=name).set_index("run", append=True))
    return pd.concat(frames).sort_index(level=0)


def selections(scores: pd.DataFrame, sparsity: float) -> dict[str, np.ndarray]:
    """Kept sets of the score-based rules at one sparsity (high scores kept)."""
    return {method: select(scores[method].to_numpy(), 1 - sparsity) for method in ("activation", "ig_signed", "ig_absolute")}


def selection_overlap(runs: dict[str, Path], index: NeuronIndex, sparsities: list[float]) -> pd.DataFrame:
    """Per rule and sparsity: Jaccard of the two runs' kept sets, the random expectation, and each run's kept
    fraction per projection type."""
    (first_name, first), (second_name, second) = runs.items()
    first_scores, second_scores = pd.read_parquet(first / "neuron_scores.parquet"), pd.read_parquet(second / "neuron_scores.parquet")
    rows = []
    for sparsity in sparsities:
        a, b = selections(first_scores, sparsity), selections(second_scores, sparsity)
        for method in a:
            row = {"method": method, "sparsity": sparsity, "jaccard": jaccard(a[method], b[method]),
                   "random_jaccard": expected_random_jaccard(index.size, len(a[method]))}
            for name, kept in ((first_name, a[method]), (second_name, b[method])):
                row.update({f"{name}: {projection}": value for projection, value in kept_by_projection(kept, index).items()})
            rows.append(row)
    return pd.DataFrame(rows)
