"""ESM-2 with a linear classification head: pretrained from the hub or a folder, or the same architecture randomly initialised."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import EsmConfig, EsmForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from .alphabet import ESM2_VOCAB, MASK_ID, PAD_ID

HUB_ID = "facebook/esm2_t6_8M_UR50D"
POOLINGS = ("cls", "mean")
INFO_FILE = "kn_model_info.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
RANDOM_INIT_BANNER = (
    "RANDOM INIT: pretrained ESM-2 weights could not be loaded, so this run uses the ESM-2 architecture "
    "with randomly initialised weights (seed {seed}). Its numbers are NOT those of pretrained ESM-2."
)


class EsmClassifier(EsmForSequenceClassification):
    """`EsmForSequenceClassification` whose head reads the <cls> state (the stock head, the paper's) or, with
    `config.classifier_pooling` "mean", the mean of the non-padding states; same weights."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None, **kwargs):
        """Logits from the pooled final states; the stock forward when pooling is `cls`."""
        if pooling_of(self) == "cls":
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                   inputs_embeds=inputs_embeds, labels=labels, **kwargs)
        outputs = self.esm(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           inputs_embeds=inputs_embeds, **kwargs)
        states = outputs[0]
        weights = (torch.ones(states.shape[:2], device=states.device) if attention_mask is None else attention_mask)
        weights = weights.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        logits = self.classifier(pooled.unsqueeze(1))  # the stock head reads position 0 of what it is given
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits.float(), labels.to(logits.device))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


def pooling_of(model: EsmForSequenceClassification) -> str:
    """What the classification head reads: 'cls' (also for folders saved before pooling was a setting) or 'mean'."""
    return getattr(model.config, "classifier_pooling", "cls")


def set_pooling(model: EsmForSequenceClassification, pooling: str) -> None:
    """Record `pooling` in the model's config (saved with it by save_pretrained)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    model.config.classifier_pooling = pooling


def resolve_pooling(pooling: str, init: str) -> str:
    """`auto`: the paper's <cls> head on pretrained weights, the mean of all positions on random init (where
    the <cls> state has learned nothing in pretraining; measured +4.7 points of test accuracy here)."""
    if pooling == "auto":
        return "cls" if init == "pretrained" else "mean"
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'auto' or one of {POOLINGS}, not {pooling!r}")
    return pooling


class CheckpointError(ValueError):
    """A model folder that is missing files or holds unreadable weights."""


@dataclass
class ModelInfo:
    """Where a model's weights came from: `init` is 'pretrained' or 'random'."""

    init: str
    source: str
    seed: int | None = None
    fine_tuned: bool = False
    training: dict | None = None  # what save_classifier recorded besides the source, e.g. max_residues
    warm_start: str | None = None  # e.g. an MLM pass on the training chains before fine-tuning (random init only)
    pooling: str = "cls"  # what the classification head reads: the <cls> state, or the mean or max over positions

    def as_dict(self) -> dict:
        """Plain dict for result files."""
        return asdict(self)


def select_device(preferred: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if preferred == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preferred.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preferred!r} asked for, but torch sees no CUDA GPU")
    return torch.device(preferred)


PRECISIONS = ("auto", "bf16", "fp32")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")  # x86 AMX / AVX-512, ARM (torch.cpu.get_capabilities)
BF16_UNITS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("sve_bf16", "SVE-BF16"), ("bf16", "BF16"))


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 matmuls natively: CUDA with bf16, or a CPU with AMX/AVX512-BF16 (ARM: BF16).

    Elsewhere bf16 is emulated: on an AVX2-only CPU a bf16 matmul runs about 100x slower than fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(flag, False) for flag in NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """`auto`: bf16 autocast where the device computes bf16 natively, else fp32; `bf16` and `fp32` as asked
    (bf16 on a device without it warns: it is correct but far slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        warnings.warn(f"precision bf16 asked for on {device_name(device)}, which has no native bf16: it is emulated, "
                      "far slower than fp32 (use precision='auto' or 'fp32')", RuntimeWarning, stacklevel=2)
    return precision


def device_name(device: torch.device | str) -> str:
    """The device in words, for result files and notebooks: the GPU's name, or the CPU's with its vector ISA and its
    strongest native bf16 unit, if any (e.g. `Intel Xeon (AVX512, AMX-BF16)`): the two set its training speed."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    capabilities = torch.cpu.get_capabilities()
    bf16 = next((label for flag, label in BF16_UNITS if capabilities.get(flag)), None)  # the strongest bf16 unit
    return f"{capabilities.get('cpu_name') or 'CPU'} ({torch.backends.cpu.get_cpu_capability()}{f', {bf16}' if bf16 else ''})"


