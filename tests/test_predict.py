"""`python -m kn_utils predict`: one line per record, clear errors naming the bad record."""
import subprocess
import sys

import numpy as np
import pytest

from kn_utils.__main__ import main
from kn_utils.model import ModelInfo, save_classifier


@pytest.fixture
def model_folder(tmp_path, tiny_model):
    return save_classifier(tiny_model, tmp_path / "model", ModelInfo("random", "test", 0), {"max_residues": 64})


def test_predict_prints_class_and_probabilities(tmp_path, model_folder, capsys):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">enzA first\nMKTAYIAKQRQISFVK\nSHFSRQ\n>enzB\nMNIFEMLRID\n")
    assert main(["predict", "--model", str(model_folder), str(fasta)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t")[:3] == ["record", "predicted_class", "name"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [row[0] for row in rows] == ["enzA", "enzB"]
    for row in rows:
        probabilities = [float(p) for p in row[3:]]
        assert len(probabilities) == 6 and sum(probabilities) == pytest.approx(1, abs=1e-3)
        assert int(row[1]) == 1 + probabilities.index(max(probabilities))



def test_predict_cuts_expression_tags_as_the_training_data_did(tmp_path, model_folder, capsys):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">plain\nMKTAYIAKQRQISFVKSHFSRQ\n>tagged\nMGSSHHHHHHSSGLVPRGSHMKTAYIAKQRQISFVKSHFSRQ\n")
    rows = {}
    for flags in ([], ["--keep-tags"]):
        assert main(["predict", "--model", str(model_folder), *flags, str(fasta)]) == 0
        rows[tuple(flags)] = [line.split("\t")[3:] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert rows[()][0] == rows[()][1]  # the tag cut, the two records are one sequence
    assert rows[("--keep-tags",)][0] == rows[()][0] and rows[("--keep-tags",)][1] != rows[()][1]


def test_reading_beyond_the_training_window_warns(tmp_path, model_folder, capsys):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">long\n" + "MKTAYIAKQRQISFVKSHFSRQ" * 5 + "\n")
    warnings = {}
    for window in (None, "64", "32", "100"):
        assert main(["predict", "--model", str(model_folder), *(["--max-residues", window] if window else []), str(fasta)]) == 0
        warnings[window] = "trained on the first 64 residues" in capsys.readouterr().err
    assert warnings == {None: False, "64": False, "32": False, "100": True}


@pytest.mark.parametrize("window", ["0", "-5", "2000"])
def test_a_window_esm2_cannot_read_is_refused(tmp_path, model_folder, capsys, window):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAY\n")
    assert main(["predict", "--model", str(model_folder), "--max-residues", window, str(fasta)]) == 2
    assert capsys.readouterr().err == f"error: --max-residues {window}: must be from 1 to 1022\n"


@pytest.mark.parametrize("body, message", [
    (">good\nMKTAY\n>bad1\nMKT@AY\n", r"record 'bad1': invalid residue\(s\) '@'"),
    (">good\nMKTAY\n>empty\n", r"record 'empty': empty sequence"),
    ("MKTAY\n", r"sequence before the first '>' header"),
    ("", r"no FASTA records"),
])
def test_bad_records_get_a_clear_error(tmp_path, model_folder, capsys, body, message):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(body)
    assert main(["predict", "--model", str(model_folder), str(fasta)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "in.fasta" in error
    assert __import__("re").search(message, error)


def test_missing_model_folder_is_reported(tmp_path, capsys):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAY\n")
    assert main(["predict", "--model", str(tmp_path / "nothing"), str(fasta)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path, model_folder):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAY\n")
    done = subprocess.run([sys.executable, "-m", "kn_utils", "predict", "--model", str(model_folder), str(fasta)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[1].startswith("a\t")


def _labelled(tmp_path):
    fasta, labels = tmp_path / "set.fasta", tmp_path / "labels.csv"
    fasta.write_text(">a\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nMNIFEMLRIDEGLRLKIYKDTEGY\n>c\nGSHMSLFDKLKGLVGKEKPLTG\n>d\nMADQLTEEQIAEFKEAFSLF\n")
    labels.write_text("id,ec_class\na,1\nb,3\nc,3.1.1.4\nd,6\n")
    return fasta, labels


def test_evaluate_reports_the_metrics_of_the_predictions_predict_makes(tmp_path, model_folder, capsys):
    import json

    fasta, labels = _labelled(tmp_path)
    assert main(["predict", "--model", str(model_folder), str(fasta)]) == 0
    predicted = [int(line.split("\t")[1]) for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert main(["evaluate", "--model", str(model_folder), str(fasta), str(labels), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    truth = [1, 3, 3, 6]
    assert report["examples"] == 4 and report["accuracy"] == pytest.approx(np.mean(np.array(predicted) == truth))
    matrix = np.array(report["confusion"]["matrix"])
    assert matrix.sum() == 4 and matrix.sum(1).tolist() == [1, 0, 2, 0, 0, 1]
    assert all(matrix[c - 1, p - 1] >= 1 for c, p in zip(truth, predicted))
    assert 0 <= report["expected_calibration_error"] <= 1 and report["max_residues"] == 64
    recall = list(report["per_class_recall"].values())
    assert recall[1] is None and recall[0] == float(predicted[0] == 1)


def test_evaluate_with_the_run_adds_accuracy_by_nearest_training_chain(tmp_path, model_folder, capsys):
    import json

    import pandas as pd

    fasta, labels = _labelled(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    train = pd.DataFrame({"id": ["t1", "t2"], "label": [0, 2], "split": "train",
                          "sequence": ["MKTAYIAKQRQISFVKSHFSRQ", "WWWWPPPPCCCCHHHHWWWW"]})
    train.to_parquet(run / "dataset.parquet")
    assert main(["evaluate", "--model", str(model_folder), str(fasta), str(labels), "--run", str(run), "--json"]) == 0
    buckets = json.loads(capsys.readouterr().out)["accuracy_by_nearest_training_chain"]
    assert sum(bucket["chains"] for bucket in buckets) == 4
    assert buckets[0]["chains"] == 1 and buckets[0]["nearest_chain_accuracy"] == 1.0  # a copy of a, same class
    assert main(["evaluate", "--model", str(model_folder), str(fasta), str(labels)]) == 0  # the table on screen
    out = capsys.readouterr().out
    assert "accuracy" in out and "pred EC 6" in out


def test_evaluate_names_a_bad_label_table(tmp_path, model_folder, capsys):
    fasta, labels = _labelled(tmp_path)
    labels.write_text("id,ec_class\na,1\nb,3\nc,3\n")
    assert main(["evaluate", "--model", str(model_folder), str(fasta), str(labels)]) == 2
    assert capsys.readouterr().err == f"error: {labels}: no label for record 'd' (line 7 of {fasta})\n"


def test_predict_warns_of_repeated_ids_long_sequences_and_a_model_without_its_info_file(tmp_path, model_folder, capsys):
    from kn_utils.model import INFO_FILE

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">x\nMKTAYIAKQR\n>x\nMNIFEMLRID\n>long\n" + "MKTAYIAKQR" * 10 + "\n")
    assert main(["predict", "--model", str(model_folder), str(fasta)]) == 0
    captured = capsys.readouterr()
    assert "record id 'x' (line 3) also at line 1" in captured.err
    assert "1 of 3 sequences are longer than 64 residues (first: 'long')" in captured.err
    assert len(captured.out.strip().splitlines()) == 4
    (model_folder / INFO_FILE).unlink()
    assert main(["predict", "--model", str(model_folder), str(fasta)]) == 0
    assert f"WARNING: {model_folder} has no {INFO_FILE}" in capsys.readouterr().err


def test_predict_and_evaluate_speak_the_class_names_a_model_was_trained_on(tmp_path, capsys):
    import json

    from kn_utils.model import load_classifier

    model, info = load_classifier("random", seed=0, classes=["cytoplasm", "membrane"], attn_implementation="eager",
                                  architecture={"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 4,
                                                "intermediate_size": 32})
    folder = save_classifier(model, tmp_path / "model", info, {"max_residues": 64})
    fasta, labels = _labelled(tmp_path)
    assert main(["predict", "--model", str(folder), str(fasta)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["record", "predicted_class", "name", "p_cytoplasm", "p_membrane"]
    assert {line.split("\t")[1] for line in lines[1:]} <= {"cytoplasm", "membrane"}
    labels.write_text("id,label\na,membrane\nb,cytoplasm\nc,membrane\nd,membrane\n")
    assert main(["evaluate", "--model", str(folder), str(fasta), str(labels), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["per_class_recall"]) == ["cytoplasm", "membrane"]
    assert np.array(report["confusion"]["matrix"]).sum(1).tolist() == [1, 3]
    labels.write_text("id,label\na,nucleus\nb,cytoplasm\nc,membrane\nd,membrane\n")
    assert main(["evaluate", "--model", str(folder), str(fasta), str(labels)]) == 2
    assert "class(es) ['nucleus'] are not among the model's classes ['cytoplasm', 'membrane']" in capsys.readouterr().err
