"""Profiles: sections merge in order, `extends` overrides a base profile key by key."""
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kn_utils.provenance import REPO_ROOT
from kn_utils.report import _mlm_share
from kn_utils.runner import (OPT_IN_STAGES, kernel_environment, run_profile, stage_notebooks, stage_parameters,
                             study_phases, undeclared_parameters)
from kn_utils.runs import load_profile, notebook_parameters, read_yaml


def test_extends_overrides_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text("common:\n  seed: 0\n  split: random\n02_finetune:\n  epochs: 10\n  learning_rate: 0.1\n")
    (tmp_path / "child.yaml").write_text("extends: base\ncommon:\n  split: accession\n02_finetune:\n  epochs: 2\n")
    spec = load_profile(tmp_path / "child.yaml")
    assert spec == {"common": {"seed": 0, "split": "accession"}, "02_finetune": {"epochs": 2, "learning_rate": 0.1}}
    assert notebook_parameters(tmp_path / "child.yaml", "02_finetune.ipynb") == {
        "profile": "child", "seed": 0, "split": "accession", "epochs": 2, "learning_rate": 0.1}


@pytest.mark.parametrize("text, message", [("common: [1, 2\n", r"bad.yaml: line 2: not valid YAML"),
                                           ("- seed\n- 1\n", r"bad.yaml: a profile is a mapping of sections .* not a list"),
                                           ("common: 3\n", r"bad.yaml: section 'common' must map parameter names to values"),
                                           (b"\xff\xfe\x00binary", r"bad.yaml: not a UTF-8 text file")])
def test_a_profile_that_is_not_a_yaml_mapping_is_named(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=message):
        load_profile(path)


def test_self_extension_and_unknown_profiles_are_refused(tmp_path):
    (tmp_path / "loop.yaml").write_text("extends: loop\n")
    with pytest.raises(ValueError, match="cannot extend itself"):
        load_profile(tmp_path / "loop.yaml")
    with pytest.raises(FileNotFoundError, match="no such profile"):
        load_profile("no-such-profile")


def test_accession_profile_is_the_full_study_with_the_accession_split():
    full, accession = load_profile("full"), load_profile("full-accession")
    assert accession["common"] == {**full["common"], "split": "accession"}
    assert accession["02_finetune"] == full["02_finetune"] and accession["07_class_neurons"]["compare_profile"] == "full"


def _fake_run(runs, profile: str, accuracy: float) -> None:
    import json

    run = runs / profile
    (run / "notebooks").mkdir(parents=True)
    (run / "figures").mkdir()
    (run / "notebooks" / "01_data.ipynb").write_text("{}")
    (run / "figures" / "01_lengths.png").write_bytes(b"png")
    (run / "note.json").write_text(json.dumps({"accuracy": accuracy}))


def test_publish_keeps_other_profiles_out_of_the_study_record(tmp_path, monkeypatch):
    import json

    from kn_utils.runner import publish

    runs, repo = tmp_path / "runs", tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# x\n<!-- headline:begin -->\nold\n<!-- headline:end -->\n"
                                    "<!-- results:begin -->\nold\n<!-- results:end -->\ntail\n")
    monkeypatch.setenv("KN_RUNS_DIR", str(runs))
    _fake_run(runs, "full", 0.4)
    _fake_run(runs, "full-accession", 0.3)
    publish("full", repo)
    publish("full-accession", repo)
    assert json.loads((repo / "results" / "note.json").read_text())["accuracy"] == 0.4
    assert json.loads((repo / "results" / "full-accession" / "note.json").read_text())["accuracy"] == 0.3
    assert (repo / "notebooks" / "full-accession" / "01_data.ipynb").exists()
    assert (repo / "figures" / "full-accession" / "01_lengths.png").exists()
    assert "old" not in (repo / "README.md").read_text() and (repo / "README.md").read_text().endswith("tail\n")
    for stale in ("notebooks/09_gone.ipynb", "figures/09_gone.png", "results/gone.json", "results/claims.json"):
        (repo / stale).write_text("{}")  # an earlier publication's files, and the seeds' tally
    publish("full", repo)
    assert sorted(path.name for path in (repo / "results").glob("*.json")) == ["claims.json", "note.json"]
    assert not (repo / "notebooks" / "09_gone.ipynb").exists() and not (repo / "figures" / "09_gone.png").exists()
    assert (repo / "results" / "full-accession" / "note.json").exists()  # another profile's folder is left alone
    with pytest.raises(FileNotFoundError, match="no finished run"):
        publish("never-run", repo)