# The published ESM-2 shapes: (layers, hidden size, attention heads, FFN size), by hub id.
ESM2_SHAPES = {
    "facebook/esm2_t6_8M_UR50D": (6, 320, 20, 1280),
    "facebook/esm2_t12_35M_UR50D": (12, 480, 20, 1920),
    "facebook/esm2_t30_150M_UR50D": (30, 640, 20, 2560),
    "facebook/esm2_t33_650M_UR50D": (33, 1280, 20, 5120),
    "facebook/esm2_t36_3B_UR50D": (36, 2560, 40, 10240),
    "facebook/esm2_t48_15B_UR50D": (48, 5120, 40, 20480),
}
ARCHITECTURE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def esm2_config(num_labels: int = 6, shape: str = HUB_ID, classes: list[str] | None = None, **overrides) -> EsmConfig:
    """Configuration of the ESM-2 model `shape` (a hub id of ESM2_SHAPES; the 8M model by default) with a class head
    of `num_labels` classes (named `classes` when given); `overrides` set any EsmConfig field, e.g. a smaller width."""
    if shape not in ESM2_SHAPES:
        raise ValueError(f"unknown ESM-2 shape {shape!r}; known: {', '.join(ESM2_SHAPES)} (or give the sizes in `architecture`)")
    layers, hidden, heads, ffn = ESM2_SHAPES[shape]
    settings = dict(
        vocab_size=len(ESM2_VOCAB), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn, hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        max_position_embeddings=1026, position_embedding_type="rotary", layer_norm_eps=1e-5,
        emb_layer_norm_before=False, token_dropout=True, pad_token_id=PAD_ID, mask_token_id=MASK_ID,
        num_labels=num_labels,
    )
    settings.update(overrides)
    if settings["hidden_size"] % settings["num_attention_heads"]:
        raise ValueError(f"hidden_size {settings['hidden_size']} is not a multiple of num_attention_heads "
                         f"{settings['num_attention_heads']}")
    settings.update(head_labels(classes))
    return EsmConfig(**settings)


def head_labels(classes: list[str] | None) -> dict:
    """The config fields that name a head's classes (num_labels, id2label, label2id); none without `classes`."""
    if classes is None:
        return {}
    return {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
            "label2id": {name: label for label, name in enumerate(classes)}}


def class_names_of(model) -> list[str]:
    """The class names a model was trained on (its config's id2label), or EC classes 1-6 for a 6-class model saved
    without names (transformers' LABEL_i placeholders)."""
    names = [str(model.config.id2label[label]) for label in range(model.config.num_labels)]
    if all(name == f"LABEL_{label}" for label, name in enumerate(names)) and len(names) == 6:
        return [str(c) for c in range(1, 7)]
    return names


