"""The ESM-2 vocabulary, residue validation and tokenisation of protein sequences."""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch

# ESM-2 vocabulary in token-id order (fair-esm `Alphabet.from_architecture("ESM-1b")`).
ESM2_VOCAB: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
    "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>", "<mask>",
)
TOKEN_ID = {token: index for index, token in enumerate(ESM2_VOCAB)}
CLS_ID, PAD_ID, EOS_ID, MASK_ID = TOKEN_ID["<cls>"], TOKEN_ID["<pad>"], TOKEN_ID["<eos>"], TOKEN_ID["<mask>"]
STANDARD_RESIDUES = frozenset("ACDEFGHIKLMNPQRSTVWY")
# X unknown, B Asx, Z Glx, U selenocysteine, O pyrrolysine: all in the ESM-2 vocabulary.
AMBIGUOUS_RESIDUES = frozenset("XBZUO")
RESIDUES = STANDARD_RESIDUES | AMBIGUOUS_RESIDUES
MAX_ESM_RESIDUES = 1022  # ESM-2 was trained on 1,024 tokens: <cls> + 1,022 residues + <eos>


class SequenceError(ValueError):
    """A sequence that cannot be given to the model, with the record it came from."""


def normalise_sequence(raw: str) -> str:
    """Upper-case a sequence and drop whitespace and a trailing stop `*`, the only harmless variations."""
    sequence = "".join(raw.split()).upper()
    return sequence[:-1] if sequence.endswith("*") else sequence


def sequence_problem(sequence: str, max_length: int | None = None) -> str | None:
    """Say what is wrong with a normalised sequence (None when it is valid)."""
    if not sequence:
        return "empty sequence"
    bad = sorted(set(sequence) - RESIDUES)
    if bad:
        position = min(sequence.index(char) for char in bad) + 1
        return f"invalid residue(s) {''.join(bad)!r} (first at position {position})"
    if max_length is not None and len(sequence) > max_length:
        return f"sequence of {len(sequence)} residues is longer than the limit of {max_length}"
    return None


def validate_sequence(record: str, raw: str, source: str = "", max_length: int | None = None) -> str:
    """Normalise a sequence and raise SequenceError naming the file and record if it is unusable."""
    sequence = normalise_sequence(raw)
    problem = sequence_problem(sequence, max_length)
    if problem:
        where = f"{source}: " if source else ""
        raise SequenceError(f"{where}record {record!r}: {problem}")
    return sequence


def residue_frequencies(sequences: list[str]) -> tuple[list[str], np.ndarray]:
    """The residues that occur in `sequences` (sorted) and their share of all residues, for null models and sampling."""
    counts = Counter("".join(sequences))
    residues = sorted(counts)
    frequencies = np.array([counts[residue] for residue in residues], dtype=float)
    return residues, frequencies / frequencies.sum()


def encode(sequence: str, max_residues: int | None = None) -> list[int]:
    """Token ids `<cls> residues <eos>` of a validated sequence, keeping its first `max_residues` residues."""
    if max_residues is not None:
        sequence = sequence[:max_residues]
    return [CLS_ID, *(TOKEN_ID[residue] for residue in sequence), EOS_ID]


def pad_batch(token_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one: (input_ids, attention_mask)."""
    width = max(len(tokens) for tokens in token_lists)
    input_ids = torch.full((len(token_lists), width), PAD_ID, dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return input_ids, (input_ids != PAD_ID).long()
