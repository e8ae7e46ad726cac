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
# This module: folders, profiles and stamps. What it decides for a stage (parameters, earlier stamps) is in the key
# itself, so editing it (say, a new profile key) must not make every stamp of every run stale.
BOOKKEEPING_MODULES = ("runs",)
# The stages whose outputs each stage reads (their stamps are part of its key); README's "How the study is built" lists
# each stage's outputs. 07 reads the same stages of the run it compares with (compare_profile).
STAGE_READS = {"01": (), "02": ("01",), "03": ("01", "02"), "04": ("01", "02", "03"), "05": ("01", "02", "03", "04"),
               "06": ("02", "04"), "07": ("01", "02", "04", "05"), "08": ("01", "02", "03", "04", "05", "07")}
RUNS_ENV = "KN_RUNS_DIR"
TOP_LEVEL = ("extends", "model_from", "data_from")  # a profile's keys that name another profile, not a section
SHARED_STAGES = {"model_from": ("01", "02"), "data_from": ("01",)}  # what such a profile takes from the run it names


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
    overrides it section by section, key by key. `model_from: other` (kept as a top-level key) takes stages 01-02,
    the dataset and the fine-tuned model, from run `other` (runner.share_stages): one model, another neuron family;
    `data_from: other` takes stage 01 only: one dataset and split, another training seed.
    """
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no such profile (known: {', '.join(known)})")
    spec = _profile_spec(path)
    base_name = spec.pop("extends", None)
    if base_name is None:
        return spec
    if Path(str(base_name)).stem == path.stem:
        raise ValueError(f"{path}: a profile cannot extend itself")
    merged = load_profile(named_profile(path, base_name))
    for section, values in spec.items():
        merged[section] = values if section in TOP_LEVEL else {**(merged.get(section) or {}), **(values or {})}
    return merged


def named_profile(path: str | os.PathLike, name: str) -> str:
    """The profile `name` as a profile file at `path` means it: a file beside it, else one of the study's profiles."""
    beside = Path(path).parent / f"{name}.yaml"
    return str(beside) if Path(path).suffix and beside.exists() else name


def _profile_spec(path: Path) -> dict:
    """A profile file's mapping, checked: YAML, a mapping at the top, a mapping (or nothing) per section."""
    try:
        spec = read_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start}); a profile is YAML") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ValueError(f"{path}: {where}not valid YAML ({getattr(error, 'problem', None) or error})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a profile is a mapping of sections (common:, 01_data:, ...), not a {type(spec).__name__}")
    for section, values in spec.items():
        if section in TOP_LEVEL and not isinstance(values, str):
            raise ValueError(f"{path}: {section!r} names a profile; found {values!r}")
        if section not in TOP_LEVEL and values is not None and not isinstance(values, dict):
            raise ValueError(f"{path}: section {section!r} must map parameter names to values; found {values!r}")
    return spec


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
    and BOOKKEEPING_MODULES aside); `__init__` always, since every import runs it."""
    pending, seen = _imported_modules(Path(source).read_text(), False), {"__init__"}
    while pending:
        module = pending.pop()
        path = PACKAGE_DIR / f"{module}.py"
        if module in seen or module in PRESENTATION_MODULES + BOOKKEEPING_MODULES or not path.exists():
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


UNSTAMPED = (STAMPS_DIR, "notebooks", "study.log")  # a run's own bookkeeping: no stage's output


def run_files(run: Path) -> dict[str, tuple[int, int]]:
    """Every file of a run folder but its bookkeeping (UNSTAMPED), as {relative path: (size, mtime_ns)}."""
    files = {}
    for path in Path(run).rglob("*"):
        relative = path.relative_to(run)
        if path.is_file() and relative.parts[0] not in UNSTAMPED:
            status = path.stat()
            files[relative.as_posix()] = (status.st_size, status.st_mtime_ns)
    return files


def written_files(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """The files a stage wrote: in `after` (run_files once it finished) but not in `before`, or changed since."""
    return sorted(name for name, status in after.items() if before.get(name) != status)


def broken_outputs(run: Path, stamp: dict) -> list[str]:
    """The outputs a stamp vouches for that are missing or changed since (their SHA-256 differs); all of them for a
    stamp that lists none (written before stamps listed outputs: it vouches for nothing checkable)."""
    outputs = stamp.get("outputs")
    if outputs is None:
        return ["(the stamp lists no outputs)"]
    return [name for name, digest in outputs.items()
            if not (Path(run) / name).is_file() or sha256_file(Path(run) / name) != digest]


def read_stamp(run: Path, notebook: Path) -> dict | None:
    """The stamp of `notebook`'s last finished run in `run`; None when absent or unreadable (it proves nothing)."""
    path = stamp_path(run, notebook)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def stage_is_current(run: Path, notebook: Path, key: str, executed: Path) -> bool:
    """Whether `notebook` last finished in `run` with this `key`, its executed copy `executed` is the one it wrote, and
    every output it wrote is still there unchanged."""
    stamp = read_stamp(run, notebook)
    if stamp is None or not executed.exists():
        return False
    return (stamp.get("key") == key and stamp.get("executed_sha256") == sha256_file(executed)
            and not broken_outputs(run, stamp))


def unfinished_inputs(run: Path, stage: str) -> list[tuple[str, str]]:
    """The stages `stage` reads (STAGE_READS) whose last run in `run` did not finish, or whose outputs are missing or
    changed since: (stage, why) each."""
    problems = []
    for before in STAGE_READS.get(stage, ()):
        stamp = read_stamp(run, source_of(before))
        if stamp is None:
            problems.append((before, f"stage {before} has not finished in {run} (never run, or its last run failed)"))
        elif broken := broken_outputs(run, stamp):
            problems.append((before, f"stage {before}'s outputs in {run} are missing or changed since it ran: "
                                     f"{', '.join(broken[:3])}"))
    return problems


def clear_stamp(run: Path, notebook: Path) -> None:
    """Forget that `notebook` finished, before it runs again: a kill mid-stage must not leave an old stamp standing."""
    stamp_path(run, notebook).unlink(missing_ok=True)


def write_stamp(run: Path, notebook: Path, key: str, executed: Path, seconds: float, outputs: list[str] = ()) -> Path:
    """Record that `notebook` finished in `run` with `key`, having written `executed` and the run's files `outputs`
    (with their SHA-256, so that a missing, truncated or replaced output makes the stamp void)."""
    path = stamp_path(run, notebook)
    stamp = {"notebook": notebook.name, "key": key, "executed": str(executed), "executed_sha256": sha256_file(executed),
             "outputs": {name: sha256_file(Path(run) / name) for name in outputs},
             "seconds": round(seconds, 1), "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(stamp, indent=2) + "\n")
    return path