def random_classifier(config: EsmConfig, seed: int, attn_implementation: str = "sdpa", pooling: str = "cls") -> EsmClassifier:
    """A randomly initialised classifier of `config`, drawn with the RNG seeded by `seed` (global RNG restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EsmClassifier(config)
    model.set_attn_implementation(attn_implementation)
    set_pooling(model, pooling)
    return model


def load_classifier(init: str = "auto", source: str | os.PathLike = HUB_ID, seed: int = 0, num_labels: int = 6,
                    attn_implementation: str = "sdpa", init_std: float = 0.02, pooling: str = "cls",
                    classes: list[str] | None = None, architecture: dict | None = None) -> tuple[EsmClassifier, ModelInfo]:
    """ESM-2 with a fresh classification head: `init` = auto | pretrained | random.

    `source` is a hub id or a local folder in the hub layout. `auto` takes the pretrained weights when they
    load and otherwise falls back to random init with a loud warning. `init_std` is the standard deviation
    of the random weights (transformers' default 0.02); it only matters for random init. `pooling` is what
    the head reads: cls | mean | auto (cls on pretrained weights, mean on random init). `classes` names the head's
    classes (their number replaces `num_labels`). `architecture` (random init only) overrides the shape of `source`,
    e.g. {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256}.
    """
    resolve_pooling(pooling, "random")  # refuse a bad value before any download
    architecture = dict(architecture or {})
    unknown = sorted(set(architecture) - set(ARCHITECTURE_KEYS))
    if unknown:
        raise ValueError(f"architecture: unknown key(s) {unknown}; use {list(ARCHITECTURE_KEYS)}")
    if architecture and init != "random":
        raise ValueError("architecture overrides the shape of randomly initialised weights only; set init='random'")
    if init not in {"auto", "pretrained", "random"}:
        raise ValueError(f"init must be 'auto', 'pretrained' or 'random', not {init!r}")
    if init in {"auto", "pretrained"}:
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the new head is initialised reproducibly too
                model = EsmClassifier.from_pretrained(
                    str(source), **({"num_labels": num_labels} | head_labels(classes)), attn_implementation=attn_implementation
                )
            set_pooling(model, resolve_pooling(pooling, "pretrained"))
            return model, ModelInfo("pretrained", str(source), seed, pooling=pooling_of(model))
        except (OSError, ValueError) as error:
            if init == "pretrained":
                raise RuntimeError(f"could not load pretrained weights from {source!r}: {error}") from error
            message = RANDOM_INIT_BANNER.format(seed=seed) + f" (loading {source!r} failed: {str(error).splitlines()[0]})"
            warnings.warn(message, stacklevel=2)
            print("!" * 100 + "\n" + message + "\n" + "!" * 100)
    shape = str(source) if str(source) in ESM2_SHAPES else HUB_ID
    model = random_classifier(esm2_config(num_labels, shape, classes, initializer_range=init_std, **architecture), seed,
                              attn_implementation, resolve_pooling(pooling, "random"))
    sizes = "".join(f",{key}={value}" for key, value in architecture.items())
    return model, ModelInfo("random", f"random-init:{shape}-architecture(std={init_std}{sizes})", seed, pooling=pooling_of(model))


def save_classifier(model: EsmForSequenceClassification, folder: str | os.PathLike, info: ModelInfo, extra: dict | None = None,
                    card: dict | None = None) -> Path:
    """`save_pretrained` into a temporary folder, then rename, with the model's provenance in kn_model_info.json and a
    model card (README.md, model_card.model_card) from `card`'s `data` and `metrics` (either may be absent)."""
    import shutil
    import tempfile

    from .model_card import CARD_FILE, model_card
    from .training import weights_fingerprint

    from .ranks import barrier, is_main

    folder = Path(folder)
    if not is_main():  # with several ranks, rank 0 saves (their weights are the same) while the others wait
        barrier()
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(temporary)
        (temporary / "vocab.txt").write_text("\n".join(ESM2_VOCAB) + "\n")
        (temporary / INFO_FILE).write_text(json.dumps({**info.as_dict(), **(extra or {})}, indent=2) + "\n")
        (temporary / CARD_FILE).write_text(model_card(info.as_dict(), class_names_of(model), (extra or {}).get("max_residues"),
                                                      **(card or {}), weights_sha256=weights_fingerprint(model)))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(temporary, folder)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    barrier()
    return folder


def load_finetuned(folder: str | os.PathLike, device: torch.device | str = "cpu",
                   attn_implementation: str = "sdpa") -> tuple[EsmClassifier, ModelInfo]:
    """A fine-tuned classifier saved by `save_classifier`, in eval mode, with the pooling it was trained with;
    a clear error when the folder is incomplete."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise CheckpointError(f"{folder}: no config.json; not a saved model folder (run notebook 02, notebooks/02_finetune.py, first)")
    if not any((folder / name).exists() for name in WEIGHT_FILES):
        raise CheckpointError(f"{folder}: config.json present but no weights ({' or '.join(WEIGHT_FILES)})")
    try:
        model = EsmClassifier.from_pretrained(folder, attn_implementation=attn_implementation)
    except Exception as error:  # safetensors/torch raise several types for damaged files
        raise CheckpointError(f"{folder}: weights could not be read ({type(error).__name__}: {error})") from None
    info_path = folder / INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.exists() else {"init": "unknown", "source": str(folder)}
    fields = {key: info.pop(key, None) for key in ("init", "source", "seed", "warm_start")}
    info.pop("fine_tuned", None)
    info.pop("pooling", None)
    info.pop("training", None)
    return model.to(device).eval(), ModelInfo(fine_tuned=True, training=info, pooling=pooling_of(model), **fields)


HEAD_INPUTS = {"mean": "the mean state of all positions"}


def weights_banner(info: ModelInfo) -> str:
    """A Markdown banner saying which weights a run used; random init is shouted so no reader misses it."""
    head = HEAD_INPUTS.get(info.pooling)
    if info.init == "pretrained":
        return f"**Weights: pretrained ESM-2** from `{info.source}`" + (
            f"; the head reads {head} (`pooling={info.pooling}`), not the paper's <cls> state." if head else ".")
    return ("<div style='border:3px solid #c00;padding:8px;background:#fee'><b>⚠ RANDOM INIT.</b> Pretrained ESM-2 "
            f"weights were not available, so this run fine-tunes the ESM-2 <i>architecture</i> from random weights "
            f"(seed {info.seed}, source <code>{info.source}</code>)"
            + (f", its encoder warmed up by a short masked-language-model pass on this run's training chains "
               f"(<code>{info.warm_start}</code>)" if info.warm_start else "")
            + (f". Its head reads {head} (<code>pooling={info.pooling}</code>), not the <cls> state "
               "the paper's head reads" if head else "")
            + ". Its numbers are not those of pretrained ESM-2; the paper's 0.913 needs the pretrained weights.</div>")
