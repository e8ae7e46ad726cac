"""MMseqs2 identity clusters and the identity split: families of related chains stay on one side."""
import shutil

import numpy as np
import pandas as pd
import pytest

from kn_utils import clusters
from kn_utils.data import split_dataset

needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None,
                                  reason="MMseqs2 not installed (make install installs Debian's mmseqs2; CI has it)")
RESIDUES = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def families(n_families: int, members: int, identity: float, length: int = 120, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Random family founders and members that keep about `identity` of the founder's residues (unrelated otherwise)."""
    rng = np.random.default_rng(seed)
    sequences, family = [], []
    for f in range(n_families):
        founder = rng.choice(RESIDUES, length)
        for _ in range(members):
            member = founder.copy()
            changed = rng.random(length) > identity
            member[changed] = rng.choice(RESIDUES, changed.sum())
            sequences.append("".join(member))
            family.append(f)
    return sequences, np.array(family)


@needs_mmseqs
@pytest.mark.parametrize("identity, kept", [(0.5, 0.8), (0.3, 0.6)])
def test_clusters_follow_families(identity, kept):
    sequences, family = families(6, 5, kept)
    found = clusters.identity_clusters(sequences, identity, threads=1)
    for f in range(6):  # one cluster per family, no cluster shared by two families
        assert len(set(found[family == f])) == 1
    assert len(set(found)) == 6 and found[0] == 0  # numbered in order of first member


@needs_mmseqs
def test_distant_members_fall_apart_at_a_high_identity():
    sequences, family = families(3, 4, 0.45)  # members ~45 % identical to the founder, less to each other
    assert len(set(clusters.identity_clusters(sequences, 0.9, threads=1))) > 3


@needs_mmseqs
def test_identity_split_keeps_every_cluster_on_one_side():
    sequences, family = families(20, 6, 0.8, seed=1)
    frame = pd.DataFrame({"sequence": sequences, "label": family % 3, "accession": [f"a{i}" for i in range(len(family))]})
    split = split_dataset(clusters.with_clusters(frame, 0.5, threads=1), test_fraction=0.2, seed=0, strategy="identity")
    assert split.groupby("cluster")["split"].nunique().max() == 1
    summary = clusters.cluster_summary(split)
    assert summary["n_clusters"] == 20 and summary["test_clusters_seen_in_train"] == 0
    random = split_dataset(split.drop(columns="split"), test_fraction=0.2, seed=0)  # the leakage a random split leaves
    assert clusters.cluster_summary(random)["test_clusters_seen_in_train"] > 0.9


def test_identity_split_without_clusters_is_refused():
    frame = pd.DataFrame({"sequence": ["A" * 40] * 10, "label": [0, 1] * 5, "accession": list("abcdefghij")})
    with pytest.raises(ValueError, match="identity split needs a 'cluster' column"):
        split_dataset(frame, strategy="identity")
    with pytest.raises(ValueError, match="split_identity must be a fraction"):
        clusters.identity_clusters(["A" * 40], 30)


def test_missing_mmseqs_is_named_with_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="needs MMseqs2.*make install"):
        clusters.identity_clusters(["A" * 40], 0.5)
