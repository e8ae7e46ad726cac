"""Run directories and profiles: where a profile's outputs live and which parameters each notebook gets."""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from .provenance import REPO_ROOT

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
