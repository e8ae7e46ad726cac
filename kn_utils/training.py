"""Fine-tuning: length-bucketed batches, AdamW with warm-up, per-epoch evaluation and resumable checkpoints.

The loop is in small steps: `train` sets up a `Checkpoint`, then runs `train_epoch` and `evaluate_epoch` per epoch;
each optimiser step is `training_step`, which the masked-language warm start (pretraining.pretrain_mlm) shares.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .alphabet import encode, pad_batch, residue_frequencies
from .attention import attention_implementation, attention_kernel
from .inference import autocast, length_batches, predict_logits
from .kernels import fused_gelu
from .model import PRECISIONS, pooling_of, resolve_precision
from .ranks import barrier, rank_share, summed, world
from .provenance import atomic_path

MAX_START_SHIFT = 20  # residues a chain's start moves at most (shift_start)
SHIFT_MIN_RESIDUES = 30  # a chain is never cut below this many residues (the dataset's shortest)
# Options earlier releases had and the study never adopted (docs/experiments.md): a checkpoint written with one of
# them switched on is refused; one written with it off (the value here) resumes.
RETIRED_SETTINGS = {"crop": "first", "class_weighting": "none", "label_smoothing": 0.0, "mask_fraction": 0.0,
                    "ema_decay": 0.0}


@dataclass
class TrainConfig:
    """Every knob of the fine-tuning run; stored in the checkpoint so a resume must use the same ones.

    The defaults are the quick profile's (notebook 02's parameters cell; tests/test_profiles.py checks they agree).
    """

    epochs: int = 2
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 10
    schedule: str = "cosine"  # constant | cosine (after warm-up, down to min_lr_ratio * learning_rate)
    min_lr_ratio: float = 0.1
    max_tokens: int = 2048  # padded tokens per batch
    max_residues: int = 128  # residues the model sees per sequence: the first ones
    start_shift: float = 4.0  # > 0: half the chains start elsewhere each epoch, by a geometric shift of this mean (shift_start)
    grad_clip: float = 1.0
    precision: str = "fp32"  # bf16 | fp32 autocast of the forward pass; auto: bf16 where the device has it natively
    seed: int = 0
    checkpoint_every: int = 100  # optimiser steps between checkpoints
    warm_start: str = "none"  # what the encoder started from (pretraining.MLMConfig.describe()); a resume must match
    pooling: str = "cls"  # what the classification head reads (model.pooling_of); must be the model's
    torch_compile: bool = False  # compile the training step (torch.compile, dynamic shapes): speed only, 1.2x at 256 residues on CPU
    fused_kernels: bool = True  # torch's fused GELU and AdamW (kernels.fused_gelu, adamw): the same maths, faster

    def __post_init__(self) -> None:
        """Refuse an unknown precision, schedule or shift now rather than train with a silent default."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        check_schedule(self.schedule)
        if not (self.start_shift == 0.0 or 1.0 <= self.start_shift <= MAX_START_SHIFT):  # a geometric mean is at least 1
            raise ValueError(f"start_shift must be 0 (off) or in [1, {MAX_START_SHIFT}] residues, not {self.start_shift!r}")

    def as_dict(self) -> dict:
        """Plain dict for result files."""
        return asdict(self)


SCHEDULES = ("constant", "cosine")


def check_schedule(schedule: str) -> None:
    """Refuse an unknown learning-rate schedule by name: a typo must not train with cosine decay unannounced."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")


class CompiledForward:
    """The model compiled once for every batch shape (`dynamic=True`); same parameters, eval and hooks stay eager.

    Length-bucketed batches change both batch size and width from step to step; static shapes would recompile
    for most of them. The first steps pay the compilation (about 45 s for ESM-2 8M on 2 CPU cores). Compilation
    fails late, at a call (e.g. no C++ compiler): then it warns and runs the model eagerly from there on.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        """Keep the eager model beside its compiled twin, to fall back on when compilation fails."""
        self.model = model
        self.compiled = torch.compile(model, dynamic=True)

    def __call__(self, **inputs):
        """The compiled model's output, or the eager model's once compilation has failed."""
        if self.compiled is not None:
            try:
                return self.compiled(**inputs)
            except Exception as error:
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error).strip().splitlines()[0][:200]}); "
                              "training continues uncompiled", RuntimeWarning, stacklevel=2)
                self.compiled = None
        return self.model(**inputs)


