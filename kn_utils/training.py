"""Fine-tuning: length-bucketed batches, AdamW with warm-up, per-epoch evaluation and resumable checkpoints."""
from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .alphabet import MASK_ID, encode, pad_batch, residue_frequencies
from .attention import attention_implementation, attention_kernel
from .kernels import fused_gelu
from .model import PRECISIONS, pooling_of, resolve_precision
from .provenance import atomic_path


CLASS_WEIGHTINGS = ("none", "balanced", "sqrt")
MAX_START_SHIFT = 20  # residues a chain's start moves at most (shift_start)
SHIFT_MIN_RESIDUES = 30  # a chain is never cut below this many residues (the dataset's shortest)


@dataclass
class TrainConfig:
    """Every knob of the fine-tuning run; stored in the checkpoint so a resume must use the same ones."""

    epochs: int = 6
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    schedule: str = "cosine"  # constant | cosine (after warm-up, down to min_lr_ratio * learning_rate)
    min_lr_ratio: float = 0.1
    max_tokens: int = 4096  # padded tokens per batch
    max_residues: int = 256  # residues the model sees per sequence
    crop: str = "random"  # training window: random | first (evaluation always takes the first residues)
    class_weighting: str = "none"  # none | balanced | sqrt: cross-entropy weights inverse to class frequency (or its root)
    label_smoothing: float = 0.0  # share of each target spread over all classes (torch's CrossEntropyLoss)
    mask_fraction: float = 0.0  # training residues hidden behind <mask>, drawn afresh each epoch (augmentation)
    start_shift: float = 0.0  # > 0: half the chains start elsewhere each epoch, by a geometric shift of this mean (shift_start)
    grad_clip: float = 1.0
    precision: str = "auto"  # bf16 | fp32 autocast of the forward pass; auto: bf16 where the device has it natively
    seed: int = 0
    checkpoint_every: int = 100  # optimiser steps between checkpoints
    warm_start: str = "none"  # what the encoder started from (pretraining.MLMConfig.describe()); a resume must match
    pooling: str = "cls"  # what the classification head reads (model.pooling_of); must be the model's
    torch_compile: bool = False  # compile the training step (torch.compile, dynamic shapes): 1.2x at 256 residues on CPU
    fused_kernels: bool = True  # torch's fused GELU and AdamW (kernels.fused_gelu, adamw): the same maths, faster
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights (per step) and return it as the model

    def __post_init__(self) -> None:
        """Refuse an unknown window policy or an out-of-range fraction now rather than train with a silent default."""
        if self.crop not in {"random", "first"}:
            raise ValueError(f"crop must be 'random' or 'first', not {self.crop!r}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting must be one of {CLASS_WEIGHTINGS}, not {self.class_weighting!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        check_schedule(self.schedule)
        for name in ("mask_fraction", "label_smoothing", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {getattr(self, name)!r}")
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


def length_batches(lengths: np.ndarray, max_tokens: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Group indices of similar length so a padded batch holds at most `max_tokens` tokens.

    With `rng`, ties are broken at random and batch order shuffled (training); without, order is fixed (evaluation).
    """
    noise = rng.random(len(lengths)) if rng is not None else np.arange(len(lengths)) / max(len(lengths), 1)
    order = np.lexsort((noise, lengths))
    batches, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * lengths[order[stop]] <= max_tokens:
            stop += 1
        batches.append(order[start:stop])
        start = stop
    if rng is not None:
        rng.shuffle(batches)
    return batches


def autocast(device: torch.device, precision: str):
    """bf16 autocast context for `precision='bf16'`, a no-op for 'fp32' (callers resolve `auto` first: resolve_precision)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"autocast takes a resolved precision, 'bf16' or 'fp32', not {precision!r}")
    return nullcontext()


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


def crop_window(sequence: str, max_residues: int, rng: np.random.Generator | None) -> str:
    """A window of at most `max_residues`: at a random offset with `rng`, else the first residues."""
    if len(sequence) <= max_residues:
        return sequence
    start = int(rng.integers(0, len(sequence) - max_residues + 1)) if rng is not None else 0
    return sequence[start : start + max_residues]


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


def mask_residues(tokens: list[list[int]], fraction: float, rng: np.random.Generator) -> list[list[int]]:
    """Hide each residue behind <mask> with probability `fraction` (never <cls>/<eos>), so that the classifier
    cannot lean on any single residue and answers alike for close homologs."""
    if fraction == 0.0:
        return tokens
    masked = []
    for ids in tokens:
        ids = np.array(ids)
        ids[1:-1][rng.random(len(ids) - 2) < fraction] = MASK_ID
        masked.append(ids.tolist())
    return masked


def learning_rate_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up to `learning_rate`, then constant or cosine decay."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.learning_rate
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def class_weights(labels: np.ndarray, num_labels: int, scheme: str) -> torch.Tensor | None:
    """Cross-entropy weights n / (k * n_c) for `balanced`, proportional to 1 / sqrt(n_c) for `sqrt`, None for `none`.

    Both weightings average 1 over the training examples, so the loss keeps its scale and the learning rate its meaning.
    """
    if scheme == "none":
        return None
    counts = np.maximum(np.bincount(labels, minlength=num_labels).astype(float), 1)
    if scheme == "balanced":
        return torch.tensor(len(labels) / (num_labels * counts), dtype=torch.float32)
    if scheme == "sqrt":
        return torch.tensor(len(labels) / (np.sqrt(counts).sum() * np.sqrt(counts)), dtype=torch.float32)
    raise ValueError(f"class_weighting must be one of {CLASS_WEIGHTINGS}, not {scheme!r}")


@torch.inference_mode()
def predict_logits(model, sequences: list[str], max_residues: int, max_tokens: int = 8192,
                   precision: str = "fp32", progress: bool = False, fused_kernels: bool = True) -> np.ndarray:
    """Class logits for each sequence (first `max_residues` residues), batched by length; float32 numpy.

    `fused_kernels`: GELU in torch's one fused kernel (kernels.fused_gelu: the same function; benchmarks/inference.py).
    """
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    tokens = [encode(sequence, max_residues) for sequence in sequences]
    lengths = np.array([len(t) for t in tokens])
    logits = np.zeros((len(sequences), model.config.num_labels), dtype=np.float32)
    with attention_implementation(model, attention_kernel(precision, device)), fused_gelu(fused_kernels):
        for batch in tqdm(length_batches(lengths, max_tokens), disable=not progress, desc="predict"):
            input_ids, mask = pad_batch([tokens[i] for i in batch])
            with autocast(device, precision):
                out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            logits[batch] = out.float().cpu().numpy()
    model.train(was_training)
    return logits


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


def weight_average(model, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of `model`'s weights (torch's AveragedModel), or None when `decay` is 0."""
    if decay == 0.0:
        return None
    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay))


def load_checkpoint(path: Path, config, model, optimizer, kind: str, data: str, averaged=None,
                    start: str | None = None) -> dict | None:
    """Restore model, optimiser (and the weight average `averaged`) from `path`; return its saved state, None when absent.

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
    if {**type(config)().as_dict(), **saved["config"]} != config.as_dict():
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
    if averaged is not None:
        averaged.load_state_dict(saved["averaged"])
    return saved["state"]


def _save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temporary file so that a kill mid-write leaves the previous checkpoint intact."""
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def train(model, train_sequences: list[str], train_labels: np.ndarray, eval_sequences: list[str], eval_labels: np.ndarray,
          config: TrainConfig, checkpoint_dir: str | os.PathLike, evaluate=None, progress: bool = True,
          stop_after_steps: int | None = None) -> dict:
    """Fine-tune the whole model; resumes from `checkpoint_dir/last.pt` when it was written with the same config.

    `evaluate(logits, labels) -> dict` is called on the evaluation set after every epoch. With `config.ema_decay`,
    the moving average of the weights is what each epoch scores (the live weights' scores are kept as `live_*`)
    and what `model` holds at the end. `stop_after_steps`
    ends this call early (checkpoint written), as a kill would; the next call resumes. Returns
    {"history": [...per epoch...], "train_tokens": n, "train_seconds": s, "step": n, "resumed_from_step": k,
    "compiled": whether the steps ran compiled (`config.torch_compile`, unless compilation failed: a warning says so)}.
    """
    if pooling_of(model) != config.pooling:
        raise ValueError(f"the model's head reads pooling {pooling_of(model)!r} but the config says {config.pooling!r}")
    device = next(model.parameters()).device
    precision = resolve_precision(config.precision, device)
    checkpoint_path = Path(checkpoint_dir) / "last.pt"
    lengths = np.array([min(len(s), config.max_residues) + 2 for s in train_sequences])
    background = residue_frequencies(train_sequences) if config.start_shift else None  # for shift_start only
    steps_per_epoch = len(length_batches(lengths, config.max_tokens, np.random.default_rng(0)))
    total_steps = steps_per_epoch * config.epochs
    weights = class_weights(train_labels, model.config.num_labels, config.class_weighting)
    loss_fn = torch.nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device),
                                        label_smoothing=config.label_smoothing)
    optimizer = adamw(model, config.learning_rate, config.weight_decay, fused=config.fused_kernels)
    state = {"step": 0, "history": [], "train_tokens": 0, "train_seconds": 0.0}
    fingerprint, start = data_fingerprint(train_sequences, train_labels), weights_fingerprint(model)
    averaged = weight_average(model, config.ema_decay)
    saved_state = load_checkpoint(checkpoint_path, config, model, optimizer, "training", fingerprint, averaged, start)
    if saved_state is not None:
        state = saved_state
        print(f"resuming from {checkpoint_path} at step {state['step']} of {total_steps}")
    resumed_from = state["step"]

    def checkpoint(epoch_loss: tuple[float, int] | None = None) -> dict:
        """Everything a killed run needs to resume: settings, data fingerprint, weights, optimiser, average, state, and
        mid-epoch the loss summed so far (`epoch_loss`), so that a resumed epoch's train_loss covers all of it."""
        return {"config": config.as_dict(), "data": fingerprint, "start": start, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "averaged": None if averaged is None else averaged.state_dict(),
                "state": state if epoch_loss is None else {**state, "epoch_loss": epoch_loss}}
    with attention_implementation(model, attention_kernel(precision, device)), fused_gelu(config.fused_kernels):
        model.train()
        forward = CompiledForward(model) if config.torch_compile else model
        bar = tqdm(total=total_steps, initial=state["step"], disable=not progress, desc="fine-tune")
        while state["step"] < total_steps:
            epoch, offset = divmod(state["step"], steps_per_epoch)
            epoch_rng = np.random.default_rng([config.seed, epoch])
            shift_rng = np.random.default_rng([config.seed, epoch, 2])
            crops = [crop_window(shift_start(s, config.start_shift, shift_rng, background), config.max_residues,
                                 epoch_rng if config.crop == "random" else None) for s in train_sequences]
            tokens = mask_residues([encode(s) for s in crops], config.mask_fraction, np.random.default_rng([config.seed, epoch, 1]))
            batches = length_batches(lengths, config.max_tokens, epoch_rng)  # unshifted: every epoch has steps_per_epoch
            torch.manual_seed(config.seed * 100_003 + epoch)
            started = time.perf_counter()
            epoch_loss, epoch_examples = state.pop("epoch_loss", (0.0, 0)) if offset else (0.0, 0)  # a resume's share
            for batch in batches[offset:]:
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(state["step"], total_steps, config)
                input_ids, mask = pad_batch([tokens[i] for i in batch])
                labels = torch.as_tensor(train_labels[batch], device=device)
                with autocast(device, precision):
                    logits = forward(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                loss = loss_fn(logits.float(), labels)
                optimiser_step(model, optimizer, loss, config.grad_clip)
                if averaged is not None:
                    averaged.update_parameters(model)
                state["step"] += 1
                state["train_tokens"] += int(mask.sum())
                epoch_loss += loss.item() * len(batch)
                epoch_examples += len(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{epoch_loss / epoch_examples:.3f}", epoch=epoch + 1)
                stopping = (stop_after_steps is not None and state["step"] - resumed_from >= stop_after_steps
                            and state["step"] % steps_per_epoch != 0)
                if (stopping or state["step"] % config.checkpoint_every == 0) and state["step"] % steps_per_epoch:
                    state["train_seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    _save_checkpoint(checkpoint_path, checkpoint((epoch_loss, epoch_examples)))
                if stopping:
                    bar.close()
                    return {**state, "steps_per_epoch": steps_per_epoch, "resumed_from_step": resumed_from, "stopped_early": True}
            state["train_seconds"] += time.perf_counter() - started
            record = {"epoch": epoch + 1, "step": state["step"], "train_loss": epoch_loss / max(epoch_examples, 1),
                      "learning_rate": learning_rate_at(state["step"] - 1, total_steps, config),
                      "train_seconds": state["train_seconds"]}
            if evaluate is not None:
                scores = evaluate(predict_logits(model, eval_sequences, config.max_residues,
                                                 fused_kernels=config.fused_kernels), eval_labels)
                if averaged is not None:  # the average is the model this run returns; the live weights are kept beside it
                    record.update({f"live_{name}": value for name, value in scores.items()})
                    scores = evaluate(predict_logits(averaged.module, eval_sequences, config.max_residues,
                                                     fused_kernels=config.fused_kernels), eval_labels)
                record.update(scores)
                model.train()
            state["history"].append(record)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
            _save_checkpoint(checkpoint_path, checkpoint())
        bar.close()
        if averaged is not None:
            model.load_state_dict(averaged.module.state_dict())
        model.eval()
        return {**state, "steps_per_epoch": steps_per_epoch, "resumed_from_step": resumed_from,
                "compiled": isinstance(forward, CompiledForward) and forward.compiled is not None}
