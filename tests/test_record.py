"""The committed record (results/ of each published profile): one model and one dataset per profile (issue 51).
That every record notebook ran from its source as it stands is checked beside the quick copies, in test_notebooks.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kn_utils.runner import ACROSS_RUNS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
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


@pytest.mark.skipif(not (RESULTS / "claims.json").exists(), reason="the seed runs' claims are not published yet")
def test_the_claims_tally_three_seeds_each_from_its_published_model():
    record = json.loads((RESULTS / "claims.json").read_text())
    assert len(record["seeds"]) >= 3 and len(set(record["seeds"])) == len(record["seeds"])
    for seed, run in record["runs"].items():
        published = RESULTS / PROFILES.get(run["profile"], run["profile"]) / "finetune.json"
        if published.exists():  # a seed's run published beside the record names the weights the tally read
            assert json.loads(published.read_text())["provenance"]["inputs"]["weights_sha256"] == run["weights_sha256"], seed
