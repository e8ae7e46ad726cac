"""The positive control at CI size (profile `control`, fewer sequences): notebooks 01-08 on a model that learns the
planted task, so that these checks are about the methods: each fails on a model that predicts one class, on IG that
misses its completeness bound, on a selection no better than random, or on a motif test that finds nothing or finds
what was never planted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kn_utils.runner import run_profile
from kn_utils.runs import run_dir

CI_SIZE = {"synthetic_per_class": 500}  # the record's control has 1,000 per class
STAGES = ("data", "finetune", "integrated_gradients", "ablation", "class_neurons", "planted_truth")


@pytest.fixture(scope="module")
def control() -> dict[str, dict]:
    run = run_dir("control")
    if not (run / "planted_truth.json").exists():
        run_profile("control", overrides=CI_SIZE)
    return {stage: json.loads((Path(run) / f"{stage}.json").read_text()) for stage in STAGES}


def _summary(control: dict) -> dict[str, dict]:
    return {row["question"]: row for row in control["planted_truth"]["summary"]}


def test_the_model_learns_the_planted_task_every_class_of_it(control):
    finetune = control["finetune"]
    assert finetune["accuracy"] >= 0.8 and finetune["balanced_accuracy"] >= 0.8  # 0.87 on 2 Intel cores; the record's 0.97
    recall = [row[label] / sum(row) for label, row in enumerate(finetune["confusion_matrix"])]
    assert min(recall) >= 0.7, recall  # no class given up
    assert control["data"]["classes"] == ["motif_A", "motif_B", "motif_C", "motif_D", "motif_E", "composition"]


def test_ig_meets_its_completeness_bound_on_the_control(control):
    ig = control["integrated_gradients"]
    assert ig["within_bound"], {key: value for key, value in ig.items() if "error" in key}


def test_ig_kept_submodels_keep_more_than_random_by_two_sd(control):
    sweep = {row["kept"]: row for row in control["planted_truth"]["sweep"]}
    assert sweep["25%"]["IG > random + 2 sd"], sweep["25%"]
    assert sweep["25%"]["IG signed"] > sweep["25%"]["activation"]


def test_the_motif_test_finds_planted_motifs_and_never_a_pattern_never_planted(control):
    truth, tests = control["planted_truth"], control["class_neurons"]["motif_tests"]
    planted = set(control["data"]["planted_motifs"])
    assert {test["motif"] for test in tests} == planted  # notebook 07 tested the planted motifs, not the enzyme table
    assert sum(test["q_value"] < 0.05 for test in tests) >= 5  # neurons whose activation peaks sit on a planted motif
    assert truth["never_planted_tests"] > 0 and truth["never_planted_calls"] == 0


def test_suppressing_a_class_neurons_hurts_that_class_most(control):
    supported = _summary(control)["suppressing a class's neurons hurts it most, beyond 2 random sd"]
    assert supported["yes"] >= 4 and supported["of"] == 6
