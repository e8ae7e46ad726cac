"""Figures drawn from what a stage recorded: the right lines, labelled by what they score."""
import matplotlib

matplotlib.use("Agg")

from kn_utils.plots import training_curve


def _labels(figure) -> list[str]:
    return [line.get_label() for line in figure.axes[1].get_lines()]


def test_training_curve_names_the_scored_set():
    history = [{"epoch": e, "train_loss": 1.0 / e, "accuracy": 0.3 + 0.1 * e, "balanced_accuracy": 0.2 + 0.1 * e,
                "macro_f1": 0.2 + 0.1 * e} for e in (1, 2, 3)]
    plain = training_curve(history, {"majority class": 0.35}, scored_on="validation")
    assert plain.axes[1].get_ylabel() == "validation score"
    assert _labels(plain) == ["accuracy", "balanced accuracy", "macro f1", "majority class"]
    assert list(plain.axes[1].get_lines()[0].get_ydata()) == [h["accuracy"] for h in history]
