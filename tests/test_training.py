"""Fine-tuning mechanics on a tiny model: bucketing, schedule, learning, and resume after a kill."""
import warnings

import numpy as np
import pytest
import torch

from kn_utils import training
from kn_utils.metrics import classification_metrics, majority_baseline
from kn_utils.model import random_classifier
from kn_utils.alphabet import residue_frequencies
from kn_utils.inference import length_batches, predict_logits
from kn_utils.training import MAX_START_SHIFT, SHIFT_MIN_RESIDUES, TrainConfig, learning_rate_at, shift_start, train


def test_length_batches_cover_every_index_once_within_the_token_budget():
    lengths = np.random.default_rng(0).integers(5, 100, size=200)
    batches = length_batches(lengths, 400, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(200))
    assert all(len(b) * lengths[b].max() <= 400 or len(b) == 1 for b in batches)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.1 * lengths.sum()  # bucketing wastes under 10 % on padding


def test_length_batches_without_rng_are_deterministic():
    lengths = np.array([5, 50, 7, 49, 6])
    assert [b.tolist() for b in length_batches(lengths, 100)] == [[0, 4, 2], [3, 1]]


def test_schedule_warms_up_then_decays():
    config = TrainConfig(learning_rate=1e-3, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    rates = [learning_rate_at(step, 100, config) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[-1] >= 1e-4
    constant = TrainConfig(learning_rate=1e-3, warmup_steps=10, schedule="constant")
    assert learning_rate_at(99, 100, constant) == 1e-3


def _config(**overrides):
    settings = dict(epochs=15, learning_rate=1e-2, warmup_steps=5, max_tokens=256, max_residues=40,
                    precision="fp32", checkpoint_every=1000, seed=0, start_shift=0.0)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_training_learns_a_planted_motif(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    tiny_config.num_labels = 3
    model = random_classifier(tiny_config, 0, "eager")
    before = classification_metrics(predict_logits(model, sequences, 40), labels)["accuracy"]
    outcome = train(model, sequences, labels, sequences, labels, _config(), tmp_path, classification_metrics)
    history = outcome["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["accuracy"] > max(before, majority_baseline(labels, labels)) + 0.2
    assert outcome["train_tokens"] == sum(len(s) + 2 for s in sequences) * 15


def test_mean_pooled_head_learns_and_must_match_the_config(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    tiny_config.num_labels = 3
    model = random_classifier(tiny_config, 0, "eager", pooling="mean")
    with pytest.raises(ValueError, match="pooling 'mean' but the config says 'cls'"):
        train(model, sequences, labels, sequences, labels, _config(), tmp_path)
    history = train(model, sequences, labels, sequences, labels, _config(pooling="mean"), tmp_path,
                    classification_metrics)["history"]
    assert history[-1]["accuracy"] > majority_baseline(labels, labels) + 0.2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_training_follows_the_eager_run(tiny_config, toy_task, tmp_path, precision):
    """torch.compile with dynamic shapes changes speed, not the run (PyTorch has shipped silent autocast bugs)."""
    sequences, labels = toy_task
    tiny_config.num_labels = 3
    runs = {}
    for compiled in (False, True):
        model = random_classifier(tiny_config, 0, "eager", pooling="mean")
        config = _config(epochs=8, precision=precision, pooling="mean", torch_compile=compiled)
        runs[compiled] = train(model, sequences, labels, sequences, labels, config, tmp_path / str(compiled),
                               classification_metrics)
        assert type(model).__name__ == "EsmClassifier"  # the caller's model stays eager, saveable, hookable
    eager, compiled = ([epoch["train_loss"] for epoch in runs[key]["history"]] for key in (False, True))
    assert runs[True]["compiled"] and not runs[False]["compiled"]
    assert runs[True]["step"] == runs[False]["step"] > 10  # many batch shapes, one compiled graph
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    assert np.allclose(compiled, eager, rtol=tolerance), (compiled, eager)
    assert eager[-1] < 0.85 * eager[0]


def test_a_failed_compilation_falls_back_to_eager_with_a_warning(tiny_config, toy_task, tmp_path, monkeypatch):
    """A machine without a working compiler still trains, says so, and gets the eager run's numbers."""
    sequences, labels = toy_task
    tiny_config.num_labels = 3

    def broken(model, **options):
        def forward(**inputs):
            raise RuntimeError("InductorError: no C++ compiler found\nsecond line")
        return forward

    monkeypatch.setattr(training.torch, "compile", broken)
    outcomes = {}
    for compiled in (False, True):
        config = _config(epochs=2, torch_compile=compiled)
        model = random_classifier(tiny_config, 0, "eager")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcomes[compiled] = train(model, sequences, labels, sequences, labels, config, tmp_path / str(compiled))
        messages = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
        assert messages == ([] if not compiled else ["torch.compile failed (RuntimeError: InductorError: no C++ compiler "
                                                     "found); training continues uncompiled"])
        assert outcomes[compiled]["compiled"] is False
    assert [h["train_loss"] for h in outcomes[True]["history"]] == [h["train_loss"] for h in outcomes[False]["history"]]


def test_killed_run_resumes_to_the_same_weights(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    config = _config(epochs=2, checkpoint_every=2, precision="bf16")
    straight = random_classifier(tiny_config, 0, "eager")
    straight_outcome = train(straight, sequences, labels, sequences, labels, config, tmp_path / "a")
    interrupted = random_classifier(tiny_config, 0, "eager")
    partial = train(interrupted, sequences, labels, sequences, labels, config, tmp_path / "b", stop_after_steps=3)
    assert partial["stopped_early"] and partial["step"] == 3
    resumed = random_classifier(tiny_config, 0, "eager")  # a fresh process: weights come from the checkpoint
    outcome = train(resumed, sequences, labels, sequences, labels, config, tmp_path / "b")
    assert outcome["resumed_from_step"] == 3
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [h["train_loss"] for h in outcome["history"]] == [h["train_loss"] for h in straight_outcome["history"]]


def test_resume_with_other_settings_is_refused(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    model = random_classifier(tiny_config, 0, "eager")
    train(model, sequences, labels, sequences, labels, _config(epochs=1), tmp_path, stop_after_steps=1)
    with pytest.raises(RuntimeError, match="other training settings"):
        train(model, sequences, labels, sequences, labels, _config(epochs=1, learning_rate=1e-4), tmp_path)
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="last.pt: corrupt training checkpoint"):
        train(model, sequences, labels, sequences, labels, _config(epochs=1), tmp_path)


def test_a_checkpoint_never_resumes_on_other_training_data(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    model = random_classifier(tiny_config, 0, "eager")
    train(model, sequences, labels, sequences, labels, _config(epochs=1), tmp_path)
    relabelled = labels.copy()
    relabelled[0] = 1 - relabelled[0]
    edited = [sequences[0][:-1] + ("A" if sequences[0][-1] != "A" else "C")] + list(sequences[1:])
    for other_sequences, other_labels in ((sequences, relabelled), (edited, labels), (list(reversed(sequences)), labels)):
        with pytest.raises(RuntimeError, match="last.pt: this training checkpoint was trained on data with fingerprint"):
            train(model, other_sequences, other_labels, sequences, labels, _config(epochs=1), tmp_path)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=False)
    del checkpoint["data"]  # as written before checkpoints carried a fingerprint
    torch.save(checkpoint, tmp_path / "last.pt")
    with pytest.raises(RuntimeError, match="trained on data it does not record"):
        train(model, sequences, labels, sequences, labels, _config(epochs=1), tmp_path)


def test_a_checkpoint_never_resumes_from_other_starting_weights(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    config = _config(epochs=1)
    train(random_classifier(tiny_config, 0, "eager"), sequences, labels, sequences, labels, config, tmp_path,
          stop_after_steps=1)
    other_seed = random_classifier(tiny_config, 1, "eager")  # as another seed, init_std, model_source or warm start gives
    with pytest.raises(RuntimeError, match="last.pt: this training checkpoint started from other weights"):
        train(other_seed, sequences, labels, sequences, labels, config, tmp_path)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=False)
    del checkpoint["start"]  # as written before checkpoints carried it: trusted, as before
    torch.save(checkpoint, tmp_path / "last.pt")
    assert train(other_seed, sequences, labels, sequences, labels, config, tmp_path)["resumed_from_step"] == 1


def test_a_checkpoint_that_predates_a_setting_resumes_at_its_default(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    model = random_classifier(tiny_config, 0, "eager")
    train(model, sequences, labels, sequences, labels, _config(epochs=1), tmp_path, stop_after_steps=1)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=False)
    del checkpoint["config"]["grad_clip"]  # as written before the setting existed
    torch.save(checkpoint, tmp_path / "last.pt")
    with pytest.raises(RuntimeError, match="other training settings"):
        train(model, sequences, labels, sequences, labels, _config(epochs=1, grad_clip=0.5), tmp_path)
    fresh = random_classifier(tiny_config, 0, "eager")  # a new process starts from the same initial weights
    outcome = train(fresh, sequences, labels, sequences, labels, _config(epochs=1), tmp_path)
    assert outcome["resumed_from_step"] == 1


@pytest.mark.parametrize("retired, value, refused", [("label_smoothing", 0.1, True), ("crop", "random", True),
                                                     ("ema_decay", 0.0, False), ("crop", "first", False)])
def test_a_checkpoint_of_a_retired_option_resumes_only_when_it_was_off(tiny_config, toy_task, tmp_path, retired, value,
                                                                        refused):
    sequences, labels = toy_task
    train(random_classifier(tiny_config, 0, "eager"), sequences, labels, sequences, labels, _config(epochs=1), tmp_path,
          stop_after_steps=1)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=False)
    checkpoint["config"][retired] = value  # as an earlier release wrote it
    torch.save(checkpoint, tmp_path / "last.pt")
    resume = lambda: train(random_classifier(tiny_config, 0, "eager"), sequences, labels, sequences, labels,  # noqa: E731
                           _config(epochs=1), tmp_path)
    if refused:
        with pytest.raises(RuntimeError, match=f"written with {retired}=.*an option this release removed"):
            resume()
    else:
        assert resume()["resumed_from_step"] == 1


def test_predictions_do_not_depend_on_batching(tiny_model):
    sequences = ["MKTAYIAKQRQISFVK", "MNIF", "GSHMSLFDKLKGLVGKEKPL", "MADQ"]
    together = predict_logits(tiny_model, sequences, 64, max_tokens=4096)
    alone = np.concatenate([predict_logits(tiny_model, [s], 64) for s in sequences])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("augmentation", [{"start_shift": 4.0}])
def test_augmented_training_still_learns_and_resumes_identically(augmentation, tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task
    tiny_config.num_labels = 3
    model = random_classifier(tiny_config, 0, "eager")
    before = classification_metrics(predict_logits(model, sequences, 40), labels)["accuracy"]
    outcome = train(model, sequences, labels, sequences, labels, _config(**augmentation), tmp_path / "a",
                    classification_metrics)
    assert outcome["history"][-1]["accuracy"] > max(before, majority_baseline(labels, labels)) + 0.2
    train(random_classifier(tiny_config, 0, "eager"), sequences, labels, sequences, labels, _config(**augmentation),
          tmp_path / "b", stop_after_steps=7)
    killed = random_classifier(tiny_config, 0, "eager")  # a fresh process: weights come from the checkpoint
    train(killed, sequences, labels, sequences, labels, _config(**augmentation), tmp_path / "b")
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(killed.state_dict()[name], weight)


def test_shift_start_drops_or_prepends_a_few_residues_for_half_the_chains():
    chain = "ACDEFGHIKLMNPQRSTVWY" * 5
    background = residue_frequencies(["GGGA", "AG"])
    assert background[0] == ["A", "G"] and background[1].tolist() == pytest.approx([2 / 6, 4 / 6])
    rng = np.random.default_rng(0)
    shifted = [shift_start(chain, 4.0, rng, background) for _ in range(2000)]
    dropped = [s for s in shifted if len(s) < len(chain)]
    prepended = [s for s in shifted if len(s) > len(chain)]
    assert 900 < shifted.count(chain) < 1100 and 400 < len(dropped) < 600 and 400 < len(prepended) < 600
    assert all(chain.endswith(s) for s in dropped)  # the first residues cut, nothing else touched
    assert all(s.endswith(chain) and set(s[: len(s) - len(chain)]) <= {"A", "G"} for s in prepended)
    sizes = [abs(len(s) - len(chain)) for s in dropped + prepended]
    assert 1 <= min(sizes) and max(sizes) <= MAX_START_SHIFT and 3.5 < np.mean(sizes) < 4.5  # geometric, mean 4
    short = "W" * SHIFT_MIN_RESIDUES
    assert all(len(shift_start(short, 4.0, rng, background)) >= SHIFT_MIN_RESIDUES for _ in range(200))
    state = rng.bit_generator.state
    assert shift_start(chain, 0.0, rng, background) is chain and rng.bit_generator.state == state  # off: draws nothing


def test_shifted_starts_keep_the_epochs_batches(tiny_config, toy_task, tmp_path):
    sequences, labels = toy_task  # 16 to 34 residues: a shift changes their lengths, the batches must not change
    model = random_classifier(tiny_config, 0, "eager")
    outcome = train(model, sequences, labels, sequences, labels, _config(epochs=3, max_tokens=72, start_shift=10.0),
                    tmp_path)
    plain = length_batches(np.array([len(s) + 2 for s in sequences]), 72, np.random.default_rng(0))
    assert outcome["steps_per_epoch"] == len(plain)
    assert [record["step"] for record in outcome["history"]] == [len(plain), 2 * len(plain), 3 * len(plain)]


@pytest.mark.parametrize("value", [-1.0, 0.5, MAX_START_SHIFT + 1])
def test_an_out_of_range_start_shift_is_refused_before_training(value):
    with pytest.raises(ValueError, match="start_shift must be 0 \\(off\\) or in \\[1, "):
        TrainConfig(start_shift=value)


def test_an_unknown_schedule_is_refused_before_training():
    from kn_utils.pretraining import MLMConfig

    for config in (TrainConfig, MLMConfig):
        with pytest.raises(ValueError, match="schedule must be one of \\('constant', 'cosine'\\), not 'cosin'"):
            config(schedule="cosin")
