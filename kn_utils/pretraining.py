"""Masked-language-model warm start: a short MLM pass on the training chains before fine-tuning a random-init model.

Without pretrained ESM-2 weights the classifier must learn protein statistics from its labels alone, and it
underfits (it fits 60% of its own training set after 10 epochs). A few minutes of MLM on the same training
chains, no labels and no test chains, gives the encoder a start; the class head is then trained as before.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import EsmConfig, EsmForMaskedLM

from .alphabet import CLS_ID, EOS_ID, MASK_ID, PAD_ID, STANDARD_RESIDUES, TOKEN_ID, encode, pad_batch, residue_frequencies
from .attention import attention_implementation, attention_kernel
from .kernels import fused_gelu
from .model import resolve_precision
from .ranks import rank_share, summed, world
from .inference import length_batches
from .training import (Checkpoint, adamw, check_schedule, data_fingerprint, learning_rate_at, training_step,
                       weights_fingerprint)

RESIDUE_IDS = torch.tensor(sorted(TOKEN_ID[residue] for residue in STANDARD_RESIDUES))


@dataclass
class MLMConfig:
    """Every knob of the MLM warm start; stored in its checkpoint so that a resume must use the same ones.

    The defaults are the quick profile's (notebook 02's `mlm_*` parameters; tests/test_profiles.py checks they agree).
    """

    steps: int = 30
    learning_rate: float = 5e-4
    warmup_steps: int = 10
    schedule: str = "constant"  # constant | cosine, as in training.learning_rate_at
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    beta2: float = 0.98  # ESM-2's own pretraining setting; steadier than 0.999 on short runs
    mask_fraction: float = 0.15  # of residues; of those 80% become <mask>, 10% a random residue, 10% stay
    max_tokens: int = 2048
    max_residues: int = 128  # the first residues, the window the classifier sees
    grad_clip: float = 1.0
    precision: str = "fp32"  # bf16 | fp32 | auto (bf16 where the device has it natively)
    seed: int = 0
    log_every: int = 100  # steps per point of the loss curve
    checkpoint_every: int = 200
    fused_kernels: bool = True  # torch's fused GELU and AdamW, as in training.TrainConfig

    def __post_init__(self) -> None:
        """Refuse an unknown schedule now rather than warm up with a silent default."""
        check_schedule(self.schedule)

    def as_dict(self) -> dict:
        """Plain dict for result files."""
        return asdict(self)

    def describe(self) -> str:
        """One line naming the warm start, for the model's source and the fine-tuning checkpoint."""
        return (f"mlm-warm-start(steps={self.steps},lr={self.learning_rate:g},mask={self.mask_fraction:g},"
                f"residues={self.max_residues},seed={self.seed})")


