"""The k-mer nearest-neighbour yardstick that says how much a split leaks near-copies from train to test."""
import numpy as np
import pandas as pd
import pytest

from kn_utils.compare import kmer_neighbour_baseline

AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def _random_protein(rng: np.random.Generator, length: int = 100) -> str:
    return "".join(rng.choice(AMINO, length))


def test_nearest_neighbour_finds_near_copies_and_their_labels():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"sequence": [_random_protein(rng) for _ in range(4)], "label": [0, 1, 2, 3]})
    mutant = train["sequence"][1][:50] + ("A" if train["sequence"][1][50] != "A" else "C") + train["sequence"][1][51:]
    test = pd.DataFrame({"sequence": [train["sequence"][0], mutant, _random_protein(rng), _random_protein(rng)],
                         "label": [0, 5, 4, 4]})
    result = kmer_neighbour_baseline(train, test, max_residues=128)
    assert result["near-copy in train"] == 0.5  # the copy and the point mutant; not the unrelated ones
    assert result["3-mer 1-NN accuracy"] == 0.25  # only the copy's label matches its neighbour's


def test_only_the_first_residues_count():
    rng = np.random.default_rng(1)
    shared = _random_protein(rng, 40)
    train = pd.DataFrame({"sequence": [shared + _random_protein(rng, 200)], "label": [2]})
    test = pd.DataFrame({"sequence": [shared + _random_protein(rng, 200)], "label": [2]})
    assert kmer_neighbour_baseline(train, test, max_residues=40)["near-copy in train"] == 1.0
    assert kmer_neighbour_baseline(train, test, max_residues=240)["near-copy in train"] == 0.0


def test_accuracy_by_similarity_buckets_test_chains_by_their_nearest_training_chain():
    from kn_utils.compare import accuracy_by_similarity, similarity_records

    rng = np.random.default_rng(2)
    train = pd.DataFrame({"sequence": [_random_protein(rng) for _ in range(3)], "label": [0, 1, 2]})
    half_copy = train["sequence"][1][:50] + _random_protein(rng, 50)  # 3-mer cosine near 0.5-0.6 to chain 1
    test = pd.DataFrame({"sequence": [train["sequence"][0], train["sequence"][2], half_copy, _random_protein(rng),
                                      _random_protein(rng)], "label": [0, 5, 1, 3, 4]})
    predicted = np.array([0, 2, 1, 3, 0])  # right, wrong, right, right, wrong
    table = accuracy_by_similarity(train, test, predicted, max_residues=128)
    assert list(table.index) == [">= 0.99", "0.9-0.99", "0.5-0.9", "< 0.5"]
    assert table["chains"].tolist() == [2, 0, 1, 2] and table["chains"].sum() == len(test)
    assert table.loc[">= 0.99", "accuracy"] == 0.5 and table.loc[">= 0.99", "nearest_chain_accuracy"] == 0.5
    assert table.loc["0.5-0.9", "accuracy"] == 1.0 and table.loc["0.5-0.9", "nearest_chain_accuracy"] == 1.0
    assert table.loc["< 0.5", "accuracy"] == 0.5 and np.isnan(table.loc["0.9-0.99", "accuracy"])
    weighted = (table["accuracy"].fillna(0) * table["chains"]).sum() / table["chains"].sum()
    assert weighted == (predicted == test["label"].to_numpy()).mean()  # the buckets partition the test set
    rows = similarity_records(table)
    assert rows[1] == {"similarity": "0.9-0.99", "chains": 0, "accuracy": None, "nearest_chain_accuracy": None}
    assert rows[0]["accuracy"] == 0.5 and rows[-1]["similarity"] == "< 0.5"
    with pytest.raises(ValueError, match="4 predictions for 5 test sequences"):
        accuracy_by_similarity(train, test, predicted[:4], max_residues=128)


def test_leakage_summary_reads_both_runs_from_a_headline_table():
    from kn_utils.compare import leakage_summary

    headline = pd.DataFrame({"a": {"split": "random", "accuracy": 0.5, "3-mer 1-NN accuracy": 0.7, "near-copy in train": 0.27},
                             "b": {"split": "accession", "accuracy": 0.4, "3-mer 1-NN accuracy": 0.6, "near-copy in train": 0.02}})
    text = leakage_summary(headline)
    assert "0.500 with the random split and 0.400 with the accession split" in text
    assert "27% against 2%" in text and "3-mer nearest-neighbour yardstick scores 0.700 against 0.600" in text


def test_a_comparison_needs_another_run_that_has_finished(tmp_path, monkeypatch):
    from kn_utils.compare import STAGE_FILES, comparable_pair

    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path))
    ours, other = tmp_path / "a", tmp_path / "b"
    for folder in (ours, other):
        folder.mkdir()
    assert comparable_pair(ours, "a", None) is None and comparable_pair(ours, "a", "a") is None
    assert comparable_pair(ours, "a", "b") is None  # b has not run
    for name in [f"{stage}.json" for stage in STAGE_FILES] + ["neuron_scores.parquet", "dataset.parquet"]:
        (other / name).write_text("{}")
    assert comparable_pair(ours, "a", "b") == {"a": ours, "b": other}
