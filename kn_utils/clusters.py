"""Sequence-identity clusters from MMseqs2, for the split that keeps every chain of one cluster on one side.

This is how the field's homology-aware benchmarks hold out test proteins (CATH S20, UniRef50-style EC50): chains
that share `min_identity` of their aligned residues over `coverage` of both lengths land in one cluster, and a
cluster is never split between train and test. MMseqs2 is an outside program: `make install` installs Debian's
`mmseqs2` (conda users: `environment.yml`, bioconda's `mmseqs2`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

IDENTITIES = (0.3, 0.5)  # the identities profiles offer (full-identity30, full-identity50)
COVERAGE = 0.8           # aligned share of both chains (MMseqs2 -c with --cov-mode 0), as UniRef's clusters
SENSITIVITY = 7.5        # MMseqs2 -s: its most sensitive prefilter, so that 30 % identity pairs are found


def mmseqs_binary() -> str:
    """The `mmseqs` program on PATH, or a clear error saying how to install it."""
    found = shutil.which("mmseqs")
    if found is None:
        raise RuntimeError("the identity split needs MMseqs2, and `mmseqs` is not on PATH: `make install` installs it "
                           "(Debian's package: apt-get install mmseqs2; conda: conda install -c bioconda mmseqs2)")
    return found


def mmseqs_version() -> str:
    """MMseqs2's version string, for a result's provenance."""
    return subprocess.run([mmseqs_binary(), "version"], capture_output=True, text=True, check=True).stdout.strip()


def identity_clusters(sequences: list[str], min_identity: float, coverage: float = COVERAGE,
                      sensitivity: float = SENSITIVITY, threads: int | None = None) -> np.ndarray:
    """Cluster number of each sequence (numbered by first member in input order) from `mmseqs easy-cluster` at
    `min_identity` over `coverage` of both chains."""
    if not 0 < min_identity <= 1:
        raise ValueError(f"split_identity must be a fraction in (0, 1], e.g. 0.3 or 0.5, not {min_identity!r}")
    binary = mmseqs_binary()
    with tempfile.TemporaryDirectory(prefix="kn-mmseqs-") as folder:
        folder = Path(folder)
        (folder / "in.fasta").write_text("".join(f">{i}\n{sequence}\n" for i, sequence in enumerate(sequences)))
        command = [binary, "easy-cluster", str(folder / "in.fasta"), str(folder / "out"), str(folder / "tmp"),
                   "--min-seq-id", str(min_identity), "-c", str(coverage), "--cov-mode", "0", "-s", str(sensitivity),
                   "--threads", str(threads or os.cpu_count() or 1), "-v", "1"]
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(f"mmseqs easy-cluster failed (exit {finished.returncode}): {finished.stderr.strip()[-500:]}")
        pairs = pd.read_csv(folder / "out_cluster.tsv", sep="\t", header=None, names=["representative", "member"])
    if sorted(pairs["member"]) != list(range(len(sequences))):
        raise RuntimeError(f"mmseqs easy-cluster assigned {pairs['member'].nunique()} of {len(sequences)} sequences")
    representative = pairs.set_index("member")["representative"].sort_index().to_numpy()
    _, first, inverse = np.unique(representative, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]  # clusters numbered in order of their first member


def with_clusters(frame: pd.DataFrame, min_identity: float, threads: int | None = None) -> pd.DataFrame:
    """`frame` with a `cluster` column: MMseqs2 clusters of its sequences at `min_identity`."""
    return frame.assign(cluster=identity_clusters(frame["sequence"].tolist(), min_identity, threads=threads))


def cluster_summary(frame: pd.DataFrame) -> dict:
    """How many clusters, the largest one's share, and the test chains whose cluster also has training chains (0 by
    construction under the identity split; the leakage the random split leaves)."""
    sizes = frame["cluster"].value_counts()
    in_train = set(frame.loc[frame["split"] == "train", "cluster"])
    test = frame.loc[frame["split"] == "test", "cluster"]
    return {"n_clusters": int(len(sizes)), "largest_cluster_share": float(sizes.iloc[0] / len(frame)),
            "test_clusters_seen_in_train": float(test.isin(in_train).mean()) if len(test) else 0.0}