def shift_start(sequence: str, mean: float, rng: np.random.Generator,
                background: tuple[list[str], np.ndarray] | None) -> str:
    """With probability 1/2, move the chain's start by a geometric number of residues (mean `mean`, at most
    MAX_START_SHIFT): drop them, or put residues drawn from `background` (alphabet.residue_frequencies) before it,
    with equal odds; `mean` 0 returns the chain untouched and draws nothing.

    Constructs of one protein start a few residues apart (a tag, a Met, a domain boundary); half the test chains
    with a near copy in training start elsewhere than it, and a model trained on fixed first windows misses them.
    """
    if mean == 0.0 or rng.random() >= 0.5:
        return sequence
    size = min(int(rng.geometric(1.0 / mean)), MAX_START_SHIFT)
    if rng.random() < 0.5:
        return sequence[size:] if len(sequence) - size >= SHIFT_MIN_RESIDUES else sequence
    residues, frequencies = background
    return "".join(rng.choice(residues, size, p=frequencies)) + sequence


def learning_rate_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up to `learning_rate`, then constant or cosine decay."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.learning_rate
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW for the study's float32 weights


def adamw(model, learning_rate: float, weight_decay: float, beta2: float = 0.999, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, LayerNorm or embeddings); `fused`: torch's one-kernel
    update of all parameters (CPU and CUDA) instead of a loop over them, the same arithmetic."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    fused = fused and all(p.device.type in FUSED_ADAMW_DEVICES for p in decay + no_decay)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=learning_rate, betas=(0.9, beta2), fused=fused or None)


