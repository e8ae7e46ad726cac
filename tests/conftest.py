"""Shared fixtures: a tiny ESM-2 configuration and tiny upstream-format data files."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from kn_utils.model import random_classifier, esm2_config

REPO = Path(__file__).resolve().parent.parent

SEQRES = """>101m_A mol:protein length:40
MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPET
>102l_A mol:protein length:35
MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGHLLTK
>103l_A mol:protein length:35
MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGHLLTK
>104d_A mol:na length:12
CGCGAATTCGCG
>105m_A mol:protein length:38
MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILS
>106m_B mol:protein length:36
GSHMSLFDKLKGLVGKEKPLTGGAVSLLEGLVNLAQ
>107m_A mol:protein length:5
MKTAY
>108m_A mol:protein length:33
MKTAY1AKQRQISFVKSHFSRQLEERLGLIEVQ
>109m_A mol:protein length:34
MSTNPKPQRKTKRNTNRRPQDVKFPGGGQIVGGV
>110m_A mol:protein length:31
MADQLTEEQIAEFKEAFSLFDKDGDGTITTK
"""
SIFTS = """# 2025/09/15 | test file
PDB\tCHAIN\tACCESSION\tEC_NUMBER
101m\tA\tP02185\t1.11.1.-
102l\tA\tP00720\t3.2.1.17
103l\tA\tP00720\t3.2.1.17
105m\tA\tP12345\t2.7.11.1
106m\tB\tP23456\t2.7.1.1
106m\tB\tP23456\t4.1.1.1
107m\tA\tP34567\t5.3.1.1
108m\tA\tP45678\t6.3.2.1
109m\tA\tP56789\t7.1.1.1
110m\tA\tP67890\t4.2.1.1
"""


def write_gz(path: Path, text: str) -> Path:
    """Write `text` gzipped to `path`."""
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


@pytest.fixture
def upstream_files(tmp_path: Path) -> dict[str, Path]:
    """A tiny pdb_seqres / SIFTS pair in upstream format, covering every drop reason."""
    return {"pdb_seqres.txt.gz": write_gz(tmp_path / "pdb_seqres.txt.gz", SEQRES),
            "pdb_chain_enzyme.tsv.gz": write_gz(tmp_path / "pdb_chain_enzyme.tsv.gz", SIFTS)}


@pytest.fixture
def tiny_config():
    """An ESM-2 configuration small enough for unit tests (2 layers, hidden 16, 4 heads)."""
    return esm2_config(num_labels=6, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32)


@pytest.fixture
def tiny_model(tiny_config):
    """A seeded random tiny ESM-2 classifier in eval mode."""
    return random_classifier(tiny_config, 0, "eager").eval()


def random_protein(rng: np.random.Generator, length: int) -> str:
    """A random sequence over the 20 standard residues."""
    return "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=length))


@pytest.fixture
def toy_task():
    """Sequences whose class is set by a planted motif: learnable by a tiny model in a few steps."""
    rng = np.random.default_rng(0)
    motifs = ["WWWW", "CCCC", "HHHH"]
    sequences, labels = [], []
    for index in range(48):
        label = index % 3
        body = random_protein(rng, int(rng.integers(12, 30)))
        cut = int(rng.integers(0, len(body)))
        sequences.append(body[:cut] + motifs[label] + body[cut:])
        labels.append(label)
    torch.manual_seed(0)
    return sequences, np.array(labels)


def pytest_configure(config):
    """Notebook runs of this session go to a fresh folder; the offline mirror beside the repo is used when present."""
    import os
    import tempfile

    os.environ.setdefault("KN_RUNS_DIR", tempfile.mkdtemp(prefix="kn-test-runs-"))
    mirror = REPO.parent / "shared" / "mirror"
    if "KN_MIRROR" not in os.environ and mirror.exists():
        os.environ["KN_MIRROR"] = str(mirror)
