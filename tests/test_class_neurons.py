"""Class-specific neurons (sets, overlap, scaling effects) and motif analysis on a tiny model and hand-made data."""
import numpy as np
import pandas as pd
import pytest
import torch

from kn_utils.ablation import submodel
from kn_utils.alphabet import encode, pad_batch
from kn_utils.class_neurons import (balanced_subset, combination_counts, matched_random, membership, pairwise_overlap,
                                    per_class_effect, scaled_logits, scaling_effects, shared_and_specific,
                                    specificity_table, top_per_class)
from kn_utils.scoring import class_means
from kn_utils.motifs import (MOTIFS, activation_peaks, enrichment, motif_coverage, near, peak_windows,
                             top_sequences)
from kn_utils.neurons import NeuronIndex, hook_count, recording
from kn_utils.inference import predict_logits

from conftest import random_protein


def test_top_sets_overlap_and_specificity():
    per_class = np.array([[5, 4, 3, 0, 0, 0], [0, 5, 4, 3, 0, 0], [0, 0, 1, 1, 9, 9.0]])
    sets = top_per_class(per_class, 3)
    assert [s.tolist() for s in sets] == [[0, 1, 2], [1, 2, 3], [2, 4, 5]]  # class 2: tie 2/3 broken by id
    shared, specific = shared_and_specific(sets)
    assert shared.tolist() == [2] and [s.tolist() for s in specific] == [[0], [3], [4, 5]]
    table = membership(sets, ["1", "2", "3"])
    assert table.index.tolist() == [0, 1, 2, 3, 4, 5]
    counts = combination_counts(table)
    assert counts.to_dict() == {"3": 2, "1": 1, "1+2": 1, "1+2+3": 1, "2": 1} and counts.sum() == 6
    overlap = pairwise_overlap(sets, ["1", "2", "3"])
    assert overlap.loc["1", "2"] == 2 and overlap.loc["1", "3"] == 1 and overlap.loc["3", "3"] == 3


