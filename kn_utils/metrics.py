"""Classification metrics the study reports: accuracy (the paper's), balanced accuracy, macro-F1, baselines."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of each row of class logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def true_class_probabilities(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of each row's true class."""
    return probabilities(logits)[np.arange(len(labels)), labels]


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and mean true-class probability of class logits."""
    predictions = logits.argmax(axis=1)
    with warnings.catch_warnings():  # a class predicted but absent from the labels is fine on a small evaluation set
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = balanced_accuracy_score(labels, predictions)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(labels, predictions, average="macro", labels=np.arange(logits.shape[1]), zero_division=0)),
        "mean_true_class_probability": float(true_class_probabilities(logits, labels).mean()),
    }


def majority_baseline(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Test accuracy of always predicting the most frequent training class."""
    majority = np.bincount(train_labels).argmax()
    return float(np.mean(test_labels == majority))


def confusion(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """Confusion matrix, rows true class, columns predicted class."""
    return confusion_matrix(labels, logits.argmax(axis=1), labels=np.arange(num_labels))


def held_out_scores(logits: np.ndarray, labels: np.ndarray, train_labels: np.ndarray) -> dict[str, float]:
    """`classification_metrics` of the test set with the majority-class baseline and the chance level of balanced
    accuracy (1 / classes) beside them."""
    return {**classification_metrics(logits, labels), "majority_baseline": majority_baseline(train_labels, labels),
            "chance_balanced": 1 / logits.shape[1]}


def per_class_recall(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> list[float | None]:
    """Recall of each class (None for a class without examples)."""
    matrix = confusion(logits, labels, num_labels)
    totals = matrix.sum(1)
    return [float(matrix[c, c] / totals[c]) if totals[c] else None for c in range(num_labels)]


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: over equal-width bins of the top-class probability, the mean |accuracy - confidence|
    weighted by the bin's share of examples."""
    rows = probabilities(logits)
    confidence, correct = rows.max(1), rows.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(which):
        members = which == b
        error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def evaluation_report(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """What `python -m kn_utils evaluate` reports: `classification_metrics`, per-class recall, the confusion matrix
    (rows true class, columns predicted) and the expected calibration error."""
    count = len(class_names)
    return {"examples": int(len(labels)), **classification_metrics(logits, labels),
            "expected_calibration_error": expected_calibration_error(logits, labels),
            "per_class_recall": dict(zip(class_names, per_class_recall(logits, labels, count))),
            "confusion": {"classes": class_names, "matrix": confusion(logits, labels, count).tolist()}}