@pytest.mark.parametrize("profile", ["quick", "full", "full-accession"])
def test_every_profile_setting_reaches_a_declared_notebook_parameter(profile):
    for notebook in stage_notebooks():
        assert undeclared_parameters(profile, notebook) == [], notebook.name


def test_a_setting_the_notebook_does_not_declare_stops_the_run(tmp_path):
    (tmp_path / "typo.yaml").write_text("02_finetune:\n  mlm_stepz: 100\n")
    with pytest.raises(ValueError, match="02_finetune.py: profile .* sets mlm_stepz"):
        run_profile(str(tmp_path / "typo.yaml"), first="02", last="02", output_dir=tmp_path / "out")


def test_exponents_without_a_decimal_point_read_as_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-4` as text; `-p learning_rate 1e-4` then crashed inside AdamW an hour in."""
    assert read_yaml("1e-4") == 1e-4 and read_yaml("-2E5") == -2e5 and read_yaml("[1e-3, 2]") == [1e-3, 2]
    assert read_yaml("2048") == 2048 and isinstance(read_yaml("2048"), int) and read_yaml("1e") == "1e"
    (tmp_path / "p.yaml").write_text("02_finetune:\n  learning_rate: 1e-4\n")
    assert load_profile(tmp_path / "p.yaml")["02_finetune"]["learning_rate"] == 1e-4


@pytest.mark.parametrize("profile", ["quick", "full", "full-accession", "control"])
def test_every_profile_setting_has_its_notebook_defaults_type(profile):
    from kn_utils.runner import OPT_IN_STAGES

    plan = stage_parameters(profile)  # raises, naming notebook and parameter, on a value not of its default's type
    opted_in = profile == "control"  # 08 checks planted truth: only the control profile names it
    assert [notebook for notebook, _ in plan] == [nb for nb in stage_notebooks() if opted_in or nb.name[:2] not in OPT_IN_STAGES]


def test_a_value_of_the_wrong_type_or_a_parameter_no_notebook_declares_stops_the_run_before_it_starts(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"learning_rate = '1e-4x' is str, but its default .* is float"):
        run_profile("quick", first="02", last="02", output_dir=out, overrides={"learning_rate": read_yaml("1e-4x")})
    with pytest.raises(ValueError, match=r"epochs = 2.5 is float, but its default .* is int"):
        run_profile("quick", first="02", last="02", output_dir=out, overrides={"epochs": 2.5})
    with pytest.raises(ValueError, match=r"-p learning_rat: no notebook from 01_data.py to 02_finetune.py declares"):
        run_profile("quick", last="02", output_dir=out, overrides={"learning_rat": 1e-4})
    assert not out.exists()  # nothing ran: not even the output folder was made


def _sanitize(text: str) -> str:
    """Apply tests/nbval/sanitize.cfg the way nbval does, rule by rule in file order."""
    rules = configparser.ConfigParser(interpolation=None)
    rules.read(Path(__file__).parent / "nbval" / "sanitize.cfg")
    for section in rules.sections():
        text = re.sub(rules[section]["regex"], rules[section]["replace"], text)
    return text


def test_sanitizer_hides_wall_clock_but_not_results():
    """Timings differ from run to run (CI failed on 'in 11 s' vs 'in 9 s'); losses and counts must still be compared."""
    reference = "MLM: 30 steps in 11 s; masked-residue loss 3.519 -> 2.936 nats"
    rerun = "MLM: 30 steps in 9 s; masked-residue loss 3.519 -> 2.936 nats"
    assert _sanitize(reference) == _sanitize(rerun)
    assert _sanitize(reference) != _sanitize(rerun.replace("2.936", "2.937"))
    assert _sanitize("done in 1.5 min on device: cpu") == _sanitize("done in 3 min on device: cuda")
    assert "30 steps" in _sanitize(reference)
    # fp32 kernels of different CPUs move a table's fourth decimal (2.2500 on one, 2.2501 on another); the third counts
    assert _sanitize("<td>2.2500</td>") == _sanitize("<td>2.2501</td>") != _sanitize("<td>2.2510</td>")
    assert _sanitize("accuracy 0.5632") != _sanitize("accuracy 0.5642") and _sanitize("1.2345e-05") == "1.2345e-05"


def test_report_says_when_the_warm_start_or_fine_tuning_was_resumed_from_a_checkpoint():
    computed = {"mlm_seconds": 480.0, "train_seconds": 900.0, "wall_s": 1500.0}
    reused = {"mlm_seconds": 480.0, "train_seconds": 900.0, "wall_s": 1000.0}
    assert _mlm_share(computed) == "including 8.0 min of MLM warm start "
    assert "reused from its checkpoint" in _mlm_share(reused) and "24.7 min from scratch" in _mlm_share(reused)
    assert _mlm_share({"mlm_seconds": 0.0, "train_seconds": 900.0, "wall_s": 1000.0}) == ""
    resumed = {"mlm_seconds": 480.0, "train_seconds": 3000.0, "wall_s": 50.0, "resumed_from_step": 5112, "steps": 5112}
    assert _mlm_share(resumed) == ("resuming fine-tuning from its checkpoint at step 5,112 of 5,112 and the MLM warm start "
                                   "from its own; the runs that made them spent 50.0 min fine-tuning and 8.0 min on the warm start ")


def test_the_study_runs_every_profile_up_to_the_comparing_stage_first():
    assert study_phases(["full", "full-accession"]) == [(None, "06"), ("07", None)]
    from kn_utils.runner import STUDY_PROFILES

    assert "control" in STUDY_PROFILES and study_phases(STUDY_PROFILES) == [(None, "06"), ("07", None)]
    assert [notebook.name[:2] for notebook, _ in stage_parameters("control", "07")] == ["07", "08"]  # its opt-in 08 too
    assert study_phases(["full"]) == [(None, None)]  # its comparison run is not part of this study: one phase
    assert study_phases(["quick"]) == [(None, None)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_study_orders_phases_splits_cores_and_names_a_failed_profile(tmp_path, monkeypatch, jobs):
    import sys

    from kn_utils import runner

    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(runner, "stage_parameters", lambda profile: [])
    monkeypatch.setattr(runner, "study_phases", lambda profiles: [(None, "06"), ("07", None)])
    record = tmp_path / "record.txt"
    script = ("import os, sys, time; time.sleep(0.2 if sys.argv[1] == 'a' else 0); "
              "open(sys.argv[4], 'a').write(f\"{sys.argv[1]} {sys.argv[2]} {sys.argv[3]} {os.environ['OMP_NUM_THREADS']}\\n\"); "
              "sys.exit(sys.argv[1] == 'bad' and sys.argv[3] == 'None')")
    monkeypatch.setattr(runner, "stage_command", lambda profile, first, last, rerun: [
        sys.executable, "-c", script, profile, str(first), str(last), str(record)])
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 4)
    runner.run_study(["a", "b"], jobs=jobs)
    lines = record.read_text().splitlines()
    assert sorted(lines[:2]) == [f"a None 06 {4 // jobs}", f"b None 06 {4 // jobs}"]  # both before either's stage 07
    assert sorted(lines[2:]) == [f"a 07 None {4 // jobs}", f"b 07 None {4 // jobs}"]
    assert (tmp_path / "runs" / "a" / "study.log").exists()
    with pytest.raises(RuntimeError, match=r"profile bad failed in stages 07 to last: see .*bad/study.log"):
        runner.run_study(["a", "bad"], jobs=jobs)
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        runner.run_study(["a"], jobs=0)


def test_a_profile_section_or_common_setting_no_notebook_reads_stops_the_run(tmp_path):
    (tmp_path / "typos.yaml").write_text("extends: quick\ncommon:\n  sed: 1\n02_fintune:\n  epochs: 1\n")
    with pytest.raises(ValueError, match=r"section\(s\) 02_fintune name no notebook; common setting\(s\) sed no notebook"):
        run_profile(str(tmp_path / "typos.yaml"), first="02", last="02", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stages_are_numbers_with_or_without_the_leading_zero():
    assert stage_notebooks("3", "4") == stage_notebooks("03", "04") != []
    assert [notebook.name[:2] for notebook in stage_notebooks(2, 2)] == ["02"]
    with pytest.raises(ValueError, match=r"no notebook from stage 9 to last \(stages: 01, 02"):
        stage_parameters("quick", first="9")
    with pytest.raises(ValueError, match=r"stage 'x3': expected a notebook number"):
        stage_notebooks("x3")


def test_a_local_model_folder_is_made_absolute_and_a_hub_id_left_alone(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    monkeypatch.chdir(tmp_path)  # kernels run in notebooks/, so `weights` must not be read from there
    for source, expected in (("weights", str(tmp_path / "weights")), ("facebook/esm2_t6_8M_UR50D", "facebook/esm2_t6_8M_UR50D")):
        ((_, parameters),) = stage_parameters("quick", "02", "02", overrides={"model_source": source})
        assert parameters["model_source"] == expected


def test_profiles_given_as_paths_split_the_study_and_publish_under_their_stems(tmp_path, monkeypatch):
    from kn_utils import __main__ as cli, runner

    (tmp_path / "mine.yaml").write_text("extends: full\n")
    (tmp_path / "mine-accession.yaml").write_text("extends: full-accession\n07_class_neurons:\n  compare_profile: mine\n")
    assert study_phases([str(tmp_path / "mine.yaml"), str(tmp_path / "mine-accession.yaml")]) == [(None, "06"), ("07", None)]
    published = []
    monkeypatch.setattr(runner, "publish", published.append)
    assert cli.main(["publish", "--profile", str(tmp_path / "mine.yaml")]) == 0
    assert published == ["mine"]


def test_a_stage_never_runs_on_a_dataset_its_inputs_were_not_built_from(tmp_path, monkeypatch):
    from kn_utils import data, provenance
    from kn_utils.runner import dataset_mismatches

    run = tmp_path / "runs" / "quick"
    frame = pd.DataFrame({"id": ["a", "b"], "class_name": ["1", "2"], "label": [0, 1], "sequence": ["MKV", "MLL"],
                          "length": [3, 3], "split": ["train", "test"]})
    data.save_dataset(frame, run / "dataset.parquet")
    checksum = data.sequence_checksum(frame)
    for stage in ("data", "finetune"):
        provenance.write_result(run, stage, {}, {}, inputs={"dataset_sha256": checksum})
    assert all(dataset_mismatches(run, stage) == [] for stage in ("01", "02", "3", "07"))
    data.save_dataset(frame.assign(split=["test", "train"]), run / "dataset.parquet")  # notebook 01 re-run, another split
    assert dataset_mismatches(run, "01") == []  # it writes the dataset, it does not read it
    assert [line.split(" records")[0] for line in dataset_mismatches(run, "02")] == [str(run / "data.json")]
    assert [line.split(" records")[0] for line in dataset_mismatches(run, "05")] == [str(run / "data.json"),
                                                                                    str(run / "finetune.json")]
    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(RuntimeError, match=r"03_activations.py: .*data.json records dataset .* run again from the stage"):
        run_profile("quick", first="03", last="03", output_dir=tmp_path / "out")


def test_a_rerun_skips_the_stages_that_finished_with_the_same_inputs_and_resumes_at_the_first_that_did_not(tmp_path,
                                                                                                             monkeypatch):
    import papermill

    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))
    calls, fail_at = [], {"stage": None}

    def execute(notebook, target, parameters, **_):
        """papermill's stand-in: records the stage, writes its executed copy, or dies as a killed kernel would."""
        stage = Path(target).name[:2]
        calls.append(stage)
        if stage == fail_at["stage"]:
            raise RuntimeError("kernel died")
        Path(target).write_text(json.dumps({"stage": stage, "parameters": parameters, "run": len(calls)}))
        (tmp_path / "runs" / "quick" / f"output_{stage}.bin").write_bytes(b"written by stage " + stage.encode() * 100)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    out = tmp_path / "out"

    def ran(**options) -> list[str]:
        calls.clear()
        run_profile("quick", output_dir=out, **options)
        return calls[:]

    every = [notebook.name[:2] for notebook in stage_notebooks() if notebook.name[:2] not in OPT_IN_STAGES]
    assert ran() == every
    assert ran() == []  # all up to date
    assert ran(overrides={"epochs": 3}) == every[1:]  # fine-tuning changed: it and every stage after it
    assert ran(overrides={"epochs": 3}) == []
    (out / "05_ablation.ipynb").unlink()
    assert ran(overrides={"epochs": 3}) == ["05", "07"]  # its executed copy is gone; 07 reads its outputs, 06 does not
    fail_at["stage"] = "04"
    with pytest.raises(RuntimeError, match="kernel died"):
        ran(rerun=True)
    assert not (tmp_path / "runs" / "quick" / "stages" / "04_integrated_gradients.json").exists()
    fail_at["stage"] = None
    assert ran() == every[3:]  # 01-03 finished again before the kill, with the profile's own epochs
    (out / "06_heatmaps.ipynb").write_text("{}")  # an executed copy that is not the one the stage wrote
    assert ran() == ["06"]  # nothing reads notebook 06's outputs
    run = tmp_path / "runs" / "quick"
    (run / "output_02.bin").unlink()  # `rm -r runs/quick/model`: 02's stamp vouches for a file that is gone
    assert ran() == every[1:]
    with open(run / "output_03.bin", "r+b") as handle:  # a truncated output, e.g. last.pt
        handle.truncate(10)
    assert ran() == ["03", "04", "05", "06", "07"]
    fail_at["stage"] = "01"  # notebook 01 fails: --from 02 must not train on the dataset it left behind
    with pytest.raises(RuntimeError, match="kernel died"):
        ran(rerun=True)
    fail_at["stage"] = None
    with pytest.raises(RuntimeError, match=r"02_finetune.py reads .*stage 01 has not finished.*Run from stage 01"):
        ran(first="02")
    assert calls == []
    assert ran() == every


def test_a_stage_stamp_covers_the_modules_it_imports_and_no_other(tmp_path, monkeypatch):
    """Editing a module changes the key of exactly the stages importing it (transitively); plots.py and report.py only
    draw and report, so editing them leaves every stage up to date."""
    import shutil

    from kn_utils import runs

    package = tmp_path / "kn_utils"
    shutil.copytree(runs.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(runs, "PACKAGE_DIR", package)
    run = tmp_path / "run"

    def keys() -> dict[str, str]:
        return {notebook.name[:2]: runs.stage_key(run, notebook, {"profile": "x"}) for notebook in stage_notebooks()}

    before = keys()
    for cosmetic in ("plots.py", "report.py"):
        (package / cosmetic).write_text((package / cosmetic).read_text() + "\n# a cosmetic edit\n")
    assert keys() == before
    (package / "scoring.py").write_text((package / "scoring.py").read_text() + "\n# changes the scores\n")
    after = keys()
    changed = sorted(stage for stage in before if before[stage] != after[stage])
    importing = sorted(notebook.name[:2] for notebook in stage_notebooks() if "scoring" in runs.stage_modules(notebook))
    assert changed == importing and "01" not in changed and {"03", "04"} <= set(changed)
    assert "motifs" in runs.stage_modules(runs.source_of("07")) and "motifs" not in runs.stage_modules(runs.source_of("02"))
    assert "stats" in runs.stage_modules(runs.source_of("06"))  # reached through heatmaps: transitive
    assert all("runs" not in runs.stage_modules(notebook) and "stage" in runs.stage_modules(notebook)
               for notebook in stage_notebooks())  # bookkeeping is not in a key; the stage helper is


def test_a_stage_stamp_covers_the_stamps_of_the_stages_it_reads_and_no_other(tmp_path):
    from kn_utils import runs

    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    heatmaps = runs.source_of("06")
    before = runs.stage_key(run, heatmaps, {})
    (run / "stages" / "05_ablation.json").write_text('{"key": "a rerun of 05"}')
    assert runs.stage_key(run, heatmaps, {}) == before  # 06 does not read 05's outputs
    (run / "stages" / "04_integrated_gradients.json").write_text('{"key": "a rerun of 04"}')
    assert runs.stage_key(run, heatmaps, {}) != before


@pytest.mark.skipif(not Path("/proc/sys/net/ipv4/ip_local_port_range").exists(), reason="Linux's ephemeral port range")
def test_the_kernels_group_port_is_free_and_below_the_ports_the_system_hands_out():
    """Under torchrun, the kernels' process group listens on a port no kernel's ZeroMQ socket can be given (those are
    the system's picks, from its ephemeral range): the collision that once failed the torchrun test."""
    import socket

    from kn_utils.runner import _free_port

    lowest = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {_free_port() for _ in range(5)}
    assert all(1024 <= port < lowest for port in ports) and len(ports) > 1  # drawn at random, so two runs differ
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("", port))


def test_kernels_import_the_kn_utils_of_the_checkout_that_runs_them(tmp_path):
    """A clone run with another checkout's environment (an editable install of main, say) must not execute main's code
    under the clone's stage keys: the kernels' PYTHONPATH puts the running checkout first."""
    import kn_utils

    clone = tmp_path / "clone"
    shutil.copytree(Path(kn_utils.__file__).parent, clone / "kn_utils", ignore=shutil.ignore_patterns("__pycache__"))
    probe = ("import subprocess, sys; from kn_utils.runner import kernel_environment; "
             "print(subprocess.run([sys.executable, '-c', 'import kn_utils; print(kn_utils.__file__)'], cwd='/', text=True, "
             "capture_output=True, env=kernel_environment({'PYTHONPATH': '/elsewhere'})).stdout)")
    found = subprocess.run([sys.executable, "-c", probe], cwd=clone, text=True, capture_output=True, check=True).stdout
    assert Path(found.strip()) == clone / "kn_utils" / "__init__.py"
    assert kernel_environment({"PYTHONPATH": "/a"})["PYTHONPATH"] == os.pathsep.join([str(REPO_ROOT), "/a"])
