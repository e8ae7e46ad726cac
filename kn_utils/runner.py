"""Run the numbered notebooks in order with papermill for a profile, and publish a full run as the study's record."""
from __future__ import annotations

import ast
import os
import shutil
import tempfile
import time
from pathlib import Path

from .provenance import REPO_ROOT
from .sources import MIRROR_ENV
from .runs import (RUNS_ENV, SHARED_STAGES, SOURCES_DIR, TOP_LEVEL, broken_outputs, clear_stamp, declared_parameters,
                   load_profile, named_profile, notebook_node, notebook_parameters, read_stamp, run_dir, run_files,
                   runs_root, source_of, stage_is_current, stage_key, stamp_path, unfinished_inputs, write_stamp,
                   written_files)

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"  # the kernels' working folder, and where the record's executed notebooks live
PATH_PARAMETERS = ("mirror", "fasta", "labels")  # notebook parameters that name a file or folder
OPT_IN_STAGES = ("08",)  # run only for profiles with a section for them: 08 checks a planted truth only control runs have
ACROSS_RUNS = {"claims.json"}  # results/ files that tally several runs (`kn_utils claims --publish`): publish keeps them


def stage_number(stage: str | int | None) -> str | None:
    """A stage as its two-digit prefix (`3` and `03` both name notebook 03), None left as is; anything else refused."""
    if stage is None:
        return None
    if not str(stage).isdigit():
        raise ValueError(f"stage {stage!r}: expected a notebook number such as 02")
    return f"{int(stage):02d}"


def stage_notebooks(first: str | None = None, last: str | None = None) -> list[Path]:
    """The sources `notebooks/NN_name.py` of the numbered notebooks, in order, from stage `first` to `last` (numbers,
    e.g. 2 or 02)."""
    first, last = stage_number(first), stage_number(last)
    notebooks = sorted(SOURCES_DIR.glob("[0-9][0-9]_*.py"))
    return [nb for nb in notebooks if (first is None or nb.name[:2] >= first) and (last is None or nb.name[:2] <= last)]


def undeclared_parameters(profile: str | os.PathLike, notebook: Path, declared: dict | None = None) -> list[str]:
    """Names the profile's section for `notebook` sets but its parameters cell does not declare (as papermill reads it)."""
    declared = declared_parameters(notebook) if declared is None else declared
    return sorted(set(load_profile(profile).get(notebook.stem) or {}) - set(declared))


def mistyped_parameters(parameters: dict, declared: dict) -> list[str]:
    """One line per parameter whose value is not of its default's type (text for a number, a fraction for a count).

    The notebook would otherwise fail deep inside a stage, or worse run on: `-p learning_rate 1e-4x` is text.
    A default or value of None, and a default that is not a literal, accept anything; an int passes for a float.
    """
    problems = []
    for name, value in parameters.items():
        try:
            default = ast.literal_eval(declared[name]["default"])
        except (KeyError, ValueError, SyntaxError):
            continue
        if value is None or default is None:
            continue
        if isinstance(default, bool) or isinstance(value, bool):
            fits = isinstance(value, bool) and isinstance(default, bool)
        elif isinstance(default, float):
            fits = isinstance(value, (int, float))
        else:
            fits = isinstance(value, type(default)) or (isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)))
        if not fits:
            problems.append(f"{name} = {value!r} is {type(value).__name__}, but its default {declared[name]['default']} is "
                            f"{type(default).__name__}")
    return problems


