"""What a neuron responds to: where its activation peaks in each sequence, and whether those peaks sit on known motifs.

Peak: per sequence, the residue position with the largest |activation| of the unit (residues only; the
model sees the first `max_residues`). Enrichment: among the sequences where the neuron peaks highest, the
share of peak windows that touch an occurrence of a motif, against the same sequences with the peak moved
to a uniformly random residue position (the shuffled-position control, which keeps each sequence's motif
content and length). p-values are one-sided permutation p-values, corrected by Benjamini-Hochberg.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from .attention import attention_implementation
from .kernels import fused_gelu
from .neurons import recording
from .scoring import batches, residue_positions
from .stats import benjamini_hochberg, permutation_p_value, top_k

# Known enzyme motifs as regular expressions (x = any residue), with where they are described.
MOTIFS: dict[str, tuple[str, str]] = {
    "P-loop / Walker A  GxxxxGK[ST]": ("G.{4}GK[ST]", "Walker et al. 1982, EMBO J 1:945; PROSITE PS00017"),
    "Rossmann dinucleotide binding  GxGxxG": ("G.G..G", "Wierenga, Terpstra & Hol 1986, J Mol Biol 187:101"),
    "serine-hydrolase nucleophile elbow  GxSxG": ("G.S.G", "Ollis et al. 1992, Protein Eng 5:197"),
    "zinc metalloprotease  HExxH": ("HE..H", "Jongeneel, Bouvier & Bairoch 1989, FEBS Lett 242:211; PROSITE PS00142"),
    "thioredoxin-like redox site  CxxC": ("C..C", "Chivers, Prehoda & Raines 1997, Biochemistry 36:4061"),
}


def motif_coverage(sequence: str, pattern: str, length: int) -> np.ndarray:
    """Boolean (length,) mask of the first `length` residues covered by any (overlapping) match of `pattern`."""
    covered = np.zeros(length, dtype=bool)
    for match in re.finditer(f"(?=({pattern}))", sequence[:length]):
        covered[match.start(1):match.end(1)] = True
    return covered


def near(covered: np.ndarray, half_width: int) -> np.ndarray:
    """Positions whose window of +-`half_width` residues touches a covered residue."""
    if half_width == 0 or not covered.any():
        return covered.copy()
    padded = np.concatenate([np.zeros(half_width, bool), covered, np.zeros(half_width, bool)])
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1).any(-1)


@torch.inference_mode()
def activation_peaks(model, sequences: list[str], neuron_ids: np.ndarray, max_residues: int,
                     max_tokens: int = 8192, fused_kernels: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(peak |activation|, peak residue position) of each neuron in each sequence, both (sequences, neurons).

    `fused_kernels`: GELU in torch's one fused kernel (kernels.fused_gelu: the same function; benchmarks/inference.py).
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(np.asarray(neuron_ids), dtype=torch.long, device=device)
    values = np.zeros((len(sequences), len(neuron_ids)), dtype=np.float32)
    positions = np.zeros((len(sequences), len(neuron_ids)), dtype=np.int64)
    model.eval()
    with attention_implementation(model, "sdpa"), fused_gelu(fused_kernels):
        for batch, input_ids, mask in batches(sequences, max_residues, max_tokens):
            with recording(model) as outputs:
                model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
            selected = torch.cat(outputs, dim=-1).index_select(-1, ids).abs().float()  # batch x positions x neurons
            selected[~residue_positions(input_ids).to(device)] = -1.0
            best, where = selected.max(dim=1)
            values[batch], positions[batch] = best.cpu().numpy(), (where - 1).cpu().numpy()  # token 0 is <cls>
    return values, positions


def peak_windows(sequences: list[str], positions: np.ndarray, half_width: int) -> list[str]:
    """The residues from peak - half_width to peak + half_width of each sequence, '-' beyond its ends."""
    windows = []
    for sequence, peak in zip(sequences, positions):
        padded = "-" * half_width + sequence + "-" * half_width
        windows.append(padded[peak:peak + 2 * half_width + 1])
    return windows


def top_sequences(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` sequences where a neuron peaks highest, highest first (ties by index)."""
    return top_k(values, count)


def enrichment(sequences: list[str], positions: np.ndarray, max_residues: int, half_width: int,
               permutations: int = 1000, seed: int = 0, motifs: dict[str, tuple[str, str]] | None = None) -> pd.DataFrame:
    """Per motif: share of peak windows touching it, the shuffled-position control's share, and a one-sided p-value."""
    motifs = MOTIFS if motifs is None else motifs
    rng = np.random.default_rng(seed)
    lengths = np.array([min(len(s), max_residues) for s in sequences])
    random_positions = (rng.random((permutations, len(sequences))) * lengths).astype(int)
    rows = []
    for name, (pattern, _source) in motifs.items():
        hits = np.zeros((len(sequences), max(lengths.max(initial=0), 1)), dtype=bool)
        for row, (sequence, length) in enumerate(zip(sequences, lengths)):
            hits[row, :length] = near(motif_coverage(sequence, pattern, length), half_width)
        rows_index = np.arange(len(sequences))
        observed = hits[rows_index, positions].mean()
        null = hits[rows_index, random_positions].mean(1)
        rows.append({"motif": name, "observed": observed, "control": null.mean(),
                     "enrichment": observed / null.mean() if null.mean() > 0 else np.nan,
                     "p_value": permutation_p_value(observed, null)})
    return pd.DataFrame(rows)


def probe_neurons(sequences: list[str], neuron_ids: np.ndarray, peak_values: np.ndarray, peak_positions: np.ndarray,
                  max_residues: int, windows_per_neuron: int, half_width: int, permutations: int,
                  seed: int = 0, motifs: dict[str, tuple[str, str]] | None = None) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """For each neuron (columns of `activation_peaks`' output): its peak windows in the sequences where it peaks highest,
    and their enrichment in `motifs` (MOTIFS by default); every neuron x motif test gets a Benjamini-Hochberg q-value
    over all of them."""
    windows, tests = {}, []
    for column, neuron in enumerate(np.asarray(neuron_ids)):
        top = top_sequences(peak_values[:, column], windows_per_neuron)
        chosen, peaks = [sequences[i] for i in top], peak_positions[top, column]
        windows[int(neuron)] = peak_windows(chosen, peaks, half_width)
        result = enrichment(chosen, peaks, max_residues, half_width, permutations=permutations, seed=seed, motifs=motifs)
        tests.append(result.assign(neuron=int(neuron)))
    tests = pd.concat(tests, ignore_index=True)
    tests["q_value"] = benjamini_hochberg(tests["p_value"].to_numpy())
    return tests, windows


def motif_table(motifs: dict[str, tuple[str, str]] | None = None) -> pd.DataFrame:
    """The motif table (MOTIFS by default): name, regular expression, source."""
    return pd.DataFrame([{"motif": name, "regular expression": pattern, "source": source}
                         for name, (pattern, source) in (MOTIFS if motifs is None else motifs).items()])