def test_matched_random_sets_keep_block_counts(tiny_model):
    index = NeuronIndex.of(tiny_model)  # 2 layers x 3 projections x 16 units
    ids = np.array([0, 1, 2, 17, 40, 41])
    drawn = matched_random(ids, index, seed=3)
    assert np.array_equal(np.bincount(drawn // 16, minlength=6), np.bincount(ids // 16, minlength=6))
    assert not set(drawn) & set(ids)
    assert np.array_equal(drawn, matched_random(ids, index, seed=3)) and not np.array_equal(drawn, matched_random(ids, index, seed=4))


def test_balanced_subset_caps_each_class():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    chosen = balanced_subset(labels, 4)
    assert np.bincount(labels[chosen]).tolist() == [4, 1, 3] and np.all(np.diff(chosen) > 0)  # at most half a class
    assert np.bincount(labels[balanced_subset(labels, 4, max_share=1.0)]).tolist() == [4, 3, 4]
    means = class_means(np.arange(20, dtype=float)[:, None] * [1, -1], labels, 4)
    assert means[0].tolist() == [4.5, -4.5] and means[2].tolist() == [16.0, -16.0] and np.isnan(means[3]).all()


def test_scaling_by_zero_is_ablation_and_by_one_is_identity(tiny_model):
    rng = np.random.default_rng(0)
    sequences = [random_protein(rng, n) for n in (12, 20, 31, 9)]
    ids = np.array([3, 5, 20, 33])
    plain = predict_logits(tiny_model, sequences, 64)
    assert np.allclose(scaled_logits(tiny_model, sequences, ids, 1.0, 64, precision="fp32"), plain, atol=1e-6)
    with submodel(tiny_model, np.setdiff1d(np.arange(NeuronIndex.of(tiny_model).size), ids)):
        ablated = predict_logits(tiny_model, sequences, 64)
    assert np.allclose(scaled_logits(tiny_model, sequences, ids, 0.0, 64, precision="fp32"), ablated, atol=1e-6)
    assert not np.allclose(ablated, plain) and hook_count(tiny_model) == 0


def test_effects_are_measured_per_true_class(tiny_model):
    base = np.array([[2.0, 0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0, 0], [0, 0, 2.0, 0, 0, 0]])
    scaled = base.copy()
    scaled[1] = [3.0, 0, 0, 0, 0, 0]  # class-1 example now predicted as class 0
    effect = per_class_effect(scaled, base, np.array([0, 1, 2]), 6)
    assert effect["accuracy"][:3].tolist() == [0, -1, 0] and effect["probability"][1] < 0 and effect["probability"][0] == 0
    assert np.isnan(effect["accuracy"][3])

    rng = np.random.default_rng(1)
    sequences = [random_protein(rng, 15) for _ in range(12)]
    labels = np.arange(12) % 6
    sets = top_per_class(rng.normal(size=(6, NeuronIndex.of(tiny_model).size)), 4)
    identity = scaling_effects(tiny_model, sequences, labels, sets, 1.0, 64, random_seeds=2, precision="fp32")
    assert identity["probability"].shape == (6, 6) and identity["probability_random"].shape == (2, 6, 6)
    assert np.allclose(identity["probability"], 0, atol=1e-6) and np.allclose(identity["accuracy_random"], 0)
    suppressed = scaling_effects(tiny_model, sequences, labels, sets, 0.0, 64, random_seeds=2, precision="fp32")
    assert not np.allclose(suppressed["probability"], 0)
    table = specificity_table(suppressed, [str(c) for c in range(1, 7)])
    assert np.allclose(table["own_class"], np.diag(suppressed["probability"]))
    assert np.allclose(table["own_minus_others"], table["own_class"] - table["other_classes"])
    assert table["own_rank"].between(1, 6).all()
    crafted = {"probability": np.array([[-0.3, -0.1], [-0.4, -0.1]]), "probability_random": np.zeros((2, 2, 2))}
    assert specificity_table(crafted, ["a", "b"])["own_rank"].tolist() == [1, 2]  # b's set hurts a more than b


def test_motif_coverage_and_windows():
    sequence = "AAGKLMNGKTAAGAGAAGCC"
    covered = motif_coverage(sequence, "G.{4}GK[ST]", len(sequence))
    assert np.flatnonzero(covered).tolist() == list(range(2, 10))  # G at 2 .. T at 9
    assert np.flatnonzero(motif_coverage(sequence, "G.G..G", len(sequence))).tolist() == list(range(12, 18))
    assert not motif_coverage(sequence, "G.G..G", 15).any()  # the model sees only the first residues
    assert np.flatnonzero(near(np.array([0, 0, 0, 1, 0, 0, 0], bool), 1)).tolist() == [2, 3, 4]
    assert peak_windows(["ABCDEFG", "ABCDEFG"], np.array([0, 3]), 2) == ["--ABC", "BCDEF"]
    assert top_sequences(np.array([0.1, 0.9, 0.5, 0.9]), 3).tolist() == [1, 3, 2]


def _planted_ploop(rng: np.random.Generator, count: int) -> tuple[list[str], list[int]]:
    """`count` random 100-residue chains without G but for one P-loop (GxxxxGK[ST]), and a position inside each motif."""
    sequences, on_motif = [], []
    for _ in range(count):
        start = int(rng.integers(5, 60))
        sequence = random_protein(rng, 100).replace("G", "A")
        sequences.append(sequence[:start] + "GAGKAGKS" + sequence[start + 8:])
        on_motif.append(start + 3)
    return sequences, on_motif


def test_enrichment_detects_peaks_on_motifs_and_not_random_peaks():
    rng = np.random.default_rng(0)
    sequences, on_motif = _planted_ploop(rng, 40)
    motifs = {"P-loop": ("G.{4}GK[ST]", "test")}
    hit = enrichment(sequences, np.array(on_motif), 100, 0, permutations=500, motifs=motifs).iloc[0]
    assert hit["observed"] == 1.0 and hit["p_value"] < 0.01 and hit["enrichment"] > 5
    random_peaks = rng.integers(0, 100, size=40)
    miss = enrichment(sequences, random_peaks, 100, 0, permutations=500, motifs=motifs).iloc[0]
    assert miss["p_value"] > 0.05


def test_activation_peaks_match_a_direct_reading(tiny_model):
    rng = np.random.default_rng(2)
    sequences = [random_protein(rng, n) for n in (7, 15, 22)]
    ids = np.array([0, 17, 95])
    values, positions = activation_peaks(tiny_model, sequences, ids, max_residues=64)
    for row, sequence in enumerate(sequences):
        input_ids, mask = pad_batch([encode(sequence)])
        with torch.no_grad(), recording(tiny_model) as outputs:
            tiny_model(input_ids=input_ids, attention_mask=mask)
        activations = torch.cat(outputs, -1)[0, 1:-1, ids].abs()  # residues only
        assert np.allclose(values[row], activations.max(0).values.numpy(), atol=1e-5)
        assert positions[row].tolist() == activations.argmax(0).tolist()
    assert (positions < np.array([[7], [15], [22]])).all()


def test_probe_neurons_finds_the_neuron_whose_peaks_sit_on_a_motif():
    """Two neurons over the same sequences: one peaks on a planted P-loop, one at random; only the first is selective."""
    from kn_utils.motifs import probe_neurons

    rng = np.random.default_rng(1)
    sequences, on_motif = _planted_ploop(rng, 30)
    positions = np.stack([np.array(on_motif), rng.integers(0, 100, size=30)], axis=1)
    values = rng.random((30, 2))
    tests, windows = probe_neurons(sequences, np.array([7, 42]), values, positions, 100, windows_per_neuron=20,
                                   half_width=3, permutations=400, seed=0)
    ploop = tests[tests["motif"].str.startswith("P-loop")].set_index("neuron")
    assert ploop.loc[7, "q_value"] < 0.05 and ploop.loc[42, "q_value"] > 0.05
    assert (tests["q_value"] >= tests["p_value"]).all() and len(tests) == 2 * len(MOTIFS)
    assert set(windows) == {7, 42} and all(len(window) == 7 for window in windows[7]) and len(windows[7]) == 20
    top = np.argsort(-values[:, 0], kind="stable")[:20]
    assert windows[7] == peak_windows([sequences[i] for i in top], positions[top, 0], 3)  # its top-peaking sequences


def test_class_set_summaries():
    from kn_utils.class_neurons import effect_record, mean_pairwise, probe_table, specific_table, suppression_support

    index = NeuronIndex(2, 4)
    per_class = np.array([[5.0, 1, 4, 0] * 6, [0.0, 3, 3, 9] * 6])
    probe = probe_table(per_class, ["a", "b"], 2)
    assert probe.to_dict("records") == [{"class_name": "a", "rank": 0, "neuron": 0}, {"class_name": "a", "rank": 1, "neuron": 4},
                                        {"class_name": "b", "rank": 0, "neuron": 3}, {"class_name": "b", "rank": 1, "neuron": 7}]
    pairwise = pd.DataFrame([[3, 1, 2], [1, 3, 0], [2, 0, 3]])
    assert mean_pairwise(pairwise) == pytest.approx(1.0)
    table = specific_table([np.array([1, 22]), np.array([], dtype=int)], ["a", "b"], index, shown=1)
    assert table["specific neurons"].tolist() == [2, 0] and table.iloc[0, 1] == "L0.query.1" and table.index[0] == "a"
    specificity = pd.DataFrame({"own_minus_others": [-0.2, -0.2, 0.1], "z_vs_random": [-3.0, -1.0, -5.0], "own_rank": [1, 2, 1]})
    assert suppression_support(specificity) == {"supported": 1, "strict": 2}
    effects = {"probability": np.ones((2, 2)), "accuracy": np.zeros((2, 2)),
               "probability_random": np.stack([np.zeros((2, 2)), 2 * np.ones((2, 2))]), "accuracy_random": np.zeros((2, 2, 2))}
    record = effect_record(effects)
    assert record["probability"]["random_mean"] == [[1.0, 1.0], [1.0, 1.0]]
    assert record["probability"]["random_sd"][0][0] == pytest.approx(np.sqrt(2)) and record["accuracy"]["effect"] == [[0, 0], [0, 0]]