def stage_parameters(profile: str | os.PathLike, first: str | None = None, last: str | None = None,
                     overrides: dict | None = None) -> list[tuple[Path, dict]]:
    """Each notebook from `first` to `last` with the parameters papermill gets, all checked before any stage runs.

    Raises ValueError for a profile setting the notebook does not declare, a value not of its default's type, and an
    override no notebook in the range declares: found now, not an hour into the study, and never silently ignored.
    """
    sections = load_profile(profile)
    notebooks = [nb for nb in stage_notebooks(first, last) if nb.name[:2] not in OPT_IN_STAGES or nb.stem in sections]
    if not notebooks:
        raise ValueError(f"no notebook from stage {first or 'first'} to {last or 'last'} (stages: "
                         f"{', '.join(nb.name[:2] for nb in stage_notebooks())})")
    declared_by = {notebook: declared_parameters(notebook) for notebook in stage_notebooks()}
    unknown_sections, unknown_common = profile_typos(profile, declared_by)
    if unknown_sections or unknown_common:
        raise ValueError(f"profile {profile!r}: " + "; ".join(
            ([f"section(s) {', '.join(unknown_sections)} name no notebook"] if unknown_sections else [])
            + ([f"common setting(s) {', '.join(unknown_common)} no notebook declares"] if unknown_common else [])))
    plan, declared_anywhere = [], set()
    for notebook in notebooks:
        declared = declared_by[notebook]
        declared_anywhere |= set(declared)
        unknown = undeclared_parameters(profile, notebook, declared)
        if unknown:  # papermill skips a parameter line it cannot parse; a silently ignored setting is worse than an error
            raise ValueError(f"{notebook.name}: profile {profile!r} sets {', '.join(unknown)}, which the notebook's parameters "
                             "cell does not declare (or papermill cannot parse its line)")
        parameters = {k: v for k, v in notebook_parameters(profile, notebook.name, overrides).items() if k in declared}
        mistyped = mistyped_parameters(parameters, declared)
        if mistyped:
            raise ValueError(f"{notebook.name}, profile {profile!r}: " + "; ".join(mistyped))
        for name in PATH_PARAMETERS:  # kernels run in notebooks/: a path relative to where the command ran must not move
            if parameters.get(name):
                parameters[name] = str(Path(parameters[name]).expanduser().resolve())
        source = parameters.get("model_source")
        if source and Path(source).expanduser().exists():  # a local folder, not a hub id: the same for it
            parameters["model_source"] = str(Path(source).expanduser().resolve())
        plan.append((notebook, parameters))
    ignored = sorted(set(overrides or {}) - declared_anywhere)
    if ignored:
        raise ValueError(f"-p {', '.join(ignored)}: no notebook from {plan[0][0].name if plan else first} to "
                         f"{plan[-1][0].name if plan else last} declares it, so it would change nothing")
    return plan


def profile_typos(profile: str | os.PathLike, declared_by: dict[Path, dict]) -> tuple[list[str], list[str]]:
    """A profile's sections that name no notebook, and its `common` settings no notebook declares (`declared_by`:
    every stage notebook's parameters, as papermill reads them): typos, which would otherwise change nothing without
    a word (`02_fintune:`, `sed: 1`)."""
    spec = load_profile(profile)
    sections = sorted(set(spec) - {"common", *TOP_LEVEL} - {notebook.stem for notebook in declared_by})
    declared = {"profile"}.union(*declared_by.values())
    return sections, sorted(set(spec.get("common") or {}) - declared)


def dataset_mismatches(run: Path, stage: str) -> list[str]:
    """Result files of `run` that record another dataset than its dataset.parquet, as far as stage `stage` reads them.

    Notebook 02 reads data.json; 03 onwards also read the model whose finetune.json names the data it was trained on:
    after notebook 01 rebuilds the dataset, a stage run on from 03 would score the old model on a new test set.
    """
    from .data import load_dataset, sequence_checksum
    from .provenance import read_json

    parquet = run / "dataset.parquet"
    stage = stage_number(stage)
    readers = () if stage < "02" else ("data.json",) if stage == "02" else ("data.json", "finetune.json")
    present = [run / name for name in readers if (run / name).exists()]
    if not present or not parquet.exists():
        return []  # nothing to disagree with; the notebook names what is missing
    actual = sequence_checksum(load_dataset(parquet))
    recorded = {path: read_json(path).get("provenance", {}).get("inputs", {}).get("dataset_sha256") for path in present}
    return [f"{path} records dataset {checksum[:12]}, but {parquet} holds {actual[:12]}"
            for path, checksum in recorded.items() if checksum and checksum != actual]


