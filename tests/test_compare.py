"""The k-mer nearest-neighbour yardstick that says how much a split leaks near-copies from train to test."""
import numpy as np
import pandas as pd

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


def test_leakage_summary_reads_both_runs_from_a_headline_table():
    from kn_utils.compare import leakage_summary

    headline = pd.DataFrame({"a": {"split": "random", "accuracy": 0.5, "3-mer 1-NN accuracy": 0.7, "near-copy in train": 0.27},
                             "b": {"split": "accession", "accuracy": 0.4, "3-mer 1-NN accuracy": 0.6, "near-copy in train": 0.02}})
    text = leakage_summary(headline)
    assert "0.500 with the random split and 0.400 with the accession split" in text
    assert "27% against 2%" in text and "3-mer nearest-neighbour yardstick scores 0.700 against 0.600" in text
