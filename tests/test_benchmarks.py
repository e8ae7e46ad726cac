"""The benchmarks start: each reads the study's settings it defaults to and parses its arguments."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.py") if path.name != "study_settings.py"))
def test_each_benchmark_parses_its_arguments_from_the_study_settings(script, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_study_settings_are_the_notebook_defaults_under_the_profile(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from study_settings import study_parameters

    settings = study_parameters("02_finetune")
    assert settings["max_tokens"] == 2048  # declared in notebooks/02_finetune.py, not in the profile
    assert settings["epochs"] == 12 and settings["seed"] == 0  # the full profile's
    assert study_parameters("02_finetune", "full-seed1")["seed"] == 1
