"""Run directories, profiles and notebook sources: where a profile's outputs live, which parameters each notebook gets,
and which stages of a run are up to date (stage stamps), so that a rerun picks up where the last one stopped.

Each notebook has one source, `notebooks/NN_name.py` (a jupytext percent script, reviewed as a plain diff); every
executed copy (the record in notebooks/, the quick copies in tests/nbval/) is generated from it by the runner.
"""
from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path

import yaml

from .provenance import REPO_ROOT, atomic_path, package_versions, sha256_file

PROFILES_DIR = REPO_ROOT / "profiles"
SOURCES_DIR = REPO_ROOT / "notebooks"  # NN_name.py: the one source of each notebook
PACKAGE_DIR = REPO_ROOT / "kn_utils"
# Modules that only draw or report (figures, README): editing them changes no result file, so no stage's stamp covers
# them; `run --rerun --from NN --to NN` redraws a stage's figures after a plots.py edit.
PRESENTATION_MODULES = ("plots", "report")
# The stages whose outputs each stage reads (their stamps are part of its key); README's "How the study is built" lists
# each stage's outputs. 07 reads the same stages of the run it compares with (compare_profile).
STAGE_READS = {"01": (), "02": ("01",), "03": ("01", "02"), "04": ("01", "02", "03"), "05": ("01", "02", "03", "04"),
               "06": ("02", "04"), "07": ("01", "02", "04", "05")}
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


def source_of(stage: str) -> Path:
    """The source of notebook `stage` ("03_activations", "03" or 3): notebooks/NN_name.py."""
    prefix = f"{int(str(stage)[:2]):02d}" if str(stage)[:2].isdigit() else str(stage)
    matches = sorted(SOURCES_DIR.glob(f"{prefix}_*.py")) if len(prefix) == 2 else [SOURCES_DIR / f"{stage}.py"]
    if not matches or not matches[0].exists():
        raise FileNotFoundError(f"no notebook source for stage {stage!r} in {SOURCES_DIR}")
    return matches[0]


def notebook_node(source: Path):
    """The notebook of a percent-script source (jupytext), with the kernel papermill starts."""
    import jupytext

    notebook = jupytext.read(source, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.pop("jupytext", None)
    return notebook


@lru_cache(maxsize=None)
def _declared(source: Path, text: str) -> dict:
    """papermill's reading of the parameters cell of `source` (whose text is `text`, so an edit is seen)."""
    import nbformat
    import papermill

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{source.stem}.ipynb"
        nbformat.write(notebook_node(source), path)
        return dict(papermill.inspect_notebook(str(path)))


def declared_parameters(source: Path) -> dict:
    """The parameters a notebook source declares, as papermill reads them: name -> {name, default, help, ...}."""
    return _declared(Path(source), Path(source).read_text())


STAMPS_DIR = "stages"  # runs/<profile>/stages/NN_name.json: what each finished stage ran with


def stamp_path(run: Path, notebook: Path) -> Path:
    """Where the stamp of `notebook`'s last finished run in `run` lives."""
    return run / STAMPS_DIR / f"{notebook.stem}.json"


def _read_stamps(run: Path, stage: str) -> dict[str, str]:
    """The text of the stamps in `run` of the stages `stage` reads (STAGE_READS): a rerun of one of them changes it."""
    folder = run / STAMPS_DIR
    return {path.name: path.read_text() for path in sorted(folder.glob("[0-9][0-9]_*.json"))
            if path.name[:2] in STAGE_READS.get(stage, ())}


def _imported_modules(text: str, package_relative: bool) -> set[str]:
    """kn_utils modules a piece of code imports (at any depth, lazy imports included): `from kn_utils import x`,
    `import kn_utils.x`, and inside the package `from .x import y` / `from . import x`."""
    modules = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            inside = package_relative and node.level == 1
            if inside or node.module == "kn_utils" or (node.module or "").startswith("kn_utils."):
                base = node.module if inside else (node.module or "").removeprefix("kn_utils").lstrip(".")
                if base:
                    modules.add(base.split(".")[0])
                else:
                    modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("kn_utils."))
    return modules


def stage_modules(source: Path) -> list[str]:
    """The kn_utils modules a notebook source imports, transitively, that shape its results (PRESENTATION_MODULES
    aside); `__init__` always, since every import runs it."""
    pending, seen = _imported_modules(Path(source).read_text(), False), {"__init__"}
    while pending:
        module = pending.pop()
        path = PACKAGE_DIR / f"{module}.py"
        if module in seen or module in PRESENTATION_MODULES or not path.exists():
            continue
        seen.add(module)
        pending |= _imported_modules(path.read_text(), True)
    return sorted(seen)


def stage_key(run: Path, notebook: Path, parameters: dict, other_runs: tuple[Path, ...] = ()) -> str:
    """SHA-256 of everything a stage's outputs depend on: its notebook source, the kn_utils modules it imports
    (stage_modules), the package versions, its parameters, and the stamps of the stages it reads (in this run and in
    `other_runs`, e.g. the run notebook 07 compares with)."""
    code = {module: sha256_file(PACKAGE_DIR / f"{module}.py") for module in stage_modules(notebook)}
    inputs = {"notebook": notebook.read_text(), "code": code, "packages": package_versions(), "parameters": parameters,
              "before": [_read_stamps(folder, notebook.name[:2]) for folder in (run, *other_runs)]}
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
