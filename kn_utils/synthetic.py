"""A labelled protein task with planted ground truth, the positive control: do the methods find knowledge where we put it?

Background sequences come from a first-order Markov model of residues fitted to real chains (`ResidueModel`). Each motif
class is defined by one PROSITE-like motif (`Motif`: a residue or a set of residues per position, `x` for any) planted
once per sequence, at a class-specific position with a uniform jitter; one class is defined by composition instead (its
background enriched in chosen residues, no motif), so that a motif test has a true negative. A share of sequences carry
a decoy (another class's motif with one position mutated out of its set), and a share of labels are flipped to another
class (label noise). `generate_task` returns the dataset table notebook 01 writes (before its split) and the planted
truth: which motif, where, in which sequence, decoys and flipped labels included.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .alphabet import STANDARD_RESIDUES
from .data import with_classes

ALPHABET = "".join(sorted(STANDARD_RESIDUES))
_INDEX = {residue: i for i, residue in enumerate(ALPHABET)}


@dataclass(frozen=True)
class Motif:
    """A PROSITE-like pattern: one string of allowed residues per position ("x": any residue), e.g. C-x-[DE]-H-W."""

    name: str
    positions: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, pattern: str) -> "Motif":
        """A motif from PROSITE syntax without repeats: elements joined by '-', each a residue, [alternatives] or x."""
        positions = []
        for element in pattern.split("-"):
            if element.lower() == "x":
                allowed = ALPHABET
            elif len(element) > 2 and element[0] == "[" and element[-1] == "]":
                allowed = element[1:-1]
            else:
                allowed = element
            if not allowed or set(allowed) - set(ALPHABET) or (len(allowed) > 1 and allowed == element):
                raise ValueError(f"motif {name!r}: element {element!r} of {pattern!r} is not a residue, [residues] or x")
            positions.append(allowed)
        return cls(name, tuple(positions))

    @property
    def pattern(self) -> str:
        """PROSITE syntax."""
        return "-".join("x" if p == ALPHABET else p if len(p) == 1 else f"[{p}]" for p in self.positions)

    @property
    def regex(self) -> re.Pattern:
        """A regular expression matching every instance."""
        return re.compile("".join("." if p == ALPHABET else f"[{p}]" for p in self.positions))

    def __len__(self) -> int:
        return len(self.positions)

    def sample(self, rng: np.random.Generator) -> str:
        """One instance, each degenerate position drawn uniformly from its set."""
        return "".join(rng.choice(list(p)) for p in self.positions)

    def decoy(self, rng: np.random.Generator) -> str:
        """An instance with one specific position (not x) mutated to a residue outside its set: a near miss."""
        instance = list(self.sample(rng))
        specific = [i for i, p in enumerate(self.positions) if p != ALPHABET]
        position = int(rng.choice(specific))
        instance[position] = rng.choice([r for r in ALPHABET if r not in self.positions[position]])
        return "".join(instance)


@dataclass
class ResidueModel:
    """First-order Markov model of residues: start frequencies and transition probabilities (20 x 20)."""

    start: np.ndarray
    transitions: np.ndarray

    @classmethod
    def fit(cls, sequences: list[str], pseudocount: float = 1.0) -> "ResidueModel":
        """Fit to sequences (non-standard residues skipped), with a pseudocount per cell."""
        start = np.full(20, pseudocount)
        counts = np.full((20, 20), pseudocount)
        for sequence in sequences:
            codes = [_INDEX[r] for r in sequence if r in _INDEX]
            if codes:
                start[codes[0]] += 1
                np.add.at(counts, (codes[:-1], codes[1:]), 1)
        if counts.sum() <= 400 * pseudocount:
            raise ValueError("ResidueModel.fit: no standard residues in the sequences given")
        return cls(start / start.sum(), counts / counts.sum(1, keepdims=True))

    def frequencies(self) -> np.ndarray:
        """The stationary residue frequencies of the chain."""
        values, vectors = np.linalg.eig(self.transitions.T)
        stationary = np.real(vectors[:, np.argmin(np.abs(values - 1))])
        return stationary / stationary.sum()

    def sample(self, length: int, rng: np.random.Generator, enrich: dict[str, float] | None = None) -> str:
        """A sequence of `length` residues; `enrich` multiplies the chosen residues' probabilities at every step."""
        weights = np.ones(20)
        for residue, factor in (enrich or {}).items():
            weights[_INDEX[residue]] = factor
        first = self.start * weights
        codes = [rng.choice(20, p=first / first.sum())]
        steps = self.transitions * weights[None, :]
        steps /= steps.sum(1, keepdims=True)
        cumulative = steps.cumsum(1)
        for u in rng.random(length - 1):
            codes.append(min(int(np.searchsorted(cumulative[codes[-1]], u)), 19))
        return "".join(ALPHABET[c] for c in codes)


