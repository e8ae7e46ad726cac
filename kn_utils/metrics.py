"""Classification metrics the study reports: accuracy (the paper's), balanced accuracy, macro-F1, baselines."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score


def true_class_probabilities(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of each row's true class."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return probabilities[np.arange(len(labels)), labels]


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and mean true-class probability of class logits."""
    predictions = logits.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
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
