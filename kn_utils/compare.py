"""Two runs of the study side by side (e.g. random split against the split that keeps UniProt accessions apart)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .ablation import table1
from .heatmaps import expected_random_jaccard, jaccard, kept_by_projection
from .heatmaps import selections as heatmap_selections
from .neurons import NeuronIndex
from .provenance import read_json

STAGE_FILES = ("data", "finetune", "ablation")
NEAR_IDENTICAL = 0.9  # cosine similarity of 3-mer counts above which a test sequence has a near-copy in train


SIMILARITY_EDGES = (0.5, 0.9, 0.99)  # bucket edges of `accuracy_by_similarity`: distant chains below 0.5, near copies from 0.99


def nearest_training_chain(train: pd.DataFrame, test: pd.DataFrame, max_residues: int, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """For each test sequence, the row of `train` nearest by k-mer profile (cosine) and that similarity, over the first
    `max_residues` residues: the window the model reads."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import normalize

    vectoriser = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False)
    train_profiles = normalize(vectoriser.fit_transform(train["sequence"].str[:max_residues]).astype(np.float32))
    test_profiles = normalize(vectoriser.transform(test["sequence"].str[:max_residues]).astype(np.float32))
    nearest, similarity = np.zeros(len(test), dtype=int), np.zeros(len(test))
    for start in range(0, len(test), 512):  # 512 x n_train similarities at a time
        block = (test_profiles[start : start + 512] @ train_profiles.T).toarray()
        nearest[start : start + 512], similarity[start : start + 512] = block.argmax(1), block.max(1)
    return nearest, similarity


def kmer_neighbour_baseline(train: pd.DataFrame, test: pd.DataFrame, max_residues: int, k: int = 3) -> dict[str, float]:
    """Leakage yardstick: accuracy of the nearest training sequence by k-mer profile (cosine), and the share of test
    sequences whose nearest training sequence is a near-copy; both over the first `max_residues` residues."""
    nearest, similarity = nearest_training_chain(train, test, max_residues, k)
    correct = train["label"].to_numpy()[nearest] == test["label"].to_numpy()
    return {f"{k}-mer 1-NN accuracy": float(correct.mean()), "near-copy in train": float((similarity > NEAR_IDENTICAL).mean())}


def accuracy_by_similarity(train: pd.DataFrame, test: pd.DataFrame, predicted: np.ndarray, max_residues: int,
                           edges: tuple[float, ...] = SIMILARITY_EDGES) -> pd.DataFrame:
    """Test chains bucketed by the 3-mer similarity of their nearest training chain, nearest bucket first: how many, the
    model's accuracy and the nearest chain's (the model-free yardstick); tells homolog transfer from what carries."""
    if len(predicted) != len(test):
        raise ValueError(f"{len(predicted)} predictions for {len(test)} test sequences")
    nearest, similarity = nearest_training_chain(train, test, max_residues)
    labels = test["label"].to_numpy()
    right = pd.DataFrame({"accuracy": predicted == labels, "nearest_chain_accuracy": train["label"].to_numpy()[nearest] == labels})
    names = [f"< {edges[0]:g}", *(f"{low:g}-{high:g}" for low, high in zip(edges, edges[1:])), f">= {edges[-1]:g}"]
    bucket = np.digitize(similarity, edges)  # 0: below the first edge ... len(edges): at or above the last
    table = right.groupby(bucket).mean().reindex(range(len(names))).astype(float)  # an empty bucket: NaN
    table.insert(0, "chains", np.bincount(bucket, minlength=len(names)))
    return table.set_axis(pd.Index(names, name="similarity")).iloc[::-1]


def similarity_records(table: pd.DataFrame) -> list[dict]:
    """An `accuracy_by_similarity` table as result-file rows, nearest bucket first; an empty bucket's accuracies are None."""
    return [{key: (None if isinstance(value, float) and np.isnan(value) else value) for key, value in row.items()}
            for row in table.reset_index().to_dict("records")]


def run_available(run: str | Path) -> bool:
    """True when a run holds the result files and neuron scores a comparison reads."""
    run = Path(run)
    return all((run / f"{stage}.json").exists() for stage in STAGE_FILES) and all(
        (run / name).exists() for name in ("neuron_scores.parquet", "dataset.parquet"))


def split_label(parameters: dict) -> str:
    """How a run's notebook 01 split its data, as tables name it: `random`, `accession` or `identity 30%`."""
    split = parameters.get("split")
    return f"identity {parameters['split_identity']:.0%}" if split == "identity" else split


def trained(run: str | Path) -> bool:
    """True when a run holds what `headline` reads: notebooks 01-02's result files and dataset."""
    return all((Path(run) / name).exists() for name in ("data.json", "finetune.json", "dataset.parquet"))