@dataclass
class TaskSpec:
    """What `generate_task` plants: one motif per motif class (its position: `anchors`, a fraction of the length, plus a
    uniform jitter of +-`jitter` residues), and one composition class enriched in `enrich` residues."""

    motifs: list[Motif]
    anchors: list[float]
    per_class: int = 500
    length: tuple[int, int] = (80, 120)
    jitter: int = 10
    enrich: dict[str, float] = field(default_factory=lambda: {"K": 3.0, "E": 3.0})
    decoy_share: float = 0.2
    label_noise: float = 0.0

    def __post_init__(self):
        if len(self.anchors) != len(self.motifs):
            raise ValueError(f"TaskSpec: {len(self.motifs)} motifs but {len(self.anchors)} anchors")
        if not 0 <= self.decoy_share <= 1 or not 0 <= self.label_noise < 1:
            raise ValueError(f"TaskSpec: decoy_share must be in [0, 1] and label_noise in [0, 1), not "
                             f"{self.decoy_share!r}, {self.label_noise!r}")
        if self.length[0] < max(len(m) for m in self.motifs) + 2 * self.jitter + 2:
            raise ValueError(f"TaskSpec: sequences of {self.length[0]} residues cannot hold a motif with a jitter of {self.jitter}")

    @property
    def classes(self) -> list[str]:
        """Class names: the motifs', then 'composition'."""
        return [m.name for m in self.motifs] + ["composition"]


def default_spec(per_class: int = 500, label_noise: float = 0.0) -> TaskSpec:
    """Five 5-residue motifs with two degenerate positions each, at different anchors, and the K/E-rich class: six
    classes, the study's count, so the pipeline runs on the task unchanged."""
    motifs = [Motif.parse("motif_A", "C-x-[DE]-H-W"), Motif.parse("motif_B", "[ST]-P-Y-x-G"),
              Motif.parse("motif_C", "W-[KR]-x-M-C"), Motif.parse("motif_D", "H-H-[FY]-x-P"),
              Motif.parse("motif_E", "[NQ]-C-W-x-Y")]
    return TaskSpec(motifs, anchors=[0.15, 0.3, 0.45, 0.6, 0.75], per_class=per_class, label_noise=label_noise)


