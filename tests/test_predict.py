"""`python -m kn_utils predict`: one line per record, clear errors naming the bad record."""
import subprocess
import sys

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
    assert lines[0].split("\t")[:3] == ["record", "predicted_ec_class", "name"]
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
