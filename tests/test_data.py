"""Building the labelled dataset: parsing, drops counted by reason, bad files named, splits."""
import numpy as np
import pandas as pd
import pytest

from kn_utils import data, sources
from kn_utils.sources import DataFileError, check_gzip


def test_build_dataset_keeps_clean_single_class_chains(upstream_files):
    frame, dropped = data.build_dataset(*upstream_files.values(), min_length=30)
    assert sorted(frame["id"]) == ["101m_A", "102l_A", "105m_A", "110m_A"]
    assert dict(zip(frame["id"], frame["class_name"])) == {"101m_A": "1", "102l_A": "3", "105m_A": "2", "110m_A": "4"}
    assert (frame["label"] == frame["class_name"].astype(int) - 1).all() and data.class_names(frame) == list("123456")
    assert dropped == {"not_protein": 1, "several_ec_classes": 1, "too_short": 1, "invalid_residue": 1,
                       "ec_class_outside_1_6": 1, "duplicate_sequence": 1}
    assert frame.loc[frame["id"] == "102l_A", "n_chains"].item() == 2


def test_header_without_chain_id_is_a_counted_drop(tmp_path, upstream_files):
    bad = tmp_path / "bad.txt"
    bad.write_text(">101m mol:protein length:4\nMKTA\n>102l_A mol:protein length:35\nMNIFEMLRIDEGLRLKIYKDTEGYYTIGIGHLLTK\n")
    frame, dropped = data.build_dataset(bad, upstream_files["pdb_chain_enzyme.tsv.gz"])
    assert dropped["malformed_header"] == 1 and list(frame["id"]) == ["102l_A"]


def test_length_in_header_disagreeing_with_sequence_is_dropped(tmp_path, upstream_files):
    bad = tmp_path / "cut.txt"
    bad.write_text(">102l_A mol:protein length:35\nMNIFEMLRIDEGLRLKIYKDTEG\n")
    _, dropped = data.build_dataset(bad, upstream_files["pdb_chain_enzyme.tsv.gz"])
    assert dropped["length_mismatch"] == 1


def test_truncated_gzip_is_named(tmp_path, upstream_files):
    whole = upstream_files["pdb_seqres.txt.gz"].read_bytes()
    cut = tmp_path / "pdb_seqres.txt.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataFileError, match=r"pdb_seqres.txt.gz: truncated or corrupt gzip"):
        data.build_dataset(cut, upstream_files["pdb_chain_enzyme.tsv.gz"])
    with pytest.raises(DataFileError, match="truncated or corrupt gzip"):
        check_gzip(cut)


def test_sifts_without_expected_columns_is_refused(tmp_path, upstream_files):
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("PDB\tCHAIN\tEC\n101m\tA\t1.1.1.1\n")
    with pytest.raises(DataFileError, match=r"wrong.tsv: missing column\(s\) \['ACCESSION', 'EC_NUMBER'\]"):
        data.build_dataset(upstream_files["pdb_seqres.txt.gz"], wrong)


def test_malformed_sifts_rows_are_counted_drops_that_never_give_a_chain_a_second_class(tmp_path, upstream_files):
    from tests.conftest import SEQRES, SIFTS, write_gz

    broken = SIFTS + "101m\tA\tP02185\n"  # a row cut short
    broken += "102l\tA\tP00720\tnot-an-ec\n"  # an EC number that is none
    broken += "105m A P12345 2.7.11.1\n"  # spaces for tabs
    broken += "103l\tA\tP00720\t3.2.1.17\textra\n"  # a field too many
    sifts = write_gz(tmp_path / "broken.tsv.gz", broken)
    frame, dropped = data.build_dataset(write_gz(tmp_path / "seqres.txt.gz", SEQRES), sifts, min_length=30)
    clean, clean_dropped = data.build_dataset(*upstream_files.values(), min_length=30)
    assert dropped["malformed_sifts_row"] == 4
    assert frame.equals(clean)  # 101m_A and 102l_A keep their one class
    assert {k: v for k, v in dropped.items() if k != "malformed_sifts_row"} == dict(clean_dropped)
    (tmp_path / "garbage.tsv").write_text("PDB\tCHAIN\tACCESSION\tEC_NUMBER\nnonsense\nmore nonsense\n")
    with pytest.raises(DataFileError, match=r"garbage.tsv: no well-formed row \(2 malformed\)"):
        data.read_sifts_ec(tmp_path / "garbage.tsv")