def _runner_ranks() -> tuple[int, int]:
    """(rank, world size) of this runner: under torchrun (WORLD_SIZE > 1) it joins the launch's group (gloo) to agree
    with the other ranks on which stages run, and leaves it at exit (ranks.leave); (0, 1) otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    from .ranks import init_from_env

    return init_from_env("gloo")


def _agreed(value, size: int):
    """Rank 0's `value` on every rank (a barrier too); `value` itself with one process."""
    if size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _decide(run: Path, notebook: Path, key: str, target: Path, rerun: bool) -> tuple[bool, str | None]:
    """(whether the stage is up to date, why it cannot run, if it cannot): the runner's checks before a stage."""
    mismatches = dataset_mismatches(run, notebook.name[:2])
    if mismatches:
        return False, (f"{notebook.name}: " + "; ".join(mismatches) + ". The dataset was rebuilt after the stages that "
                       "read it: run again from the stage that wrote the stale file (01 or 02)")
    if not rerun and stage_is_current(run, notebook, key, target):
        return True, None
    unfinished = unfinished_inputs(run, notebook.name[:2])
    if unfinished:
        return False, (f"{notebook.name} reads what earlier stages wrote, but " + "; ".join(why for _, why in unfinished)
                       + f". Run from stage {min(stage for stage, _ in unfinished)} first (--from)")
    return False, None


