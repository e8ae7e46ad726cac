"""The committed record (notebooks/, results/, figures/ of each published profile): one model per profile, and every
executed notebook run from its source as it stands (issue 51)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from kn_utils.runner import ACROSS_RUNS
from kn_utils.runs import notebook_node, source_of

REPO = Path(__file__).resolve().parent.parent
RESULTS, NOTEBOOKS = REPO / "results", REPO / "notebooks"
PROFILES = {"full": ""} | {folder.name: folder.name for folder in sorted(RESULTS.iterdir()) if folder.is_dir()}


def _inputs(folder: Path) -> dict[str, dict]:
    return {path.name: json.loads(path.read_text())["provenance"].get("inputs", {}) for path in sorted(folder.glob("*.json"))
            if path.name not in ACROSS_RUNS}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_result_file_of_a_profile_names_one_model_and_one_dataset(profile):
    inputs = _inputs(RESULTS / PROFILES[profile])
    weights = {name: found["weights_sha256"] for name, found in inputs.items() if "weights_sha256" in found}
    datasets = {name: found["dataset_sha256"] for name, found in inputs.items() if "dataset_sha256" in found}
    assert len(set(weights.values())) == 1, f"results/{PROFILES[profile]}: several models: {weights}"
    assert len(set(datasets.values())) == 1, f"results/{PROFILES[profile]}: several datasets: {datasets}"
    assert set(weights) == set(inputs) - {"data.json"}  # every stage after notebook 01 names its weights


def _code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells
            if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", [])]


@pytest.mark.parametrize("executed", sorted(NOTEBOOKS.glob("**/[0-9][0-9]_*.ipynb")), ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_every_record_notebook_ran_from_its_source_as_it_stands(executed):
    source = source_of(executed.stem)
    assert _code_cells(nbformat.read(executed, as_version=4)) == _code_cells(notebook_node(source)), (
        f"{executed.relative_to(REPO)} was executed from another version of {source.name}: re-run and publish its profile")
