"""Run directories and profiles: where a profile's outputs live, which parameters each notebook gets, and which
stages of a run are up to date (stage stamps), so that a rerun picks up where the last one stopped."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from pathlib import Path

import yaml

from .provenance import REPO_ROOT, atomic_path, package_versions, sha256_file

PROFILES_DIR = REPO_ROOT / "profiles"
RUNS_ENV = "KN_RUNS_DIR"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: `1e-4` is a number, not the string YAML 1.1 makes of it."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def read_yaml(text: str):
    """Parse a profile or a `-p` value; exponents without a decimal point (`1e-4`) read as floats."""
    return yaml.load(text, Loader=_Loader)


def runs_root() -> Path:
    """Where run directories live: `$KN_RUNS_DIR`, else `runs/` in the repository."""
    return Path(os.environ.get(RUNS_ENV) or REPO_ROOT / "runs")


def run_dir(profile: str) -> Path:
    """`runs/<profile>/`, created if needed."""
    path = runs_root() / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_profile(profile: str | os.PathLike) -> dict:
    """A profile YAML: `common` parameters plus one section per notebook stem; a profile name or a file path.

    `extends: other` starts from profile `other` (a file beside this one, else the study's profiles/other.yaml) and
    overrides it section by section, key by key.
    """
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no such profile (known: {', '.join(known)})")
    spec = read_yaml(path.read_text()) or {}
    base_name = spec.pop("extends", None)
    if base_name is None:
        return spec
    if Path(str(base_name)).stem == path.stem:
        raise ValueError(f"{path}: a profile cannot extend itself")
    base = path.parent / f"{base_name}.yaml"
    merged = load_profile(base if base.exists() else base_name)  # beside it, else one of the study's profiles
    for section, values in spec.items():
        merged[section] = {**(merged.get(section) or {}), **(values or {})}
    return merged


def notebook_parameters(profile: str | os.PathLike, notebook: str, overrides: dict | None = None) -> dict:
    """Parameters papermill injects into `notebook` for `profile`: common, then the notebook's section, then overrides."""
    spec = load_profile(profile)
    parameters = {"profile": Path(profile).stem, **spec.get("common", {}), **(spec.get(Path(notebook).stem) or {})}
    parameters.update(overrides or {})
    return parameters


STAMPS_DIR = "stages"  # runs/<profile>/stages/NN_name.json: what each finished stage ran with


def stamp_path(run: Path, notebook: Path) -> Path:
    """Where the stamp of `notebook`'s last finished run in `run` lives."""
    return run / STAMPS_DIR / f"{notebook.stem}.json"


def _earlier_stamps(run: Path, stage: str) -> dict[str, str]:
    """The text of every stamp of `run` for a stage before `stage`: a rerun of one of them changes it."""
    folder = run / STAMPS_DIR
    return {path.name: path.read_text() for path in sorted(folder.glob("[0-9][0-9]_*.json")) if path.name[:2] < stage}


def notebook_source(notebook: Path) -> list[list[str]]:
    """The notebook's cells as (type, text), without outputs or papermill's injected parameters: what a run executes,
    the same before and after `publish` copies an executed run over it."""
    cells = json.loads(notebook.read_text())["cells"]
    return [[cell["cell_type"], "".join(cell["source"])] for cell in cells
            if "injected-parameters" not in cell.get("metadata", {}).get("tags", [])]


def stage_key(run: Path, notebook: Path, parameters: dict, other_runs: tuple[Path, ...] = ()) -> str:
    """SHA-256 of everything a stage's outputs depend on: the notebook, kn_utils' code, the package versions, its
    parameters, and the stamps of the stages before it (in this run and in `other_runs` it reads, e.g. notebook 07's)."""
    code = {path.name: sha256_file(path) for path in sorted((REPO_ROOT / "kn_utils").glob("*.py"))}
    inputs = {"notebook": notebook_source(notebook), "code": code, "packages": package_versions(), "parameters": parameters,
              "before": [_earlier_stamps(folder, notebook.name[:2]) for folder in (run, *other_runs)]}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def stage_is_current(run: Path, notebook: Path, key: str, executed: Path) -> bool:
    """Whether `notebook` last finished in `run` with this `key`, and its executed copy `executed` is the one it wrote."""
    path = stamp_path(run, notebook)
    if not path.exists() or not executed.exists():
        return False
    try:
        stamp = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False  # a damaged stamp proves nothing: the stage runs again
    return stamp.get("key") == key and stamp.get("executed_sha256") == sha256_file(executed)


def clear_stamp(run: Path, notebook: Path) -> None:
    """Forget that `notebook` finished, before it runs again: a kill mid-stage must not leave an old stamp standing."""
    stamp_path(run, notebook).unlink(missing_ok=True)


def write_stamp(run: Path, notebook: Path, key: str, executed: Path, seconds: float) -> Path:
    """Record that `notebook` finished in `run` with `key`, having written `executed`."""
    path = stamp_path(run, notebook)
    stamp = {"notebook": notebook.name, "key": key, "executed": str(executed), "executed_sha256": sha256_file(executed),
             "seconds": round(seconds, 1), "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(stamp, indent=2) + "\n")
    return path
