"""Evaluation metrics against values worked by hand."""
import numpy as np
import pytest

from kn_utils.metrics import evaluation_report, expected_calibration_error, per_class_recall


def _logits(probabilities: np.ndarray) -> np.ndarray:
    return np.log(probabilities)


def test_expected_calibration_error_of_an_overconfident_and_of_a_calibrated_model():
    confident = _logits(np.tile([0.9, 0.05, 0.05], (10, 1)))
    labels = np.array([0] * 5 + [1] * 5)  # 90 % confident, right half the time
    assert expected_calibration_error(confident, labels) == pytest.approx(0.4)
    assert expected_calibration_error(confident, np.zeros(10, dtype=int)) == pytest.approx(0.1)
    mixed = _logits(np.array([[0.9, 0.05, 0.05]] * 10 + [[0.2, 0.6, 0.2]] * 5))  # two bins, each calibrated
    labels = np.array([0] * 9 + [2] + [1] * 3 + [0] * 2)
    assert expected_calibration_error(mixed, labels) == pytest.approx(0.0, abs=1e-9)


def test_per_class_recall_and_the_report_agree_with_the_confusion_matrix():
    logits = _logits(np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]))
    labels = np.array([0, 1, 1, 0])
    assert per_class_recall(logits, labels, 3) == [0.5, 0.5, None]
    report = evaluation_report(logits, labels, ["a", "b", "c"])
    assert report["confusion"]["matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert report["accuracy"] == 0.5 and report["per_class_recall"] == {"a": 0.5, "b": 0.5, "c": None}
    assert report["examples"] == 4