def generate_task(spec: TaskSpec, background: ResidueModel, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dataset table, planted truth). The table has notebook 01's columns (`class_name` the class's name from
    `spec.classes`, `label` its index there); the truth has one row per planted motif or decoy (id, kind, motif,
    start, end, instance) and one per flipped label (kind 'label_noise', motif = the true class). Backgrounds that
    happen to contain a motif are drawn again, so a motif occurs only where the truth says."""
    rng = np.random.default_rng(seed)
    records, truth = [], []
    names = spec.classes
    for label in range(len(names)):
        for number in range(spec.per_class):
            identifier = f"syn_{label + 1}_{number:05d}"
            sequence, planted = _draw(spec, background, label, rng)
            truth.extend((identifier, *row) for row in planted)
            records.append((identifier, names[label], label, sequence))
    table = pd.DataFrame.from_records(records, columns=["id", "class_name", "label", "sequence"])
    if spec.label_noise:
        flipped = rng.random(len(table)) < spec.label_noise
        for row in np.flatnonzero(flipped):
            true_label = int(table.at[row, "label"])
            new_label = int(rng.choice([c for c in range(len(names)) if c != true_label]))
            truth.append((table.at[row, "id"], "label_noise", names[true_label], -1, -1, names[new_label]))
            table.loc[row, ["label", "class_name"]] = [new_label, names[new_label]]
    table["length"] = table["sequence"].str.len()
    table["n_chains"], table["tagged_chains"] = 1, 0
    table["accession"] = table["id"]
    truth_table = pd.DataFrame.from_records(truth, columns=["id", "kind", "motif", "start", "end", "instance"])
    return with_classes(table.sort_values("id", ignore_index=True), names), truth_table


def _draw(spec: TaskSpec, background: ResidueModel, label: int, rng: np.random.Generator) -> tuple[str, list[tuple]]:
    """One sequence of class `label` and what was planted in it, (kind, motif, start, end, instance) rows: drawn again
    until the class's own motif is its only match (a background or a decoy never completes a motif by chance)."""
    length = int(rng.integers(spec.length[0], spec.length[1] + 1))
    is_motif_class = label < len(spec.motifs)
    while True:
        sequence = background.sample(length, rng, None if is_motif_class else spec.enrich)
        planted = []
        if is_motif_class:
            planted.append(("motif", label, spec.motifs[label].sample(rng)))
        if rng.random() < spec.decoy_share:
            other = int(rng.choice([i for i in range(len(spec.motifs)) if i != label]))
            planted.append(("decoy", other, spec.motifs[other].decoy(rng)))
        rows = []
        for kind, which, instance in planted:
            sequence, start = _plant(sequence, instance, spec.anchors[which], spec.jitter, rng, [(r[2], r[3]) for r in rows])
            rows.append((kind, spec.motifs[which].name, start, start + len(instance), instance))
        matches = [(m.name, match.start()) for m in spec.motifs for match in m.regex.finditer(sequence)]
        if matches == [(r[1], r[2]) for r in rows if r[0] == "motif"]:
            return sequence, rows


def _plant(sequence: str, instance: str, anchor: float, jitter: int, rng: np.random.Generator,
           taken: list[tuple[int, int]]) -> tuple[str, int]:
    """`sequence` with `instance` written over it at anchor * length + U(-jitter, jitter), clipped to fit and moved
    right (cyclically) past any span in `taken`; (new sequence, start)."""
    last = len(sequence) - len(instance)
    start = int(np.clip(round(anchor * len(sequence)) + int(rng.integers(-jitter, jitter + 1)), 0, last))
    for _ in range(last + 1):
        if all(start + len(instance) <= begin or start >= end for begin, end in taken):
            break
        start = (start + 1) % (last + 1)
    return sequence[:start] + instance + sequence[start + len(instance):], start


def motif_occurrences(sequences: pd.Series, motifs: list[Motif]) -> pd.DataFrame:
    """Every match of every motif (sequence index, motif, start): to check the truth against the sequences."""
    rows = [(index, motif.name, match.start()) for index, sequence in sequences.items() for motif in motifs
            for match in motif.regex.finditer(sequence)]
    return pd.DataFrame.from_records(rows, columns=["index", "motif", "start"])


def control_task(chains: list[str], per_class: int, length: tuple[int, int] | list[int], label_noise: float = 0.0,
                 decoy_share: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, TaskSpec]:
    """The positive control notebook 01 builds: `default_spec` with `per_class` sequences of `length` residues, on
    backgrounds from a Markov model fitted to `chains` (the real chains read before); (table, truth, spec)."""
    spec = replace(default_spec(per_class, label_noise), length=(int(length[0]), int(length[1])), decoy_share=decoy_share)
    table, truth = generate_task(spec, ResidueModel.fit(list(chains)), seed)
    return table, truth, spec


def planted_motifs(spec: TaskSpec) -> dict[str, str]:
    """{motif name: PROSITE pattern} of a spec, as data.json records it."""
    return {motif.name: motif.pattern for motif in spec.motifs}


def motif_regexes(patterns: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Recorded planted motifs as the motif test takes them ({name: (regular expression, source)})."""
    return {name: (Motif.parse(name, pattern).regex.pattern, "planted (kn_utils.synthetic)")
            for name, pattern in patterns.items()}
