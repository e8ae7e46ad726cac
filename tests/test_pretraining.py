"""MLM warm start on a tiny model: masking rule, learning, resume after a kill, and the hand-over to the classifier."""
import math

import numpy as np
import pytest
import torch

from kn_utils.alphabet import CLS_ID, EOS_ID, MASK_ID, PAD_ID, encode, pad_batch
from kn_utils.model import random_classifier
from kn_utils.pretraining import RESIDUE_IDS, MLMConfig, masked_lm, mask_tokens, pretrain_mlm, unigram_loss, warm_start


def _config(**overrides):
    settings = dict(steps=40, learning_rate=3e-3, warmup_steps=5, max_tokens=512, max_residues=40, precision="fp32",
                    log_every=10, checkpoint_every=1000, seed=0)
    settings.update(overrides)
    return MLMConfig(**settings)


def _homopolymers(count: int = 32) -> list[str]:
    """Runs of one residue out of four: a masked residue is given away by its context, not by residue frequencies."""
    rng = np.random.default_rng(0)
    return [residue * int(length) for residue, length in zip(rng.choice(list("WKDC"), count), rng.integers(16, 36, count))]


def test_masking_spares_special_tokens_and_follows_80_10_10():
    rows = [encode("ACDEFGHIKLMNPQRSTVWY" * 10), encode("MKT")]
    input_ids, _ = pad_batch(rows * 200)
    inputs, labels = mask_tokens(input_ids, 0.15, torch.Generator().manual_seed(0))
    special = (input_ids == PAD_ID) | (input_ids == CLS_ID) | (input_ids == EOS_ID)
    chosen = labels != -100
    assert not (chosen & special).any() and torch.equal(inputs[special], input_ids[special])
    assert torch.equal(labels[chosen], input_ids[chosen])
    assert abs(chosen.sum().item() / (~special).sum().item() - 0.15) < 0.01
    masked = (inputs == MASK_ID) & chosen
    replaced = chosen & ~masked & (inputs != input_ids)
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.02
    assert 0.06 < replaced.sum().item() / chosen.sum().item() < 0.1  # 10% drawn, of which 1 in 20 is the same residue
    assert torch.isin(inputs[replaced], RESIDUE_IDS).all()
    assert torch.equal(inputs, mask_tokens(input_ids, 0.15, torch.Generator().manual_seed(0))[0])


def test_unigram_loss_is_the_residue_entropy():
    assert unigram_loss(["ACDEFGHIKLMNPQRSTVWY" * 3], 60) == pytest.approx(math.log(20))
    assert unigram_loss(["AAAA", "AAAAAAAAAACCCC"], 4) == pytest.approx(0.0)  # only the first 4 residues count


def test_mlm_learns_context_beyond_residue_frequencies(tiny_config, tmp_path):
    sequences = _homopolymers()
    model = masked_lm(tiny_config, seed=0)
    outcome = pretrain_mlm(model, sequences, _config(steps=80, learning_rate=1e-2), tmp_path)
    history = outcome["history"]
    assert [point["step"] for point in history] == list(range(10, 81, 10))
    assert history[0]["loss"] > unigram_loss(sequences, 40)  # a fresh model is worse than residue frequencies
    assert history[-1]["loss"] < 0.5 * unigram_loss(sequences, 40)
    assert outcome["train_tokens"] > 0 and (tmp_path / "mlm.pt").exists()


def test_killed_mlm_resumes_to_the_same_weights_and_curve(tiny_config, tmp_path):
    sequences, config = _homopolymers(), _config(steps=12, log_every=4, checkpoint_every=5, precision="bf16")
    straight = masked_lm(tiny_config, seed=0)
    full = pretrain_mlm(straight, sequences, config, tmp_path / "a")
    partial = pretrain_mlm(masked_lm(tiny_config, seed=0), sequences, config, tmp_path / "b", stop_after_steps=6)
    assert partial["stopped_early"] and partial["step"] == 6
    resumed = masked_lm(tiny_config, seed=0)  # a fresh process: weights come from the checkpoint
    outcome = pretrain_mlm(resumed, sequences, config, tmp_path / "b")
    assert outcome["resumed_from_step"] == 6 and not outcome["stopped_early"]
    assert [p["loss"] for p in outcome["history"]] == [p["loss"] for p in full["history"]]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    again = pretrain_mlm(masked_lm(tiny_config, seed=0), sequences, config, tmp_path / "b")
    assert again["resumed_from_step"] == config.steps  # a finished pass is reused, not repeated


def test_mlm_resume_with_other_settings_or_data_or_a_corrupt_file_is_refused(tiny_config, tmp_path):
    sequences = _homopolymers()
    pretrain_mlm(masked_lm(tiny_config, 0), sequences, _config(steps=2), tmp_path)
    with pytest.raises(RuntimeError, match="other MLM settings"):
        pretrain_mlm(masked_lm(tiny_config, 0), sequences, _config(steps=3), tmp_path)
    with pytest.raises(RuntimeError, match="mlm.pt: this MLM checkpoint was trained on data with fingerprint"):
        pretrain_mlm(masked_lm(tiny_config, 0), sequences[1:], _config(steps=2), tmp_path)
    wider_init = tiny_config.__class__(**{**tiny_config.to_dict(), "initializer_range": 0.05})  # -p init_std 0.05
    for other_start in (masked_lm(tiny_config, 1), masked_lm(wider_init, 0)):
        with pytest.raises(RuntimeError, match="mlm.pt: this MLM checkpoint started from other weights"):
            pretrain_mlm(other_start, sequences, _config(steps=2), tmp_path)
    (tmp_path / "mlm.pt").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="mlm.pt: corrupt MLM checkpoint"):
        pretrain_mlm(masked_lm(tiny_config, 0), sequences, _config(steps=2), tmp_path)
    with pytest.raises(ValueError, match="at least one training sequence"):
        pretrain_mlm(masked_lm(tiny_config, 0), [], _config(), tmp_path / "empty")


def test_warm_start_copies_the_encoder_and_keeps_the_fresh_head(tiny_config, tmp_path):
    mlm = masked_lm(tiny_config, seed=1)
    pretrain_mlm(mlm, _homopolymers(), _config(steps=3), tmp_path)
    classifier = random_classifier(tiny_config, 0, "eager")
    head = {name: value.clone() for name, value in classifier.classifier.state_dict().items()}
    warm_start(classifier, mlm)
    for (name, a), b in zip(classifier.esm.state_dict().items(), mlm.esm.state_dict().values()):
        assert torch.equal(a, b), name
    for name, value in classifier.classifier.state_dict().items():
        assert torch.equal(value, head[name]), name