def test_a_folder_or_a_binary_file_is_named_not_parsed(tmp_path):
    with pytest.raises(DataFileError, match=rf"{tmp_path}: is a folder, not a file"):
        list(data.read_fasta(tmp_path))
    labels = tmp_path / "labels.csv"
    labels.write_bytes(bytes(range(256)) * 4)
    fasta = tmp_path / "mine.fasta"
    fasta.write_text(">enzA\nMKTAYIAKQR\n")
    with pytest.raises(DataFileError, match=r"labels.csv: not a UTF-8 text file"):
        data.load_labelled_fasta(fasta, labels)
    labels.write_bytes(b"id,ec_class\nenzA,1\x00\n")
    with pytest.raises(DataFileError, match=r"labels.csv: line 2: NUL byte"):
        data.load_labelled_fasta(fasta, labels)
    labels.write_text('id,ec_class\n"enzA,1\n')
    with pytest.raises(DataFileError, match=r"labels.csv: not a CSV table"):
        data.load_labelled_fasta(fasta, labels)
    with pytest.raises(DataFileError, match=r"no such file"):
        data.load_labelled_fasta(tmp_path / "absent.fasta", tmp_path / "absent.csv")


def test_duplicates_that_disagree_on_class_are_dropped(tmp_path):
    seqres = tmp_path / "s.txt"
    seqres.write_text(">1aaa_A mol:protein length:31\n" + "M" * 31 + "\n>2bbb_A mol:protein length:31\n" + "M" * 31 + "\n")
    sifts = tmp_path / "e.tsv"
    sifts.write_text("PDB\tCHAIN\tACCESSION\tEC_NUMBER\n1aaa\tA\tP1\t1.1.1.1\n2bbb\tA\tP2\t2.1.1.1\n")
    frame, dropped = data.build_dataset(seqres, sifts)
    assert frame.empty and dropped == {"duplicate_sequence": 1, "duplicates_disagree_on_class": 1}



ENZYME = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVK"  # 60 residues, no tag


@pytest.mark.parametrize("construct, expected", [
    ("MGSSHHHHHHSSGLVPRGSH" + ENZYME, ENZYME),                            # pET-28 His tag, thrombin site
    ("MHHHHHHSSGVDLGTENLYFQS" + ENZYME, ENZYME),                         # His tag, TEV site
    ("MASMTGGQQMGRGS" + ENZYME, ENZYME),                                 # T7 tag
    ("MGSSHHHHHHSSGLVPRGSHMASMTGGQQMGRGS" + ENZYME, ENZYME),             # His tag, thrombin, then T7
    ("MHHHHHH" + ENZYME, ENZYME),                                        # bare His tag
    (ENZYME + "LEHHHHHH", ENZYME),                                       # C-terminal His tag
    (ENZYME[:15] + "LEHHHHHH", ENZYME[:15]),                             # short: a C-terminal tag, not an N-terminal one
    (ENZYME, ENZYME),                                                    # nothing to cut
    (ENZYME[:30] + "HHHHHH" + ENZYME[30:], ENZYME[:30] + "HHHHHH" + ENZYME[30:]),  # a His run past residue 26 stays
])
def test_expression_tags_are_cut_and_nothing_else(construct, expected):
    assert data.trim_expression_tags(construct) == expected


def test_tagged_and_untagged_chains_of_one_enzyme_merge_into_one_record(tmp_path):
    seqres = tmp_path / "s.txt"
    tagged = "MGSSHHHHHHSSGLVPRGSH" + ENZYME
    seqres.write_text(f">1aaa_A mol:protein length:{len(tagged)}\n{tagged}\n>2bbb_A mol:protein length:60\n{ENZYME}\n")
    sifts = tmp_path / "e.tsv"
    sifts.write_text("PDB\tCHAIN\tACCESSION\tEC_NUMBER\n1aaa\tA\tP1\t3.1.1.1\n2bbb\tA\tP1\t3.1.1.1\n")
    frame, dropped = data.build_dataset(seqres, sifts)
    assert list(frame["sequence"]) == [ENZYME] and frame["tagged_chains"].item() == 1 and frame["n_chains"].item() == 2
    assert dropped == {"duplicate_sequence": 1}
    assert data.dataset_summary(frame.assign(split="train"), dropped, 128)["records_with_tag_trimmed"] == 1
    untrimmed, _ = data.build_dataset(seqres, sifts, trim_tags=False)
    assert sorted(untrimmed["sequence"]) == sorted([ENZYME, tagged]) and (untrimmed["tagged_chains"] == 0).all()