def split_runs(run: Path, profile: str, others: list[str | None]) -> dict[str, Path]:
    """{profile: run} and every other named profile's run that has finished notebooks 01-02, in the order named:
    the runs whose splits `headline` sets side by side (random, accession, identity 50 %, identity 30 %)."""
    from .runs import runs_root

    runs = {profile: Path(run)}
    for other in others:
        if other and other not in runs and trained(runs_root() / other):
            runs[other] = runs_root() / other
    return runs


def headline(runs: dict[str, Path]) -> pd.DataFrame:
    """Test sizes, the fine-tuned model's accuracy metrics and the k-mer nearest-neighbour yardstick per run, one column per run."""
    rows = {}
    for name, run in runs.items():
        data, finetune = read_json(run / "data.json"), read_json(run / "finetune.json")
        dataset = pd.read_parquet(run / "dataset.parquet")
        yardstick = kmer_neighbour_baseline(dataset[dataset["split"] == "train"], dataset[dataset["split"] == "test"],
                                            data["max_residues"])
        rows[name] = {"split": split_label(data["provenance"]["parameters"]), "n_train": finetune["n_train"],
                      "n_test": finetune["n_test"], "accuracy": finetune["accuracy"],
                      "balanced_accuracy": finetune["balanced_accuracy"], "macro_f1": finetune["macro_f1"],
                      "majority_baseline": finetune["majority_baseline"], **yardstick}
    return pd.DataFrame(rows)


def leakage_summary(headline_table: pd.DataFrame) -> str:
    """One paragraph reading a `headline` table: what leakage offers (the yardstick's gap) and what the model takes."""
    ours, other = headline_table.columns
    cell = headline_table.loc
    yardstick = next(row for row in headline_table.index if row.endswith("1-NN accuracy"))
    return (f"Test accuracy is {cell['accuracy', ours]:.3f} with the {cell['split', ours]} split and "
            f"{cell['accuracy', other]:.3f} with the {cell['split', other]} split. The share of test sequences with a "
            f"near-copy in train is {cell['near-copy in train', ours]:.0%} against {cell['near-copy in train', other]:.0%}, "
            f"and the model-free {yardstick.split()[0]} nearest-neighbour yardstick scores {cell[yardstick, ours]:.3f} against "
            f"{cell[yardstick, other]:.3f}. The gap in the yardstick is what leakage offers; the gap in accuracy is "
            "what the fine-tuned model takes of it.")


def table1_side_by_side(runs: dict[str, Path], keep_fractions: list[float]) -> pd.DataFrame:
    """Table 1 (test accuracy per selection rule and kept fraction) of each run, rows labelled by run."""
    frames = []
    for name, run in runs.items():
        results = pd.DataFrame(read_json(run / "ablation.json")["submodels"])
        results["matched"] = results["matched"].astype(bool)
        frames.append(table1(results, keep_fractions).assign(run=name).set_index("run", append=True))
    return pd.concat(frames).sort_index(level=0)


SCORE_RULES = {method: (method, "high") for method in ("activation", "ig_signed", "ig_absolute")}


def selections(scores: pd.DataFrame, sparsity: float) -> dict[str, np.ndarray]:
    """Kept sets of the score-based rules at one sparsity (high scores kept; heatmaps.selections)."""
    kept = heatmap_selections(scores, len(scores), [sparsity], rules=SCORE_RULES)
    return {name: ids for (name, _), ids in kept.items()}


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


def similarity_figures(table: pd.DataFrame) -> dict:
    """An `accuracy_by_similarity` table as result-file keys: every bucket's row, and the distant bucket's accuracy."""
    rows = similarity_records(table)
    return {"accuracy_by_similarity": rows, "accuracy_distant": rows[-1]["accuracy"]}


def comparable_pair(run: Path, profile: str, other_profile: str | None) -> dict[str, Path] | None:
    """{profile: run, other_profile: its run} when `other_profile` names another run that has finished the stages a
    comparison reads; None otherwise (no profile named, the same run, or not run yet)."""
    from .runs import runs_root

    if not other_profile:
        return None
    other = runs_root() / other_profile
    if other.resolve() == Path(run).resolve() or not run_available(other):
        return None
    return {profile: Path(run), other_profile: other}


def comparison(pair: dict[str, Path], index: NeuronIndex, keep_fractions: list[float],
               sparsities: list[float]) -> dict[str, pd.DataFrame]:
    """Two runs side by side: their headline figures, their Table 1s, and the overlap of their selections."""
    return {"headline": headline(pair), "table1": table1_side_by_side(pair, keep_fractions),
            "selection_overlap": selection_overlap(pair, index, sparsities)}


def comparison_record(tables: dict[str, pd.DataFrame], profile: str) -> dict:
    """A `comparison` as result-file keys."""
    return {"profile": profile, "headline": tables["headline"].to_dict(),
            "selection_overlap": tables["selection_overlap"].to_dict("records"),
            "table1": tables["table1"].reset_index().to_dict("records")}
