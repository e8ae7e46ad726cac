"""Claims read off a run's result files, and their tally over training seeds, on sweeps with known answers."""
import json

import pytest

from kn_utils import claims

FRACTIONS = [0.5, 0.1]


def ablation(ig: float, activation: float, low: float, random: list[float], weights: str = "w0", family: str = "qkv") -> dict:
    """An ablation.json whose rules score as given at both kept fractions (random: one row per seed)."""
    rows = [{"method": "full", "direction": "-", "ablation": "none", "keep_fraction": 1.0, "seed": None,
             "matched": False, "accuracy": 0.6}]
    for fraction in FRACTIONS:
        rows += [{"method": method, "direction": direction, "ablation": "zero", "keep_fraction": fraction, "seed": None,
                  "matched": False, "accuracy": value}
                 for method, direction, value in (("ig_signed", "high", ig), ("ig_signed", "low", low),
                                                  ("activation", "high", activation))]
        rows += [{"method": "random", "direction": "-", "ablation": "zero", "keep_fraction": fraction, "seed": seed,
                  "matched": False, "accuracy": value} for seed, value in enumerate(random)]
        rows.append({"method": "ig_signed", "direction": "high", "ablation": "zero", "keep_fraction": fraction,
                     "seed": None, "matched": True, "accuracy": 0.0})  # a matched control: never read as the rule
    return {"submodels": rows, "provenance": {"parameters": {"keep_fractions": FRACTIONS, "family": family},
                                              "inputs": {"weights_sha256": weights}}}


HEATMAPS = {"tests": [{"claim": "key densest", "method": "IG signed (high)", "sparsity": s, "p_holm": p}
                      for s, p in ((0.5, 0.2), (0.9, 0.01))]
            + [{"claim": "value least important", "method": "IG signed (high)", "sparsity": 0.5, "p_holm": 0.5}]}


def test_sweep_claims_follow_the_margin_over_random():
    rows = {(r["claim"], r["at"]): r for r in claims.sweep_claims(ablation(0.5, 0.42, 0.3, [0.35, 0.4, 0.45]))}
    # random: mean 0.40, sd 0.05, bar 0.50: IG at 0.50 is not beyond it, activation neither
    assert not rows["IG signed (high) beats random", "50% kept"]["holds"]
    assert rows["IG signed (high) beats activation", "10% kept"]["holds"]
    assert rows["high IG beats low IG", "50% kept"] == {"claim": "high IG beats low IG", "at": "50% kept", "holds": True,
                                                        "value": 0.2}
    rows = {(r["claim"], r["at"]): r for r in claims.sweep_claims(ablation(0.51, 0.42, 0.3, [0.35, 0.4, 0.45]))}
    assert rows["IG signed (high) beats random", "10% kept"]["holds"]


def test_heatmap_claims_hold_at_any_sparsity_after_holm():
    rows = {(r["claim"], r["at"]): r for r in claims.heatmap_claims(HEATMAPS)}
    assert rows["key densest", "IG signed (high)"]["holds"] and rows["key densest", "IG signed (high)"]["value"] == 0.01
    assert not rows["value least important", "IG signed (high)"]["holds"]


def test_family_claims_need_one_model():
    qkv, ffn = ablation(0.4, 0.4, 0.3, [0.3, 0.3]), ablation(0.6, 0.3, 0.3, [0.3, 0.3], family="ffn")
    rows = {(r["claim"], r["at"]): r["holds"] for r in claims.family_claims(qkv, ffn)}
    assert rows["ffn units keep more accuracy than q/k/v (IG signed)", "50% kept"]
    assert not rows["ffn units keep more accuracy than q/k/v (activation)", "50% kept"]
    with pytest.raises(ValueError, match="different weights"):
        claims.family_claims(qkv, ablation(0.6, 0.3, 0.3, [0.3, 0.3], weights="w1", family="ffn"))


def _write_run(folder, sweep, seed, ffn=None):
    folder.mkdir(parents=True)
    (folder / "ablation.json").write_text(json.dumps(sweep))
    (folder / "heatmaps.json").write_text(json.dumps(HEATMAPS))
    (folder / "class_neurons.json").write_text(json.dumps({"suppression_classes_supported": 4 - seed,
                                                           "classes": [1, 2, 3, 4, 5, 6]}))
    (folder / "finetune.json").write_text(json.dumps({"provenance": {"parameters": {"seed": seed},
                                                                     "inputs": {"weights_sha256": sweep["provenance"]["inputs"]["weights_sha256"],
                                                                                "dataset_sha256": "d"}}}))
    if ffn is not None:
        (folder.parent / f"{folder.name}-ffn").mkdir()
        (folder.parent / f"{folder.name}-ffn" / "ablation.json").write_text(json.dumps(ffn))


def test_seed_claims_count_each_claim_over_the_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))
    _write_run(tmp_path / "runs" / "a", ablation(0.6, 0.45, 0.3, [0.3, 0.32], "w0"), 0,
               ffn=ablation(0.7, 0.5, 0.3, [0.3, 0.3], "w0", "ffn"))
    _write_run(tmp_path / "runs" / "b", ablation(0.3, 0.45, 0.4, [0.3, 0.32], "w1"), 1)
    path = claims.seed_claims(["a", "b"], tmp_path / "out")
    record = json.loads(path.read_text())
    table = {(row["claim"], row["at"]): row for row in record["claims"]}
    assert table["IG signed (high) beats random", "50% kept"]["holds in"] == "1 of 2"
    assert table["activation beats random", "50% kept"]["holds in"] == "2 of 2"
    assert table["suppressing a class's neurons hurts that class most", "most classes"]["holds in"] == "1 of 2"  # 4, 3 of 6
    assert table["ffn units keep more accuracy than q/k/v (IG signed)", "50% kept"]["holds in"] == "1 of 1"
    assert record["seeds"] == [0, 1] and record["provenance"]["inputs"] == {"seed 0": "w0", "seed 1": "w1"}
    with pytest.raises(ValueError, match="seed 0 is already counted"):
        claims.seed_claims(["a", "a"], tmp_path / "out")