def _synthetic(n_per_class=50, accessions_per_class=10):
    rows = [{"id": f"{c}_{i}", "label": c, "class_name": str(c + 1), "sequence": "M" * 40, "length": 40,
             "accession": f"A{c}_{i % accessions_per_class}"} for c in range(6) for i in range(n_per_class)]
    return pd.DataFrame(rows)


def test_random_split_is_stratified_and_seeded():
    frame = data.split_dataset(_synthetic(), 0.2, seed=3)
    assert (frame[frame["split"] == "test"].groupby("label").size() == 10).all()
    again = data.split_dataset(_synthetic(), 0.2, seed=3)
    assert (frame["split"] == again["split"]).all()
    other = data.split_dataset(_synthetic(), 0.2, seed=4)
    assert not (frame["split"] == other["split"]).all()


def test_accession_split_keeps_each_accession_on_one_side():
    frame = data.split_dataset(_synthetic(), 0.2, seed=0, strategy="accession")
    assert frame.groupby("accession")["split"].nunique().max() == 1
    assert data.accession_overlap(frame) == 0.0
    assert 0.1 < (frame["split"] == "test").mean() < 0.3
    assert data.accession_overlap(data.split_dataset(_synthetic(), 0.2, seed=0)) > 0


@pytest.mark.parametrize("strategy", ["random", "accession"])
def test_validation_split_holds_out_part_of_train_and_never_a_test_record(strategy):
    split = data.split_dataset(_synthetic(), 0.2, seed=0, strategy=strategy)
    train = split[split["split"] == "train"]
    fit, held_out = data.validation_split(train, 0.25, seed=0, strategy=strategy)
    assert len(fit) + len(held_out) == len(train) and not set(fit["id"]) & set(held_out["id"])
    assert set(held_out["id"]) <= set(train["id"])  # drawn from train only: the test records stay untouched
    assert sorted(held_out["label"].unique()) == list(range(6))  # every class in the held-out share
    assert 0.15 < len(held_out) / len(train) < 0.35
    if strategy == "accession":
        assert not set(fit["accession"]) & set(held_out["accession"])
    again, _ = data.validation_split(train, 0.25, seed=0, strategy=strategy)
    assert again["id"].tolist() == fit["id"].tolist()
    everything, nothing = data.validation_split(train, 0.0)
    assert everything is train and nothing.empty
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        data.validation_split(train, 0.7)


def test_the_accession_split_holds_out_the_share_asked_or_refuses():
    frame = _synthetic(n_per_class=100, accessions_per_class=50)
    assert abs((data.split_dataset(frame, 0.15, seed=0, strategy="accession")["split"] == "test").mean() - 1 / 7) < 0.03
    with pytest.raises(ValueError, match=r"0.4 is not within 0.01 of any 1/n \(nearest: 1/2 = 0.500\)"):
        data.split_dataset(frame, 0.4, seed=0, strategy="accession")


def test_cap_per_class():
    capped = data.cap_per_class(_synthetic(), 7, seed=0)
    assert capped.groupby("label").size().tolist() == [7] * 6


