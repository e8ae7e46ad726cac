"""Addressing the query/key/value neurons of every attention layer, and hooks that read or gate their outputs.

A neuron is one output unit of a query, key or value projection (`EsmSelfAttention.query/key/value`):
zeroing its weight row and bias entry is the same as zeroing its output at every position, so a gate on
the projection's output is how we ablate, scale or attribute neurons without touching the weights.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

PROJECTIONS = ("query", "key", "value")


@dataclass(frozen=True)
class NeuronIndex:
    """The (layer, projection, unit) <-> flat id map of a model, derived from its modules."""

    n_layers: int
    units: int  # output units per projection

    @classmethod
    def of(cls, model) -> "NeuronIndex":
        """Read the layer count and projection width off a loaded ESM model (8M, 35M, 150M alike)."""
        layers = attention_layers(model)
        widths = {getattr(layer, name).out_features for layer in layers for name in PROJECTIONS}
        if len(widths) != 1:
            raise ValueError(f"projections of unequal width {sorted(widths)}; not an ESM-2 attention stack")
        return cls(len(layers), widths.pop())

    @property
    def size(self) -> int:
        """Number of neurons: layers x 3 projections x units."""
        return self.n_layers * len(PROJECTIONS) * self.units

    def flat(self, layer: int, projection: str, unit: int) -> int:
        """Flat id of (layer, projection, unit), ordered layer-major, then query/key/value, then unit."""
        return (layer * len(PROJECTIONS) + PROJECTIONS.index(projection)) * self.units + unit

    def address(self, flat_id: int) -> tuple[int, str, int]:
        """(layer, projection, unit) of a flat id."""
        group, unit = divmod(int(flat_id), self.units)
        layer, projection = divmod(group, len(PROJECTIONS))
        return layer, PROJECTIONS[projection], unit

    def name(self, flat_id: int) -> str:
        """The study's one spelling of a neuron: 'L2.key.117' (layer, projection, unit)."""
        layer, projection, unit = self.address(flat_id)
        return f"{block_name(layer, projection)}.{unit}"

    def names(self, flat_ids) -> list[str]:
        """`name` of each id, in order."""
        return [self.name(flat_id) for flat_id in flat_ids]

    def table(self) -> pd.DataFrame:
        """One row per neuron: neuron (flat id), layer, projection, unit."""
        ids = np.arange(self.size)
        return pd.DataFrame({"neuron": ids, "layer": ids // (3 * self.units),
                             "projection": np.array(PROJECTIONS)[(ids // self.units) % 3], "unit": ids % self.units})

    def split(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Cut a (..., size) tensor into per-projection (..., units) views, in flat-id order."""
        return list(values.split(self.units, dim=-1))


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


@contextlib.contextmanager
def gated(model, gates: torch.Tensor, offsets: torch.Tensor | None = None) -> Iterator[None]:
    """Multiply every projection's output by its slice of `gates` (then add its slice of `offsets`, when given)
    while the block runs.

    `gates` has shape (size,) for one gate per neuron, or (batch, size) for one per example; `offsets` (size,) sets
    gated-off neurons to a constant (mean ablation). The hooks are removed on exit, whatever happens inside.
    """
    index = NeuronIndex.of(model)
    if gates.shape[-1] != index.size:
        raise ValueError(f"gates have {gates.shape[-1]} entries, the model has {index.size} neurons")
    handles = []
    try:
        gate_slices = index.split(gates)
        offset_slices = index.split(offsets) if offsets is not None else [None] * len(gate_slices)
        for module, gate, offset in zip(projections(model), gate_slices, offset_slices):
            shaped = gate[:, None, :] if gate.ndim == 2 else gate

            def hook(_module, _inputs, output, gate=shaped, offset=offset):
                """This projection's output, gated (and shifted) unit by unit; the product is taken at the gate's precision
                and then rounded, so that a bf16 output is not multiplied by a gate rounded to bf16 (a gate of 0.53 would
                move by up to 0.002, and IG's path with it)."""
                gated_output = (output * gate).to(output.dtype)
                return gated_output if offset is None else gated_output + offset.to(output.dtype)
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def recording(model) -> Iterator[list[torch.Tensor]]:
    """Collect every projection's output (batch, positions, units) of each forward pass, in flat-id order."""
    outputs: list[torch.Tensor] = []
    handles = [module.register_forward_hook(lambda _m, _i, output: outputs.append(output)) for module in projections(model)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def hook_count(model) -> int:
    """Forward hooks currently registered on the projections (0 outside `gated`/`recording`)."""
    return sum(len(module._forward_hooks) for module in projections(model))
