"""Result files: atomic writes and the provenance every result records (parameters, model, data, versions, device, commit)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("kn_utils", "torch", "transformers", "captum", "numpy", "pandas", "scipy", "statsmodels", "scikit-learn",
            "papermill", "jupytext")
REPO_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed onto it only if the block succeeds; in a torch.distributed
    group only rank 0's is renamed (every rank computed the same), the others' are removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes files private; results are meant to be shared
        from .ranks import is_main

        if is_main():
            os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_table(frame, path: str | os.PathLike) -> Path:
    """A pandas table as parquet through a temporary file: a write that fails or is killed leaves no half a table."""
    with atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)
    return Path(path)


def _json_default(value: Any) -> Any:
    """Turn numpy/torch/path values into plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (Path, set, frozenset)):
        return str(value) if isinstance(value, Path) else sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write JSON atomically (temporary file, then rename) so a reader never sees half a file."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> dict:
    """Read a result file, naming it when it is missing or corrupt."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: result file not found; run the stage that writes it first") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: corrupt result file ({error})") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str | None:
    """The commit of the working tree (with `+dirty` when it has changes), or None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that shape the numbers."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The CPU's name with its family and model numbers (Linux), which tell CPU generations of one brand name apart."""
    try:
        block = Path(cpuinfo).read_text().split("\n\n")[0]
    except OSError:
        return None
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}
    if "cpu family" not in fields:
        return fields.get("model name")
    return f"{fields.get('model name', 'CPU')} (family {fields['cpu family']}, model {fields.get('model', '?')})"


def provenance(parameters: dict, *, device: str | None = None, model: dict | None = None, inputs: dict | None = None) -> dict:
    """What produced a result: parameters, model source and init, input checksums, versions, device, commit, time."""
    import torch

    from .model import device_name, native_bf16

    return {
        "parameters": parameters,
        "model": model,
        "inputs": inputs or {},
        "device": device,
        "device_name": device_name(device or "cpu"),
        "native_bf16": native_bf16(device or "cpu"),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(run_dir: str | os.PathLike, stage: str, figures: dict, parameters: dict, **provenance_fields: Any) -> Path:
    """Write `run_dir/<stage>.json`: the stage's figures as flat keys plus a `provenance` block."""
    payload = dict(figures)
    payload["provenance"] = provenance(parameters, **provenance_fields)
    return write_json(Path(run_dir) / f"{stage}.json", payload)