def test_labelled_fasta_round_trip_and_errors(tmp_path):
    fasta = tmp_path / "mine.fasta"
    fasta.write_text(">enzA some name\nMKTAYIAKQR\nQISFVKSHFS\n>enzB\nMNIFEMLRID\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,ec_class\nenzA,3.1.1.4\nenzB,2\n")
    frame = data.load_labelled_fasta(fasta, labels)
    assert frame["class_name"].tolist() == ["3", "2"] and frame["length"].tolist() == [20, 10]
    labels.write_text("id,ec_class\nenzA,9\nenzB,2\n")
    with pytest.raises(DataFileError, match=r"labels.csv: row 2, record 'enzA': unknown label '9'"):
        data.load_labelled_fasta(fasta, labels)
    labels.write_text("id,ec_class\nenzA,1\nenzB,2\nenzA,3\n")
    with pytest.raises(DataFileError, match=r"labels.csv: id 'enzA' \(row 4\) is labelled more than once"):
        data.load_labelled_fasta(fasta, labels)
    labels.write_text("id,ec_class\nenzA,1\n")
    with pytest.raises(DataFileError, match=r"no label for record 'enzB' \(line 4 of .*mine.fasta\)"):
        data.load_labelled_fasta(fasta, labels)
    fasta.write_text(">enzA\nMKTAYIAKQR\n>enzB\n\n")
    labels.write_text("id,ec_class\nenzA,1\nenzB,2\n")
    with pytest.raises(DataFileError, match=r"mine.fasta: record 'enzB' \(line 3\): empty sequence"):
        data.load_labelled_fasta(fasta, labels)


def test_own_data_is_built_like_the_pdb_dataset(tmp_path):
    residues = "ACDEFGHIKLMNPQRSTVWY"
    enzyme, other = residues * 2, residues[::-1] * 2  # 40 residues each
    fasta = tmp_path / "mine.fasta"
    fasta.write_text(f">a\nMGSSHHHHHHSSGLVPRGSH{enzyme}\n>b\n{enzyme}\n>c\n{other}\n>d\n{other}\n>e\nMKTAYIAKQR\n"
                     f">f\n{'X' * 10}{enzyme[:30]}\n")
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\tec_class\na\t3.1.1.4\nb\t3\nc\t1\nd\t2\ne\t1\nf\t2\n")
    frame, dropped = data.build_labelled_dataset(fasta, labels, min_length=30)
    # a's His tag is cut, which makes it b; c and d are one sequence with two classes; e is short; f is 25% unknown
    assert frame[["id", "class_name", "n_chains", "tagged_chains"]].values.tolist() == [["a", "3", 2, 1]]
    assert dropped == {"duplicate_sequence": 2, "duplicates_disagree_on_class": 1, "too_short": 1, "too_many_unknown_residues": 1}
    assert list(frame.columns) == data.COLUMNS
    kept, _ = data.build_labelled_dataset(fasta, labels, min_length=30, trim_tags=False)
    assert kept["id"].tolist() == ["a", "b"]  # untrimmed, a is its own sequence
    paths = sources.resolve_inputs(fasta=fasta, labels=labels)
    assert data.build_from_inputs(paths, min_length=30)[0].equals(frame)
    fasta.write_text(">e\nMKTAYIAKQR\n>g\nMKTAY\n")
    labels.write_text("id\tec_class\ne\t1\ng\t1\n")
    with pytest.raises(DataFileError, match=r"mine.fasta: no record left after dropping \{'too_short': 2\}"):
        data.build_labelled_dataset(fasta, labels, min_length=30)


def test_own_data_inputs_need_both_files_and_name_a_missing_one(tmp_path):
    with pytest.raises(DataFileError, match="needs both a FASTA file and a labels file"):
        sources.resolve_inputs(fasta=tmp_path / "mine.fasta")
    (tmp_path / "mine.fasta").write_text(">a\nMKV\n")
    with pytest.raises(DataFileError, match=r"labels.csv: no such file"):
        sources.resolve_inputs(fasta=tmp_path / "mine.fasta", labels=tmp_path / "labels.csv")


def test_summary_counts_add_up(upstream_files):
    frame, dropped = data.build_dataset(*upstream_files.values())
    frame["split"] = np.where(np.arange(len(frame)) % 2, "test", "train")
    summary = data.dataset_summary(frame, dropped, max_residues=35)
    assert sum(sum(c.values()) for c in summary["counts"].values()) == summary["n_sequences"] == len(frame)
    assert summary["fraction_longer_than_max_residues"] == pytest.approx((frame["length"] > 35).mean())


