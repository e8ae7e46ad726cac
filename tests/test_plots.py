"""Figures drawn from what a stage recorded: the right lines, labelled by what they score."""
import matplotlib

matplotlib.use("Agg")

from kn_utils.plots import training_curve


def _labels(figure) -> list[str]:
    return [line.get_label() for line in figure.axes[1].get_lines()]


def test_training_curve_names_the_scored_set_and_draws_live_weights_only_for_an_averaged_run():
    history = [{"epoch": e, "train_loss": 1.0 / e, "accuracy": 0.3 + 0.1 * e, "balanced_accuracy": 0.2 + 0.1 * e,
                "macro_f1": 0.2 + 0.1 * e} for e in (1, 2, 3)]
    plain = training_curve(history, {"majority class": 0.35}, scored_on="validation")
    assert plain.axes[1].get_ylabel() == "validation score"
    assert _labels(plain) == ["accuracy", "balanced accuracy", "macro f1", "majority class"]
    averaged = training_curve([{**h, "live_accuracy": h["accuracy"] - 0.05} for h in history], {"majority class": 0.35})
    live = averaged.axes[1].get_lines()[_labels(averaged).index("accuracy, live weights")]
    assert list(live.get_ydata()) == [h["accuracy"] - 0.05 for h in history]