def _free_port() -> int:
    """A TCP port free on this host now, below the system's ephemeral range: the ports the kernels' ZeroMQ sockets
    take (the system's picks) can then never collide with it."""
    import random
    import socket

    try:
        lowest = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lowest = 32768
    for port in random.Random().sample(range(max(lowest - 12000, 1024), lowest), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port below {lowest} for the kernels' process group")


def _kernel_group(rank: int, size: int) -> None:
    """Under torchrun, each stage's kernels (children of the ranks' runners) form a group of their own, hosted by rank
    0's kernel: on a port rank 0's runner found free on its host, at its host's name when the ranks span nodes."""
    if size == 1:
        return
    import socket

    one_node = os.environ.get("LOCAL_WORLD_SIZE") == os.environ.get("WORLD_SIZE")
    mine = (os.environ.get("MASTER_ADDR", "127.0.0.1") if one_node else socket.getfqdn(), _free_port()) if rank == 0 else None
    os.environ["MASTER_ADDR"], port = _agreed(mine, size)
    os.environ["MASTER_PORT"] = str(port)
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"  # the kernels' rank 0 hosts their store


def run_profile(profile: str, first: str | None = None, last: str | None = None, output_dir: str | os.PathLike | None = None,
                overrides: dict | None = None, log_output: bool = False, rerun: bool = False) -> list[Path]:
    """Execute the notebooks of a profile in order, each generated from its source; executed copies go to `output_dir`
    (default runs/<profile>/notebooks).

    A stage whose stamp says it finished with the same notebook, code, packages, parameters and earlier stages is
    skipped (runs.stage_key), so a rerun picks up at the first stage that changed or did not finish; `rerun` runs all.
    """
    import papermill

    profile_name = Path(profile).stem
    rank, size = _runner_ranks()

    def say(line: str) -> None:
        """Progress, from rank 0 only (the others run the same stages)."""
        if rank == 0:
            print(line, flush=True)

    for variable in (MIRROR_ENV, RUNS_ENV):  # kernels run in notebooks/: make a relative path absolute first
        if os.environ.get(variable):
            os.environ[variable] = str(Path(os.environ[variable]).expanduser().resolve())
    os.environ.update(kernel_environment())  # kernels inherit it: they import this checkout's kn_utils
    plan = stage_parameters(profile, first, last, overrides)
    run = run_dir(profile_name)
    sections = load_profile(profile)
    for key, shared in SHARED_STAGES.items():
        source = sections.get(key)
        if not source or (key == "data_from" and sections.get("model_from")):  # the model's run brings its own data
            continue
        if any(notebook.name[:2] in shared for notebook, _ in plan):  # brought up to date in the source run first
            run_profile(named_profile(profile, source), last=shared[-1], log_output=log_output)
        if rank == 0:
            share_stages(run_dir(Path(source).stem), run, shared)
        _agreed(None, size)
        plan = [(notebook, parameters) for notebook, parameters in plan if notebook.name[:2] not in shared]
    output_dir = Path(output_dir) if output_dir else run / "notebooks"
    if rank:  # under torchrun, rank 0 keeps the executed notebooks and the stamps; the other ranks compute
        output_dir = Path(tempfile.mkdtemp(prefix=f"kn-rank{rank}-"))
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for notebook, parameters in plan:
        started = time.perf_counter()
        target = output_dir / f"{notebook.stem}.ipynb"
        compared = [parameters.get("compare_profile"), *parameters.get("split_profiles", [])]
        key = stage_key(run, notebook, parameters, tuple(runs_root() / other for other in compared if other))
        current, problem = _agreed(_decide(run, notebook, key, target, rerun) if rank == 0 else None, size)
        if problem:
            raise RuntimeError(problem)
        if current:
            say(f"[{profile_name}] {notebook.name} up to date ({stamp_path(run, notebook)}), skipped")
            executed.append(target)
            continue
        say(f"[{profile_name}] {notebook.name} ...")
        if rank == 0:
            clear_stamp(run, notebook)
            files_before = run_files(run)
        _kernel_group(rank, size)
        papermill.execute_notebook(notebook_node(notebook), str(target), parameters=parameters, cwd=str(NOTEBOOKS_DIR),
                                   kernel_name="python3", progress_bar=False, log_output=log_output)
        if rank == 0:
            write_stamp(run, notebook, key, target, time.perf_counter() - started, written_files(files_before, run_files(run)))
        _agreed(None, size)  # every rank waits for the stamp
        say(f"[{profile_name}] {notebook.name} done in {time.perf_counter() - started:.0f} s")
        executed.append(target)
    return executed


def kernel_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the notebooks' kernels: this checkout first on PYTHONPATH, so that they import the kn_utils
    whose sources the stage keys hash, not another checkout's (say an editable install of a second clone)."""
    environ = dict(os.environ if environ is None else environ)
    paths = [str(REPO_ROOT), *(path for path in environ.get("PYTHONPATH", "").split(os.pathsep) if path)]
    environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return environ


def share_stages(source: Path, run: Path, stages: tuple[str, ...]) -> list[str]:
    """Bring `stages` (01, or 01-02) of run `source` (their stamps and every output they vouch for) into `run`, where
    they differ: `run`'s later stages then read the same dataset (and weights), and their keys include the same stamps."""
    copied = []
    for stage in stages:
        notebook = source_of(stage)
        stamp = read_stamp(source, notebook)
        if stamp is None or broken_outputs(source, stamp):
            raise RuntimeError(f"{source}: stage {stage} has not finished there; nothing to share")
        if read_stamp(run, notebook) == stamp and not broken_outputs(run, stamp):
            continue
        clear_stamp(run, notebook)
        for name in stamp["outputs"]:
            target = run / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(source / name, target)  # no second copy of checkpoints and weights
            except OSError:
                shutil.copy2(source / name, target)
            copied.append(name)
        stamp_path(run, notebook).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(stamp_path(source, notebook), stamp_path(run, notebook))
    return copied


def record_dir(profile: str, repo_root: Path = REPO_ROOT, folder: str = "results") -> Path:
    """Where a profile's published `folder` (results, notebooks, figures) lives: the record's own for `full`, else a
    subfolder named after the profile."""
    return repo_root / folder if profile == "full" else repo_root / folder / profile


def publish(profile: str = "full", repo_root: Path = REPO_ROOT) -> list[Path]:
    """Copy a run's executed notebooks, result files and figures into the repository, remove those of an earlier
    publication that this run did not write (so the record never mixes two runs), then update README.

    The `full` run is the study's record: notebooks/, results/, figures/. Any other profile (e.g. the
    homology-aware `full-accession`) goes to a subfolder named after it, so it never overwrites the record.
    """
    source = run_dir(profile)
    if not any(source.glob("*.json")):
        raise FileNotFoundError(f"{source}: no finished run of profile {profile!r} to publish (no result files)")
    copied = []
    for pattern, folder in (("notebooks/*.ipynb", "notebooks"), ("*.json", "results"), ("figures/*.png", "figures")):
        destination = record_dir(profile, repo_root, folder)
        destination.mkdir(parents=True, exist_ok=True)
        written = sorted(source.glob(pattern))
        for stale in destination.glob(Path(pattern).name):  # this folder's own files; other profiles' subfolders stay
            if stale.name not in {path.name for path in written} | ACROSS_RUNS:
                stale.unlink()
        for path in written:
            shutil.copy2(path, destination / path.name)
            copied.append(destination / path.name)
    from .report import update_readme

    update_readme(repo_root / "README.md")
    return copied


# the record, its homology-aware re-run (each notebook 07 compares the two) and the positive control (about 4 min)
STUDY_PROFILES = ("full", "full-accession", "control")
SEED_PROFILES = ("full", "full-seed1", "full-seed2")  # the runs `kn_utils claims` tallies: three training seeds of full
SEED_FAMILY_PROFILES = tuple(f"{profile}-ffn" for profile in SEED_PROFILES)  # each seed's ffn run: the family claim


def study_phases(profiles: tuple[str, ...] | list[str]) -> list[tuple[str | None, str | None]]:
    """Stage ranges to run in order: the stages before the first that reads another profile of the study, then the rest.

    A stage reads another run when its `compare_profile` names one of `profiles` (notebook 07 sets the random and the
    accession split side by side), so every run must have finished the stages before it first. Without such a stage
    the whole study is one phase.
    """
    others = {Path(profile).stem for profile in profiles}  # a profile given as a YAML path is named by its stem
    for notebook in stage_notebooks():
        if any(notebook_parameters(profile, notebook.name).get("compare_profile") in others - {Path(profile).stem}
               for profile in profiles):
            before = f"{int(notebook.name[:2]) - 1:02d}"
            return [(None, before), (notebook.name[:2], None)]
    return [(None, None)]


def stage_command(profile: str, first: str | None, last: str | None, rerun: bool = False) -> list[str]:
    """The `python -m kn_utils run` command line for one profile's stage range."""
    import sys

    command = [sys.executable, "-m", "kn_utils", "run", "--profile", profile]
    return command + (["--from", first] if first else []) + (["--to", last] if last else []) + (["--rerun"] if rerun else [])


def run_study(profiles: tuple[str, ...] | list[str] = STUDY_PROFILES, jobs: int = 1, publish_runs: bool = False,
              rerun: bool = False) -> None:
    """Run every profile of the study phase by phase, `jobs` profiles at a time, then publish each when asked.

    Each profile runs in its own process with an equal share of the CPU cores (OMP_NUM_THREADS), its output
    appended to `runs/<profile>/study.log`. Finished stages are skipped (run_profile), so a rerun picks up where a
    killed one stopped; `rerun` runs every stage. With one job the profiles run one after another with every core, which
    keeps each stage's timing comparable with a run of that profile alone; with two, the study takes less wall time on a
    multi-core CPU.
    """
    import subprocess

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    for profile in profiles:
        stage_parameters(profile)  # every profile's parameters checked before anything runs
    threads = max(1, (os.cpu_count() or 1) // min(jobs, len(profiles)))
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for first, last in study_phases(profiles):
        pending = list(profiles)
        while pending:
            batch, pending = pending[:jobs], pending[jobs:]
            running = []
            for profile in batch:
                log = run_dir(Path(profile).stem) / "study.log"
                print(f"[study] {profile}: stages {first or 'first'} to {last or 'last'} on {threads} thread(s), log {log}",
                      flush=True)
                with open(log, "a") as handle:
                    running.append((profile, log, subprocess.Popen(stage_command(profile, first, last, rerun), stdout=handle,
                                                                   stderr=subprocess.STDOUT, env=environment,
                                                                   cwd=REPO_ROOT)))
            failed = [(profile, log) for profile, log, process in running if process.wait() != 0]
            if failed:
                raise RuntimeError("; ".join(f"profile {profile} failed in stages {first or 'first'} to {last or 'last'}: "
                                             f"see {log}" for profile, log in failed))
    if publish_runs:
        for profile in profiles:
            publish(Path(profile).stem)