def mask_tokens(input_ids: torch.Tensor, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of residues (never <cls>, <eos>, <pad>): (inputs, labels with -100 where nothing is predicted)."""
    special = (input_ids == PAD_ID) | (input_ids == CLS_ID) | (input_ids == EOS_ID)
    chosen = (torch.rand(input_ids.shape, generator=generator) < fraction) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    draw = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (draw < 0.8)] = MASK_ID
    replaced = chosen & (draw >= 0.8) & (draw < 0.9)
    picks = torch.randint(len(RESIDUE_IDS), (int(replaced.sum()),), generator=generator)
    inputs[replaced] = RESIDUE_IDS[picks]
    return inputs, labels


def unigram_loss(sequences: list[str], max_residues: int) -> float:
    """Cross-entropy (nats) of predicting each residue from residue frequencies alone: the bar MLM must clear."""
    _, frequencies = residue_frequencies([sequence[:max_residues] for sequence in sequences])
    return float(-(frequencies * np.log(frequencies)).sum())


def masked_lm(config: EsmConfig, seed: int) -> EsmForMaskedLM:
    """A randomly initialised ESM-2 masked language model of `config`, drawn from `seed` (global RNG restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EsmForMaskedLM(config)
    return model


def pretrain_mlm(model: EsmForMaskedLM, sequences: list[str], config: MLMConfig, checkpoint_dir: str | os.PathLike,
                 stop_after_steps: int | None = None) -> dict:
    """Train `model` by masked-language modelling; resumes from (or reuses a finished) `checkpoint_dir/mlm.pt`.

    Returns {"step", "history": [{"step", "loss", "learning_rate", "seconds"}...], "train_seconds", "train_tokens",
    "resumed_from_step"}; `stop_after_steps` ends the call early (checkpoint written), as a kill would.
    """
    if not sequences:
        raise ValueError("MLM warm start needs at least one training sequence")
    device = next(model.parameters()).device
    precision = resolve_precision(config.precision, device)
    tokens = [encode(sequence, config.max_residues) for sequence in sequences]
    lengths = np.array([len(t) for t in tokens])
    steps_per_epoch = len(length_batches(lengths, config.max_tokens, np.random.default_rng(0)))
    optimizer = adamw(model, config.learning_rate, config.weight_decay, config.beta2, fused=config.fused_kernels)
    checkpoint = Checkpoint(Path(checkpoint_dir) / "mlm.pt", config, "MLM", data_fingerprint(sequences),
                            weights_fingerprint(model))
    state = checkpoint.resume(model, optimizer, {"step": 0, "history": [], "train_seconds": 0.0, "train_tokens": 0,
                                                 "window": [0.0, 0]})
    if 0 < state["step"] < config.steps:
        print(f"resuming MLM from {checkpoint.path} at step {state['step']} of {config.steps}")
    resumed_from = state["step"]
    with (attention_implementation(model, attention_kernel(precision, device)),  # the faster kernel of this precision
          fused_gelu(config.fused_kernels)):
        model.train()
        rank, size = world()
        forward = model if size == 1 else torch.nn.parallel.DistributedDataParallel(  # each rank a share of a batch
            model, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=True)
        started = time.perf_counter()
        stopping = False
        while state["step"] < config.steps and not stopping:
            epoch, offset = divmod(state["step"], steps_per_epoch)
            batches = length_batches(lengths, config.max_tokens, np.random.default_rng([config.seed, epoch]))
            for batch in batches[offset:]:
                step = state["step"]
                input_ids, attention_mask = pad_batch([tokens[i] for i in batch])
                generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
                inputs, labels = mask_tokens(input_ids, config.mask_fraction, generator)  # the whole batch's masks
                if size == 1:
                    targets = labels.to(device).flatten()
                    loss_of = lambda logits: torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets,  # noqa: E731
                                                                               ignore_index=-100)
                else:  # this rank's rows; the masked-token mean of the whole batch, spread over the ranks
                    rows, share = rank_share(np.arange(len(batch)), rank, size)
                    masked = int((labels != -100).sum())
                    inputs, attention_mask, targets = inputs[rows], attention_mask[rows], labels[rows].to(device).flatten()
                    factor = 0.0 if share == 0 else size / max(masked, 1)  # a rank without rows joins at 0
                    loss_of = lambda logits: torch.nn.functional.cross_entropy(  # noqa: E731
                        logits.flatten(0, 1), targets, ignore_index=-100, reduction="sum") * factor
                loss = training_step(model, forward, optimizer, inputs, attention_mask, loss_of,
                                     learning_rate_at(step, config.steps, config), precision, config.grad_clip)
                if size > 1:
                    loss = summed(loss) / size
                state["step"] += 1
                state["train_tokens"] += int(attention_mask.sum()) if size == 1 else int(summed(float(attention_mask.sum())))
                state["window"] = [state["window"][0] + loss, state["window"][1] + 1]  # loss since the last log point
                done = state["step"] >= config.steps
                if state["step"] % config.log_every == 0 or done:
                    state["train_seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    state["history"].append({"step": state["step"], "loss": state["window"][0] / state["window"][1],
                                             "learning_rate": learning_rate_at(step, config.steps, config),
                                             "seconds": state["train_seconds"]})
                    state["window"] = [0.0, 0]
                stopping = stop_after_steps is not None and state["step"] - resumed_from >= stop_after_steps
                if done or stopping or state["step"] % config.checkpoint_every == 0:
                    state["train_seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    checkpoint.save(model, optimizer, state)
                if done or stopping:
                    break
    model.eval()
    return {**state, "steps_per_epoch": steps_per_epoch, "resumed_from_step": resumed_from,
            "stopped_early": state["step"] < config.steps}


def warm_start(classifier, mlm_model: EsmForMaskedLM) -> None:
    """Copy the MLM-trained encoder into the classifier; its class head keeps its fresh random weights."""
    classifier.esm.load_state_dict(mlm_model.esm.state_dict(), strict=True)


def warm_up(classifier, sequences: list[str], config: MLMConfig, checkpoint_dir: str | os.PathLike,
            init_std: float = 0.02) -> dict:
    """The warm start of a random-init classifier: a masked language model of its shape (seeded by `config.seed`)
    trained on `sequences` (pretrain_mlm, resumable), its encoder then copied into the classifier; its outcome."""
    from .model import esm2_config

    device = next(classifier.parameters()).device
    shape = {key: getattr(classifier.config, key) for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                              "intermediate_size")}
    model = masked_lm(esm2_config(initializer_range=init_std, **shape), config.seed).to(device)
    outcome = pretrain_mlm(model, sequences, config, checkpoint_dir)
    warm_start(classifier, model)
    return outcome


def outcome_figures(outcome: dict | None) -> dict:
    """A warm start's outcome as result-file keys (seconds and loss curve; zero and empty without a warm start)."""
    return {"mlm_seconds": outcome["train_seconds"] if outcome else 0.0, "mlm_history": outcome["history"] if outcome else []}
