"""The planted-truth task: seeded, the truth matches the sequences, decoys never complete a motif, composition and
label noise as asked, and the background follows the residue statistics it was fitted to."""
import numpy as np
import pandas as pd
import pytest

from kn_utils.data import COLUMNS, class_names
from kn_utils.synthetic import Motif, ResidueModel, default_spec, generate_task, motif_occurrences

# a skewed background (L- and A-rich, with a strong L -> A transition), so that fitting it is a real check
TRAINING = ["MLALALKAEGLLAASLAVLAGRLA" * 3, "LALAALLKQAVDLAGLAEALLA" * 4, "GSLAMALLEKAIRLALSAAVLAQ" * 2]


@pytest.fixture(scope="module")
def background():
    return ResidueModel.fit(TRAINING, pseudocount=0.01)  # a tiny training text: a real one has ~10^6 residues


@pytest.fixture(scope="module")
def task(background):
    spec = default_spec(per_class=60, label_noise=0.1)
    table, truth = generate_task(spec, background, seed=3)
    return spec, table, truth


def test_the_same_seed_gives_the_same_task_and_another_seed_another(background, task):
    spec, table, truth = task
    again, again_truth = generate_task(spec, background, seed=3)
    pd.testing.assert_frame_equal(table, again)
    pd.testing.assert_frame_equal(truth, again_truth)
    assert not generate_task(spec, background, seed=4)[0]["sequence"].equals(table["sequence"])


def test_the_table_has_notebook_01s_columns_and_six_classes(task):
    spec, table, _ = task
    assert list(table.columns) == COLUMNS and class_names(table) == list(spec.classes)
    assert table["id"].is_unique and (table["class_name"].cat.codes == table["label"]).all()
    assert len(spec.classes) == 6 and sorted(table["label"].unique()) == list(range(6))
    assert table["length"].between(*spec.length).all()


def test_motifs_occur_exactly_where_the_truth_says_and_nowhere_else(task):
    spec, table, truth = task
    planted = truth[truth["kind"] == "motif"].set_index("id")
    occurrences = motif_occurrences(table.set_index("id")["sequence"], spec.motifs)
    found = {(row.index, row.motif, row.start) for row in occurrences.itertuples()}
    assert found == {(i, row.motif, row.start) for i, row in planted.iterrows()}  # decoys and backgrounds add none
    assert len(planted) == 5 * 60  # one per motif-class sequence, none in the composition class
    sequences = table.set_index("id")["sequence"]
    for identifier, row in planted.iterrows():
        assert sequences[identifier][row.start:row.end] == row.instance
        assert spec.motifs[[m.name for m in spec.motifs].index(row.motif)].regex.fullmatch(row.instance)


def test_decoys_are_near_misses_of_another_class_motif(task):
    spec, table, truth = task
    decoys = truth[truth["kind"] == "decoy"]
    assert 0.1 < len(decoys) / len(table) < 0.3  # decoy_share 0.2
    motifs = {m.name: m for m in spec.motifs}
    for row in decoys.itertuples():
        motif = motifs[row.motif]
        misses = [not (residue in allowed) for residue, allowed in zip(row.instance, motif.positions)]
        assert sum(misses) == 1 and not motif.regex.fullmatch(row.instance)
    true_class = truth[truth["kind"] == "motif"].set_index("id")["motif"]
    assert all(true_class.get(row.id) != row.motif for row in decoys.itertuples())


def test_the_composition_class_is_enriched_and_label_noise_is_recorded(task):
    spec, table, truth = task
    noise = truth[truth["kind"] == "label_noise"]
    composition_ids = [i for i in table["id"] if i.startswith("syn_6_")]
    sequences = table.set_index("id")["sequence"]
    share = lambda ids: np.mean([sum(s.count(r) for r in "KE") / len(s) for s in sequences[ids]])
    assert share(composition_ids) > 2 * share([i for i in table["id"] if not i.startswith("syn_6_")])
    assert 0.05 < len(noise) / len(table) < 0.15  # label_noise 0.1
    labels = table.set_index("id")["label"]
    for row in noise.itertuples():  # the recorded new label is the table's, and differs from the planted class
        assert spec.classes[labels[row.id]] == row.instance != row.motif
        assert row.motif == spec.classes[int(row.id.split("_")[1]) - 1]
    clean = ~table["id"].isin(noise["id"])
    assert (table.loc[clean, "label"] == table.loc[clean, "id"].str.split("_").str[1].astype(int) - 1).all()


def test_the_background_follows_the_fitted_residue_statistics(background):
    residues = "".join(TRAINING)
    observed = np.array([residues.count(r) for r in "ACDEFGHIKLMNPQRSTVWY"]) / len(residues)
    assert np.abs(background.frequencies() - observed).max() < 0.03
    drawn = background.sample(20000, np.random.default_rng(0))
    sampled = np.array([drawn.count(r) for r in "ACDEFGHIKLMNPQRSTVWY"]) / len(drawn)
    assert np.abs(sampled - background.frequencies()).max() < 0.01
    assert drawn.count("LA") / len(drawn) > 1.5 * observed[9] * observed[0]  # the L -> A transition, not only frequencies


def test_motif_syntax_round_trips_and_bad_patterns_are_named():
    motif = Motif.parse("m", "C-x-[DE]-H-W")
    assert motif.pattern == "C-x-[DE]-H-W" and len(motif) == 5
    assert motif.regex.fullmatch("CADHW") and not motif.regex.fullmatch("CAAHW")
    for bad in ("C-xx-D", "C-DE-H", "C-[]-H", "C-B-H"):
        with pytest.raises(ValueError, match="is not a residue"):
            Motif.parse("bad", bad)
    with pytest.raises(ValueError, match="no standard residues"):
        ResidueModel.fit(["XXXX", ""])
