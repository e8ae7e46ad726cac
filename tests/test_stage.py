"""The stage helper: a notebook's parameters, inputs and model from one call, and result files that record them."""
import json

import numpy as np
import pandas as pd
import pytest

from kn_utils import data
from kn_utils.model import ModelInfo, save_classifier
from kn_utils.runs import declared_parameters, source_of
from kn_utils.stage import open_stage
from kn_utils.training import weights_fingerprint


def _defaults(stage: str, **overrides) -> dict:
    import ast

    values = {name: ast.literal_eval(spec["default"]) for name, spec in declared_parameters(source_of(stage)).items()}
    return {**values, **overrides}


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path))
    folder = tmp_path / "t"
    frame = pd.DataFrame({"id": list("abcd"), "class_name": ["1", "2", "1", "2"], "label": [0, 1, 0, 1],
                          "sequence": ["MKTAYIAKQR", "MNIFEMLRID", "GSHMSLFDKL", "MADQLTEEQI"], "length": [10] * 4,
                          "split": ["train", "train", "test", "test"], "accession": list("abcd")})
    data.save_dataset(frame, folder / "dataset.parquet")
    return folder


def test_a_stage_refuses_a_namespace_without_its_parameters(run):
    with pytest.raises(NameError, match="06_heatmaps: parameter.*bin_width"):
        open_stage("06_heatmaps", {key: value for key, value in _defaults("06", profile="t").items() if key != "bin_width"})


def test_a_result_records_every_declared_parameter_the_data_checksum_and_no_model(run):
    stage = open_stage("01_data", {**_defaults("01", profile="t", seed=3), "unrelated": 1})
    assert stage.parameters["seed"] == 3 and "unrelated" not in stage.parameters
    assert stage.test_set["id"].tolist() == ["c", "d"] and stage.labels.tolist() == [0, 1]
    path = stage.save_result("data", {"n": 4}, inputs={"sha256:fasta": "abc"})
    result = json.loads(path.read_text())
    recorded = result["provenance"]["parameters"]
    assert recorded == {**_defaults("01", profile="t", seed=3)}  # all of them, max_residues among them
    assert result["provenance"]["inputs"] == {"dataset_sha256": data.sequence_checksum(stage.dataset), "sha256:fasta": "abc"}
    assert result["n"] == 4 and result["wall_s"] >= 0 and result["peak_rss_mb"] > 0
    assert result["provenance"]["model"] is None and result["provenance"]["device"] is None and "init" not in result


def _finetuned(run, model) -> None:
    """What notebook 02 leaves: the model folder and finetune.json with the weights' fingerprint."""
    save_classifier(model, run / "model", ModelInfo("random", "test-source", 0), {"max_residues": 7})
    stage = open_stage("02_finetune", _defaults("02", profile="t", max_residues=7))
    stage.save_result("finetune", {}, info=ModelInfo("random", "test-source", 0), model=model)


def test_a_later_stage_reads_the_trained_window_and_records_its_model(run, tiny_model):
    _finetuned(run, tiny_model)
    stage = open_stage("05_ablation", _defaults("05", profile="t", precision="fp32"))
    assert stage.max_residues == 7 and stage.index.size == 2 * 3 * 16 and stage.precision == "fp32"
    result = json.loads(stage.save_result("ablation", {}).read_text())
    assert result["init"] == "random" and result["model_source"] == "test-source"
    assert result["provenance"]["parameters"]["max_residues"] == 7 and result["provenance"]["device"] == "cpu"
    assert result["provenance"]["model"]["source"] == "test-source"
    assert result["provenance"]["inputs"]["weights_sha256"] == weights_fingerprint(tiny_model)
    with pytest.raises(FileNotFoundError, match="activations.npz: not found"):
        stage.arrays("activations")
    np.savez(run / "activations.npz", mean=np.ones(3))
    open_stage("03_activations", _defaults("03", profile="t")).save_result("activations", {})
    assert stage.arrays("activations")["mean"].tolist() == [1, 1, 1]


def test_a_stage_refuses_outputs_written_from_other_weights(run, tiny_model, tiny_config):
    from kn_utils.model import random_classifier

    _finetuned(run, tiny_model)
    np.savez(run / "activations.npz", mean=np.ones(3))
    open_stage("03_activations", _defaults("03", profile="t")).save_result("activations", {})
    other = random_classifier(tiny_config, 1, "eager").eval()
    _finetuned(run, other)  # notebook 02 ran again: a new model, and 03's outputs are from the old one
    stage = open_stage("04_integrated_gradients", _defaults("04", profile="t"))
    with pytest.raises(RuntimeError, match=r"activations.json: written from weights \w{12}, but this run's model is"):
        stage.arrays("activations")
    save_classifier(tiny_model, run / "model", ModelInfo("random", "test-source", 0), {"max_residues": 7})  # swapped by hand
    with pytest.raises(RuntimeError, match="model: holds other weights than notebook 02 recorded"):
        open_stage("04_integrated_gradients", _defaults("04", profile="t")).model
    data.save_dataset(data.load_dataset(run / "dataset.parquet").iloc[::-1], run / "dataset.parquet")  # 01 re-ran
    with pytest.raises(RuntimeError, match=r"finetune.json: written from dataset \w{12}, but .*dataset.parquet holds"):
        open_stage("05_ablation", _defaults("05", profile="t")).result("finetune")


def test_the_planted_truth_is_read_only_from_a_run_whose_notebook_01_planted_it(run):
    stage = open_stage("01_data", _defaults("01", profile="t"))
    with pytest.raises(FileNotFoundError, match="no planted truth .*synthetic=True"):
        stage.planted_truth()
    truth = pd.DataFrame({"id": ["c"], "kind": ["motif"], "motif": ["m"], "start": [1], "end": [4], "instance": ["KTA"]})
    stage.save_table(truth, "planted")
    stage.save_result("data", {})  # a later plain notebook 01: no planted motifs recorded
    with pytest.raises(FileNotFoundError, match="left by an earlier run"):
        open_stage("08_planted_truth", _defaults("08", profile="t")).planted_truth()
    stage.save_result("data", {"planted_motifs": {"m": "K-T-A"}})
    assert open_stage("08_planted_truth", _defaults("08", profile="t")).planted_truth().equals(truth)