def optimiser_step(model, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """Backpropagate `loss`, clip the gradient norm to `grad_clip`, take one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def data_fingerprint(sequences: list[str], labels: np.ndarray | None = None) -> str:
    """SHA-256 of the training sequences (and labels) in order, so that a checkpoint resumes only on its own data."""
    digest = hashlib.sha256()
    for sequence in sequences:
        digest.update(sequence.encode() + b"\n")
    if labels is not None:
        digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the weights a run starts from, so that a checkpoint resumes only from its own starting point.

    It tells apart another init, init_std, model_source, seed or warm start, none of which the config records.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + b"\n" + tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_checkpoint(path: Path, config, model, optimizer, kind: str, data: str, start: str | None = None) -> dict | None:
    """Restore model and optimiser from `path`; return its saved state, None when absent.

    Refuses (naming the file) a checkpoint that cannot be read, was written with other `kind` settings than the
    dataclass `config`, was trained on other data than the `data` fingerprint (`data_fingerprint`), or started from
    other weights than the `start` fingerprint (`weights_fingerprint`): after notebook 01 rebuilds the dataset, or a
    new init_std or model_source, a finished run of the old settings must not pass for this one. A setting or
    fingerprint the checkpoint predates counts as matching, so a release that adds a knob keeps old runs resumable.
    """
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
    except Exception as error:
        raise RuntimeError(f"{path}: corrupt {kind} checkpoint ({error}); delete it to start over") from None
    settings, current = dict(saved["config"]), config.as_dict()
    for name, off in RETIRED_SETTINGS.items():
        if name in settings and name not in current and settings.pop(name) != off:
            raise RuntimeError(f"{path}: written with {name}={saved['config'][name]!r}, an option this release removed; "
                               "delete it to start over")
    if {**type(config)().as_dict(), **settings} != current:
        raise RuntimeError(f"{path}: written with other {kind} settings; delete it or restore them")
    if saved.get("data") != data:
        trained_on = f"data with fingerprint {saved['data'][:12]}" if "data" in saved else "data it does not record"
        raise RuntimeError(f"{path}: this {kind} checkpoint was trained on {trained_on}, not on this run's "
                           f"(fingerprint {data[:12]}); delete it to start over")
    if start is not None and saved.get("start", start) != start:
        raise RuntimeError(f"{path}: this {kind} checkpoint started from other weights than this run's (another init, "
                           "init_std, model_source, seed or warm start); delete it to start over")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return saved["state"]


@dataclass
class Checkpoint:
    """One resumable run's checkpoint file and what it vouches for: the settings, data and starting weights."""

    path: Path
    config: object  # TrainConfig or pretraining.MLMConfig
    kind: str  # "training" or "MLM", for error messages
    data: str  # data_fingerprint of the training chains
    start: str  # weights_fingerprint of the starting weights

    def resume(self, model, optimizer, fresh: dict) -> dict:
        """The state saved in the checkpoint (model and optimiser restored), or `fresh` when there is none."""
        saved = load_checkpoint(self.path, self.config, model, optimizer, self.kind, self.data, self.start)
        return fresh if saved is None else saved

    def save(self, model, optimizer, state: dict) -> None:
        """Write settings, fingerprints, weights, optimiser and `state` through a temporary file (atomic); with several
        ranks (whose weights are the same), rank 0 writes and the others wait for it."""
        if world()[0] == 0:
            with atomic_path(self.path) as temporary:
                torch.save({"config": self.config.as_dict(), "data": self.data, "start": self.start,
                            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, temporary)
        barrier()


def training_step(model, forward, optimizer: torch.optim.Optimizer, input_ids: torch.Tensor, mask: torch.Tensor,
                  loss_of, learning_rate: float, precision: str, grad_clip: float) -> float:
    """One optimiser step at `learning_rate`: forward under `precision`, `loss_of(float32 logits)`, clip, step; the loss."""
    device = next(model.parameters()).device
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    with autocast(device, precision):
        logits = forward(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
    loss = loss_of(logits.float())
    optimiser_step(model, optimizer, loss, grad_clip)
    return loss.item()


def epoch_tokens(sequences: list[str], config: TrainConfig, epoch: int, background) -> list[list[int]]:
    """This epoch's token ids of every training chain: its start shifted (shift_start, seeded by epoch), then the
    first `max_residues` residues."""
    shift_rng = np.random.default_rng([config.seed, epoch, 2])
    return [encode(shift_start(s, config.start_shift, shift_rng, background)[:config.max_residues]) for s in sequences]


def train_epoch(model, forward, optimizer, tokens: list[list[int]], labels: np.ndarray, batches: list[np.ndarray],
                state: dict, config: TrainConfig, checkpoint: Checkpoint, total_steps: int,
                stop_at: int | None) -> tuple[float, int] | None:
    """Run the batches of one epoch from `state["step"]`: (loss summed over examples, examples), or None when it
    stopped at step `stop_at` (checkpoint written).

    A mid-epoch checkpoint keeps the loss summed so far (`epoch_loss`), so that a resumed epoch's loss covers all of it.
    """
    device = next(model.parameters()).device
    precision = resolve_precision(config.precision, device)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps_per_epoch = len(batches)
    offset = state["step"] % steps_per_epoch
    total, examples = state.pop("epoch_loss", (0.0, 0)) if offset else (0.0, 0)
    started = time.perf_counter()
    rank, size = world()
    for batch in batches[offset:]:
        local, factor = rank_share(batch, rank, size) if size > 1 else (batch, 1.0)  # one process: the whole batch
        input_ids, mask = pad_batch([tokens[i] for i in local])
        targets = torch.as_tensor(labels[local], device=device)
        loss = training_step(model, forward, optimizer, input_ids, mask, lambda logits: loss_fn(logits, targets) * factor,
                             learning_rate_at(state["step"], total_steps, config), precision, config.grad_clip)
        state["step"] += 1
        state["train_tokens"] += int(summed(float(mask.sum())) if size > 1 else mask.sum())
        total += summed(loss * len(batch) / size) if size > 1 else loss * len(batch)
        examples += len(batch)
        mid_epoch = state["step"] % steps_per_epoch != 0
        stopping = stop_at is not None and state["step"] >= stop_at and mid_epoch
        if mid_epoch and (stopping or state["step"] % config.checkpoint_every == 0):
            state["train_seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            checkpoint.save(model, optimizer, {**state, "epoch_loss": (total, examples)})
        if stopping:
            return None
    state["train_seconds"] += time.perf_counter() - started
    return total, examples


def evaluate_epoch(model, epoch_loss: tuple[float, int], state: dict, config: TrainConfig, total_steps: int,
                   steps_per_epoch: int, eval_sequences: list[str], eval_labels: np.ndarray, evaluate) -> dict:
    """The record of the epoch that just ended: its mean loss, learning rate and seconds, and `evaluate`'s scores."""
    total, examples = epoch_loss
    record = {"epoch": state["step"] // steps_per_epoch, "step": state["step"], "train_loss": total / max(examples, 1),
              "learning_rate": learning_rate_at(state["step"] - 1, total_steps, config),
              "train_seconds": state["train_seconds"]}
    if evaluate is not None:
        logits = predict_logits(model, eval_sequences, config.max_residues, fused_kernels=config.fused_kernels)
        record.update(evaluate(logits, eval_labels))
        model.train()
    return record


def train(model, train_sequences: list[str], train_labels: np.ndarray, eval_sequences: list[str], eval_labels: np.ndarray,
          config: TrainConfig, checkpoint_dir: str | os.PathLike, evaluate=None, stop_after_steps: int | None = None) -> dict:
    """Fine-tune the whole model; resumes from `checkpoint_dir/last.pt` when it was written with the same config.

    `evaluate(logits, labels) -> dict` is called on the evaluation set after every epoch; each epoch prints one line.
    `stop_after_steps` ends this call early (checkpoint written), as a kill would; the next call resumes. Returns
    {"history": [...per epoch...], "train_tokens": n, "train_seconds": s, "step": n, "resumed_from_step": k,
    "compiled": whether the steps ran compiled (`config.torch_compile`, unless compilation failed: a warning says so)}.
    """
    if pooling_of(model) != config.pooling:
        raise ValueError(f"the model's head reads pooling {pooling_of(model)!r} but the config says {config.pooling!r}")
    device = next(model.parameters()).device
    lengths = np.array([min(len(s), config.max_residues) + 2 for s in train_sequences])
    steps_per_epoch = len(length_batches(lengths, config.max_tokens, np.random.default_rng(0)))
    total_steps = steps_per_epoch * config.epochs
    optimizer = adamw(model, config.learning_rate, config.weight_decay, fused=config.fused_kernels)
    checkpoint = Checkpoint(Path(checkpoint_dir) / "last.pt", config, "training",
                            data_fingerprint(train_sequences, train_labels), weights_fingerprint(model))
    state = checkpoint.resume(model, optimizer, {"step": 0, "history": [], "train_tokens": 0, "train_seconds": 0.0})
    if state["step"]:
        print(f"resuming from {checkpoint.path} at step {state['step']} of {total_steps}")
    resumed_from = state["step"]
    stop_at = None if stop_after_steps is None else resumed_from + stop_after_steps
    background = residue_frequencies(train_sequences) if config.start_shift else None  # for shift_start only
    outcome = {"steps_per_epoch": steps_per_epoch, "resumed_from_step": resumed_from}
    with (attention_implementation(model, attention_kernel(resolve_precision(config.precision, device), device)),
          fused_gelu(config.fused_kernels)):
        model.train()
        if world()[1] > 1:  # DistributedDataParallel all-reduces the gradients of every rank's share of a batch
            forward = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=True)
        else:
            forward = CompiledForward(model) if config.torch_compile else model
        while state["step"] < total_steps:
            epoch = state["step"] // steps_per_epoch
            batches = length_batches(lengths, config.max_tokens, np.random.default_rng([config.seed, epoch]))
            tokens = epoch_tokens(train_sequences, config, epoch, background)
            torch.manual_seed(config.seed * 100_003 + epoch)
            epoch_loss = train_epoch(model, forward, optimizer, tokens, train_labels, batches, state, config, checkpoint,
                                     total_steps, stop_at)
            if epoch_loss is None:
                return {**state, **outcome, "stopped_early": True}
            record = evaluate_epoch(model, epoch_loss, state, config, total_steps, steps_per_epoch, eval_sequences,
                                    eval_labels, evaluate)
            state["history"].append(record)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}, flush=True)
            checkpoint.save(model, optimizer, state)
    model.eval()
    return {**state, **outcome, "compiled": isinstance(forward, CompiledForward) and forward.compiled is not None}


def outcome_figures(outcome: dict) -> dict:
    """A `train` outcome as result-file keys: per-epoch history, steps, seconds and fine-tuning tokens/s."""
    return {"history": outcome["history"], "steps": outcome["step"], "resumed_from_step": outcome["resumed_from_step"],
            "train_seconds": outcome["train_seconds"],
            "train_tokens_per_s": outcome["train_tokens"] / max(outcome["train_seconds"], 1e-9)}