def test_readme_shows_each_claim_per_seed(tmp_path, monkeypatch):
    from kn_utils.report import render

    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))
    _write_run(tmp_path / "runs" / "a", ablation(0.6, 0.45, 0.3, [0.3, 0.32], "w0"), 0)
    _write_run(tmp_path / "runs" / "b", ablation(0.3, 0.45, 0.4, [0.3, 0.32], "w1"), 1)
    claims.seed_claims(["a", "b"], tmp_path / "results")
    section = render(tmp_path / "results").split("### The claims across training seeds")[1]
    assert "Runs `a`, `b`" in section and "seeds 0, 1" in section
    row = next(line for line in section.splitlines() if line.startswith("| IG signed (high) beats random") and "50%" in line)
    assert "yes (0.6)" in row and "no (0.3)" in row and "1 of 2" in row
    assert "Interim tally" not in section
    some = next(line for line in section.splitlines() if line.startswith("- Held in some seeds but not all"))
    assert "IG signed (high) beats random (50% kept, 10% kept)" in some and "activation beats random" not in some


def test_an_interim_tally_names_the_seeds_still_pending(tmp_path, monkeypatch):
    from kn_utils.report import _headline_seeds, render

    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))
    _write_run(tmp_path / "runs" / "a", ablation(0.6, 0.45, 0.3, [0.3, 0.32], "w0"), 0)
    _write_run(tmp_path / "runs" / "b", ablation(0.3, 0.45, 0.4, [0.3, 0.32], "w1"), 1)
    record = json.loads(claims.seed_claims(["a", "b"], tmp_path / "results", planned=("a", "b", "c")).read_text())
    assert record["pending"] == ["c"]
    section = render(tmp_path / "results").split("### The claims across training seeds")[1]
    assert "**Interim tally**: 2 seeds published so far; not yet run: `c`." in section
    assert _headline_seeds(record, 0)[0].startswith(  # the first screen's table says which model it is, and points here
        "The table is training seed 0's model. Over the published training seeds (0, 1; interim, c not yet run), "
        "keeping the highest-scoring neurons beat random by more than 2 sd for integrated gradients at 50% in 1 of 2, "
        "10% in 1 of 2; for activation at 50% in 2 of 2, 10% in 2 of 2:")


def test_a_seed_without_its_ffn_run_leaves_the_family_claim_pending(tmp_path, monkeypatch):
    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))
    _write_run(tmp_path / "runs" / "a", ablation(0.6, 0.45, 0.3, [0.3, 0.32], "w0"), 0,
               ffn=ablation(0.7, 0.5, 0.3, [0.3, 0.3], "w0", "ffn"))
    _write_run(tmp_path / "runs" / "b", ablation(0.3, 0.45, 0.4, [0.3, 0.32], "w1"), 1)
    (tmp_path / "runs" / "b-ffn").mkdir()  # a run started but not through its sweep compares nothing yet
    record = json.loads(claims.seed_claims(["a", "b"], tmp_path / "out", planned=("a", "b", "a-ffn", "b-ffn")).read_text())
    assert record["pending"] == ["b-ffn"]
    assert [run["family_profile"] for run in record["runs"].values()] == ["a-ffn", None]
    table = {(row["claim"], row["at"]): row for row in record["claims"]}
    assert table["ffn units keep more accuracy than q/k/v (IG signed)", "50% kept"]["holds in"] == "1 of 1"


def test_a_published_tally_reads_the_published_record(tmp_path, monkeypatch):
    from kn_utils.runner import record_dir

    monkeypatch.setenv("KN_RUNS_DIR", str(tmp_path / "runs"))  # no runs at all: the record alone is tallied
    _write_run(tmp_path / "repo" / "results" / "full-seed1", ablation(0.3, 0.45, 0.4, [0.3, 0.32], "w1"), 1)
    results = tmp_path / "repo" / "results"
    _write_run(results / "x", ablation(0.6, 0.45, 0.3, [0.3, 0.32], "w0"), 0,
               ffn=ablation(0.7, 0.5, 0.3, [0.3, 0.3], "w0", "ffn"))
    for name in ("ablation.json", "heatmaps.json", "class_neurons.json", "finetune.json"):  # `full` is results/ itself
        (results / "x" / name).rename(results / name)
    (results / "x-ffn").rename(results / "full-ffn")
    record = json.loads(claims.seed_claims(["full", "full-seed1"], results,
                                           locate=lambda profile: record_dir(profile, tmp_path / "repo")).read_text())
    assert record["provenance"]["inputs"] == {"seed 0": "w0", "seed 1": "w1"}
    table = {(row["claim"], row["at"]): row for row in record["claims"]}
    assert table["ffn units keep more accuracy than q/k/v (IG signed)", "50% kept"]["holds in"] == "1 of 1"  # full-ffn read
    with pytest.raises(FileNotFoundError, match="full-seed2: no ablation.json"):
        claims.seed_claims(["full", "full-seed2"], results, locate=lambda profile: record_dir(profile, tmp_path / "repo"))