def test_summary_tables_of_notebook_01():
    frame = pd.DataFrame({"class_name": ["1", "1", "2", "6"], "label": [0, 0, 1, 5], "split": ["train", "test", "train", "train"],
                          "accession": ["P1", "P1", "P2", "P3"], "length": [40, 50, 60, 70]})
    summary = data.dataset_summary(frame, {}, 55)
    assert summary["test_accessions_seen_in_train"] == 1.0 and summary["fraction_longer_than_max_residues"] == 0.5
    counts = data.counts_table(summary["counts"])
    assert counts.loc["1", "train"] == 1 and counts.loc["6", "name"] == "ligases" and counts.loc["3", "test"] == 0
    paper = data.paper_comparison(frame)
    assert paper.loc["ours"].tolist() == [2, 1, 0, 0, 0, 1, 4] and paper.loc["paper (approx.)", "1"] == 11_731 // 6


def test_any_labels_become_the_tasks_classes_in_label_order(tmp_path):
    residues = "ACDEFGHIKLMNPQRSTVWY"
    fasta, labels = tmp_path / "mine.fasta", tmp_path / "labels.csv"
    fasta.write_text("".join(f">s{i}\n{residues[i:] + residues[:i]}{residues}\n" for i in range(6)))
    labels.write_text("id,label\ns0,toxin\ns1,non-toxin\ns2,toxin\ns3,non-toxin\ns4,toxin\ns5,non-toxin\n")
    frame, _ = data.build_labelled_dataset(fasta, labels, min_length=30)
    assert data.class_names(frame) == ["non-toxin", "toxin"] and not data.is_ec_task(data.class_names(frame))
    assert frame.set_index("id")["label"].to_dict() == {"s0": 1, "s1": 0, "s2": 1, "s3": 0, "s4": 1, "s5": 0}
    split = data.split_dataset(frame, 0.34, seed=0)
    path = data.save_dataset(split, tmp_path / "dataset.parquet")
    summary = data.dataset_summary(data.load_dataset(path), {}, 64)
    assert summary["classes"] == ["non-toxin", "toxin"] and set(summary["counts"]["test"]) == {"non-toxin", "toxin"}
    assert data.short_names(summary["classes"]) == ["non-toxin", "toxin"]
    assert "paper (approx.)" not in data.paper_comparison(split).index
    labels.write_text("id,label\n" + "".join(f"s{i},{10 - i % 2 * 8}\n" for i in range(6)))  # integer names: numeric order
    assert data.class_names(data.build_labelled_dataset(fasta, labels, min_length=30)[0]) == ["2", "10"]


@pytest.mark.parametrize("table, message", [
    ("id,label\ns0,a\ns1,b\ns2,a\ns3,b\ns4,a\ns5,b\nzz,a\n", r"labels.csv: id 'zz' is not a record of .*mine.fasta"),
    ("id,label\ns0,a\ns1,b\ns2,a\ns3,b\ns4,a\ns5,c\n", r"labels.csv: class 'c' has 1 record\(s\) \(row 7, 's5'\)"),
    ("id,label\ns0,a\ns1,b\ns2,a\ns0,b\ns4,a\ns5,b\n", r"labels.csv: id 's0' \(row 5\) is labelled more than once"),
    ("id,label\ns0,a\ns1,a\ns2,a\ns3,a\ns4,a\ns5,a\n", r"labels.csv: one class only \('a'\)"),
    ("id,label\ns0,a\ns1,\ns2,a\ns3,b\ns4,a\ns5,b\n", r"labels.csv: row 3: empty id or label"),
    ("id,class\ns0,a\n", r"labels.csv: needs columns 'id' and 'label'"),
])
def test_a_malformed_label_table_is_named_with_its_row(tmp_path, table, message):
    residues = "ACDEFGHIKLMNPQRSTVWY"
    fasta, labels = tmp_path / "mine.fasta", tmp_path / "labels.csv"
    fasta.write_text("".join(f">s{i}\n{residues[i:] + residues[:i]}{residues}\n" for i in range(6)))
    labels.write_text(table)
    with pytest.raises(DataFileError, match=message):
        data.build_labelled_dataset(fasta, labels, min_length=30)


def test_a_class_left_with_one_record_after_cleaning_stops_the_split():
    frame = _synthetic(n_per_class=3)
    frame = frame[(frame["label"] != 2) | (frame["id"] == "2_0")]
    with pytest.raises(ValueError, match=r"class '3' has 1 record left after cleaning"):
        data.split_dataset(frame, 0.2, seed=0)
