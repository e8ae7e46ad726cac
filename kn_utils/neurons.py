"""Addressing the neurons of every layer, and hooks that read or gate their outputs.

Three families of units, chosen by name (`family`, e.g. "qkv", "ffn" or "qkv+ffn+heads"):
- `qkv` (the paper's): one output unit of a query, key or value projection (`EsmSelfAttention.query/key/value`);
  zeroing its weight row and bias entry is the same as zeroing its output at every position;
- `ffn` (Dai et al.'s knowledge neurons): one intermediate unit of a layer's feed-forward block, after its GELU
  (`EsmIntermediate`'s output), which the block's output projection reads;
- `heads`: one attention head, its whole output (the head's slice of `EsmSelfAttention`'s context) as one unit.
A gate on a unit's output is how we ablate, scale or attribute units without touching the weights. Flat ids run
layer-major, then the family's blocks in the order a forward pass computes them (query, key, value; head; ffn), then
unit: the qkv family's ids are the study's ids whatever else is scored beside it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

PROJECTIONS = ("query", "key", "value")
# family -> its block kinds within a layer, in the order a forward pass computes them (recording relies on it)
FAMILIES = {"qkv": PROJECTIONS, "heads": ("head",), "ffn": ("ffn",)}
FAMILY_ATTRIBUTE = "kn_neuron_family"  # where use_family leaves a model's family for NeuronIndex.of


def parse_family(family: str) -> tuple[str, ...]:
    """The families of a spec like "qkv+ffn", in FAMILIES order; an unknown or empty one refused."""
    names = [name.strip() for name in str(family).split("+")]
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise ValueError(f"neuron family {family!r}: unknown {unknown}; use {' | '.join(FAMILIES)} or a '+' combination")
    return tuple(name for name in FAMILIES if name in names)


@dataclass(frozen=True)
class NeuronIndex:
    """The (layer, kind, unit) <-> flat id map of a model's units of one family, derived from its modules.

    `units` is the q/k/v width (the hidden size), `ffn_units` the feed-forward width, `heads` the head count.
    """

    n_layers: int
    units: int
    ffn_units: int = 0
    heads: int = 0
    family: str = "qkv"

    @classmethod
    def of(cls, model, family: str | None = None) -> "NeuronIndex":
        """Read the sizes off a loaded ESM model (8M, 35M, 150M alike); `family` defaults to the one `use_family` set on
        the model, else qkv."""
        layers = attention_layers(model)
        widths = {getattr(layer, name).out_features for layer in layers for name in PROJECTIONS}
        if len(widths) != 1:
            raise ValueError(f"projections of unequal width {sorted(widths)}; not an ESM-2 attention stack")
        family = "+".join(parse_family(family or getattr(model, FAMILY_ATTRIBUTE, "qkv")))
        return cls(len(layers), widths.pop(), model.config.intermediate_size, model.config.num_attention_heads, family)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The block kinds of one layer, in flat-id order (query, key, value, head, ffn: those of the family)."""
        return tuple(kind for name in parse_family(self.family) for kind in FAMILIES[name])

    def width(self, kind: str) -> int:
        """Units of one block of `kind`."""
        return {"ffn": self.ffn_units, "head": self.heads}.get(kind, self.units)

    @property
    def widths(self) -> list[int]:
        """Units of every block, in flat-id order (layer-major)."""
        return [self.width(kind) for _ in range(self.n_layers) for kind in self.kinds]

    @property
    def layer_size(self) -> int:
        """Units per layer."""
        return sum(self.width(kind) for kind in self.kinds)

    @property
    def size(self) -> int:
        """Number of units: layers x the family's units per layer (6 x 3 x 320 = 5,760 for qkv at 8M)."""
        return self.n_layers * self.layer_size

    def flat(self, layer: int, projection: str, unit: int) -> int:
        """Flat id of (layer, kind, unit)."""
        kinds = self.kinds
        return layer * self.layer_size + sum(self.width(k) for k in kinds[:kinds.index(projection)]) + unit

    def address(self, flat_id: int) -> tuple[int, str, int]:
        """(layer, kind, unit) of a flat id."""
        layer, rest = divmod(int(flat_id), self.layer_size)
        for kind in self.kinds:
            if rest < self.width(kind):
                return layer, kind, rest
            rest -= self.width(kind)
        raise IndexError(f"neuron {flat_id} beyond the {self.size} of this index")

    def name(self, flat_id: int) -> str:
        """The study's one spelling of a unit: 'L2.key.117', 'L2.ffn.900', 'L2.head.5' (layer, kind, unit)."""
        layer, projection, unit = self.address(flat_id)
        return f"{block_name(layer, projection)}.{unit}"

    def names(self, flat_ids) -> list[str]:
        """`name` of each id, in order."""
        return [self.name(flat_id) for flat_id in flat_ids]

    def table(self) -> pd.DataFrame:
        """One row per unit: neuron (flat id), layer, projection (the block kind: query/key/value/ffn/head), unit."""
        kinds = np.repeat(np.tile(np.array(self.kinds), self.n_layers), self.widths)
        layers = np.repeat(np.arange(self.n_layers), self.layer_size)
        units = np.concatenate([np.arange(width) for width in self.widths])
        return pd.DataFrame({"neuron": np.arange(self.size), "layer": layers, "projection": kinds, "unit": units})

    def block_ranges(self) -> list[tuple[int, int]]:
        """(first id, end id) of every (layer, kind) block, in flat-id order."""
        ends = np.cumsum(self.widths)
        return list(zip((ends - np.array(self.widths)).tolist(), ends.tolist()))

    def split(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Cut a (..., size) tensor into per-block (..., width) views, in flat-id order."""
        return list(values.split(self.widths, dim=-1))


def use_family(model, family: str) -> None:
    """Make `family` the units every NeuronIndex.of(model), hook and gate of this module addresses by default."""
    setattr(model, FAMILY_ATTRIBUTE, "+".join(parse_family(family)))


def block_name(layer: int, projection: str) -> str:
    """One (layer, projection) block, e.g. 'L2.key': the prefix of its neurons' names (NeuronIndex.name)."""
    return f"L{layer}.{projection}"


def attention_layers(model) -> list[torch.nn.Module]:
    """The `EsmSelfAttention` module of every layer (holding query, key and value)."""
    backbone = getattr(model, "esm", model)
    return [layer.attention.self for layer in backbone.encoder.layer]


def projections(model) -> list[torch.nn.Linear]:
    """The query, key and value Linear modules of every layer, in flat-id order."""
    return [getattr(layer, name) for layer in attention_layers(model) for name in PROJECTIONS]


def unit_modules(model, index: NeuronIndex) -> list[tuple[torch.nn.Module, str]]:
    """(module whose output holds the block, kind) of every block of `index`, in flat-id order."""
    backbone = getattr(model, "esm", model)
    modules = []
    for layer in backbone.encoder.layer:
        for kind in index.kinds:
            module = {"ffn": layer.intermediate, "head": layer.attention.self}.get(kind)
            modules.append((module if module is not None else getattr(layer.attention.self, kind), kind))
    return modules


def _head_view(output: torch.Tensor, heads: int) -> torch.Tensor:
    """An attention context (batch, positions, heads x head size) as (batch, positions, heads, head size)."""
    return output.view(*output.shape[:-1], heads, output.shape[-1] // heads)


@contextlib.contextmanager
def gated(model, gates: torch.Tensor, offsets: torch.Tensor | None = None) -> Iterator[None]:
    """Multiply every unit's output by its entry of `gates` (then add its entry of `offsets`, when given) while the block
    runs; a head's gate multiplies its whole slice of the attention context.

    `gates` has shape (size,) for one gate per unit, or (batch, size) for one per example; `offsets` (size,) sets
    gated-off units to a constant (mean ablation; not for heads, whose output is no single number). The hooks are
    removed on exit, whatever happens inside.
    """
    index = NeuronIndex.of(model)
    if gates.shape[-1] != index.size:
        raise ValueError(f"gates have {gates.shape[-1]} entries, the model has {index.size} {index.family} units")
    if offsets is not None and "head" in index.kinds:
        raise ValueError("mean ablation (offsets) is not defined for attention heads; ablate heads by zeroing")
    handles = []
    try:
        gate_slices = index.split(gates)
        offset_slices = index.split(offsets) if offsets is not None else [None] * len(gate_slices)
        for (module, kind), gate, offset in zip(unit_modules(model, index), gate_slices, offset_slices):
            shaped = gate[:, None, :] if gate.ndim == 2 else gate

            def hook(_module, _inputs, output, gate=shaped, offset=offset, kind=kind):
                """This block's output, gated (and shifted) unit by unit; the product is taken at the gate's precision
                and then rounded, so that a bf16 output is not multiplied by a gate rounded to bf16 (a gate of 0.53 would
                move by up to 0.002, and IG's path with it)."""
                if kind == "head":
                    context, *rest = output
                    heads = _head_view(context, gate.shape[-1])
                    return ((heads * gate[..., None]).to(context.dtype).reshape(context.shape), *rest)
                gated_output = (output * gate).to(output.dtype)
                return gated_output if offset is None else gated_output + offset.to(output.dtype)
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def recording(model) -> Iterator[list[torch.Tensor]]:
    """Collect every block's output (batch, positions, units) of each forward pass, in flat-id order; a head's unit
    is the mean |.| of its slice of the attention context."""
    index = NeuronIndex.of(model)
    outputs: list[torch.Tensor] = []

    def keep(_module, _inputs, output, kind):
        outputs.append(_head_view(output[0], index.heads).abs().mean(-1) if kind == "head" else output)
    handles = [module.register_forward_hook(lambda m, i, o, kind=kind: keep(m, i, o, kind))
               for module, kind in unit_modules(model, index)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def hook_count(model) -> int:
    """Forward hooks currently registered on the modules any family gates (0 outside `gated`/`recording`)."""
    index = NeuronIndex.of(model, "+".join(FAMILIES))
    return sum(len(module._forward_hooks) for module, _ in unit_modules(model, index))
