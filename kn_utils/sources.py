"""The two upstream files the dataset is built from: found in a local mirror, in data/raw, or downloaded."""
from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

from .provenance import REPO_ROOT, atomic_path, sha256_file

UPSTREAM_URLS = {
    "pdb_seqres.txt.gz": "https://files.wwpdb.org/pub/pdb/derived_data/pdb_seqres.txt.gz",
    "pdb_chain_enzyme.tsv.gz": "https://ftp.ebi.ac.uk/pub/databases/msd/sifts/flatfiles/tsv/pdb_chain_enzyme.tsv.gz",
}
MIRROR_ENV = "KN_MIRROR"
RAW_DIR = REPO_ROOT / "data" / "raw"


class DataFileError(ValueError):
    """An input file that is missing, truncated or corrupt."""


def check_gzip(path: Path) -> None:
    """Read a gzip file to its end so that a truncated or corrupt download fails here, by name."""
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise DataFileError(f"{path}: truncated or corrupt gzip file ({error})") from None


def mirror_checksums(mirror: Path) -> dict[str, str]:
    """The `SHA256SUMS` of a mirror folder as {file name: digest} (empty when it has none)."""
    sums = mirror / "SHA256SUMS"
    if not sums.exists():
        return {}
    checksums = {}
    for number, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
            raise DataFileError(f"{sums}: line {number}: expected '<64 hex digits>  <file name>' (sha256sum's format), "
                                f"found {line[:80]!r}")
        checksums[fields[1].lstrip("*")] = fields[0].lower()
    return checksums


def download(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Stream `url` to `target` with a progress bar; the size is checked and nothing partial is left behind."""
    import requests
    from tqdm import tqdm

    with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        expected = int(response.headers.get("Content-Length", 0)) or None
        with atomic_path(target) as temporary, open(temporary, "wb") as handle, tqdm(
            total=expected, unit="B", unit_scale=True, desc=target.name
        ) as progress:
            for block in response.iter_content(chunk_size=1 << 20):
                handle.write(block)
                progress.update(len(block))
            handle.flush()
            received = handle.tell()
            if expected is not None and received != expected:
                raise DataFileError(f"{url}: received {received} bytes of {expected}; download truncated")
            check_gzip(temporary)
    return target


def resolve_source(name: str, mirror: str | os.PathLike | None = None, raw_dir: Path = RAW_DIR, allow_download: bool = True) -> Path:
    """Path of one upstream file: the mirror copy (checksum-verified), else data/raw, else a fresh download."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if mirror:
        path = Path(mirror).expanduser().resolve() / name
        if not path.exists():
            raise DataFileError(f"{path}: not in the mirror folder {mirror}")
        expected = mirror_checksums(path.parent).get(name)
        if expected and sha256_file(path) != expected:
            raise DataFileError(f"{path}: SHA-256 differs from the mirror's SHA256SUMS; the copy is corrupt")
        check_gzip(path)
        return path
    path = Path(raw_dir) / name
    if path.exists():
        check_gzip(path)
        return path
    if not allow_download:
        raise DataFileError(f"{path}: not found, no mirror given (set {MIRROR_ENV}) and downloads are off")
    import requests

    try:
        return download(UPSTREAM_URLS[name], path)
    except requests.RequestException as error:
        raise DataFileError(f"{UPSTREAM_URLS[name]}: download failed ({type(error).__name__}); without network, "
                            f"set {MIRROR_ENV} to a folder holding {name}") from None


def resolve_sources(mirror: str | os.PathLike | None = None, raw_dir: Path = RAW_DIR, allow_download: bool = True) -> dict[str, Path]:
    """Paths of both upstream files (see `resolve_source`)."""
    return {name: resolve_source(name, mirror, raw_dir, allow_download) for name in UPSTREAM_URLS}


def resolve_inputs(mirror: str | os.PathLike | None = None, fasta: str | os.PathLike | None = None,
                   labels: str | os.PathLike | None = None) -> dict[str, Path]:
    """Notebook 01's inputs: your own FASTA file and its labels when given (both, existing), else the upstream files."""
    if fasta is None and labels is None:
        return resolve_sources(mirror)
    if fasta is None or labels is None:
        raise DataFileError(f"own data needs both a FASTA file and a labels file; got fasta={fasta!r}, labels={labels!r}")
    paths = {"fasta": Path(fasta).expanduser().resolve(), "labels": Path(labels).expanduser().resolve()}
    for path in paths.values():
        if not path.is_file():
            raise DataFileError(f"{path}: no such file")
    return paths
