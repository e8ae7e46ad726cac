"""The study's claims read off one run's result files, and tallied over runs of several training seeds.

A claim read off one trained model is not a finding: each is answered per run (the paper's: IG and activation beat
random, IG beats activation, high IG beats low IG, value least important, key densest, class-specific suppression;
this study's: whether feed-forward units keep more accuracy than q/k/v units), then counted as "holds in k of n".
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .ablation import family_comparison, plain_zero
from .provenance import read_json

MARGIN_SD = 2.0  # ablation.family_comparison's margin: a rule beats random beyond random's mean + 2 sd over seeds
HOLM_ALPHA = 0.05


def submodels(ablation: dict) -> pd.DataFrame:
    """ablation.json's submodel table (random-free rules get seed -1)."""
    frame = pd.DataFrame(ablation["submodels"])
    frame["seed"] = frame["seed"].fillna(-1)
    return frame


def _rules(ablation: dict, family: str = "") -> pd.DataFrame:
    """Per kept fraction: IG signed and activation (high) against random, as ablation.family_comparison reads them."""
    return family_comparison({family: submodels(ablation)}, ablation["provenance"]["parameters"]["keep_fractions"]
                             ).set_index("kept")


def sweep_claims(ablation: dict) -> list[dict]:
    """Table 1's claims at each kept fraction: rules against random (mean + 2 sd), IG against activation, high IG
    against low IG."""
    plain, rules = plain_zero(submodels(ablation)), _rules(ablation)
    rows = []
    for fraction, rule in rules.iterrows():
        ig, activation = rule["IG signed"], rule["activation"]
        low = plain.loc[(plain["method"] == "ig_signed") & (plain["direction"] == "low")
                        & (plain["keep_fraction"] == fraction), "accuracy"].iloc[0]
        for claim, value, holds in (("IG signed (high) beats random", ig, rule["IG signed beats random"]),
                                    ("activation beats random", activation, rule["activation beats random"]),
                                    ("IG signed (high) beats activation", ig - activation, ig > activation),
                                    ("high IG beats low IG", ig - low, ig > low)):
            rows.append({"claim": claim, "at": f"{fraction:.0%} kept", "holds": bool(holds), "value": round(float(value), 4)})
    return rows


def heatmap_claims(heatmaps: dict) -> list[dict]:
    """Notebook 06's claims per selection rule: holds when Holm-corrected p < 0.05 at some sparsity (value: the
    smallest p)."""
    tests = pd.DataFrame(heatmaps["tests"])
    return [{"claim": claim, "at": method, "holds": bool((group["p_holm"] < HOLM_ALPHA).any()),
             "value": round(float(group["p_holm"].min()), 4)}
            for (claim, method), group in tests.groupby(["claim", "method"], sort=False)]


def suppression_claim(class_neurons: dict) -> list[dict]:
    """Class-specific suppression: holds when it hurts its own class most, beyond 2 random sd, for most classes."""
    supported, classes = class_neurons["suppression_classes_supported"], len(class_neurons["classes"])
    return [{"claim": "suppressing a class's neurons hurts that class most", "at": "most classes",
             "holds": bool(supported > classes / 2), "value": supported}]


def family_claims(ablation: dict, other: dict) -> list[dict]:
    """This study's claim: at equal kept fractions, the other family (e.g. ffn) keeps more accuracy than the record's
    q/k/v units, per rule (IG signed, activation, random mean); value: the other family's accuracy minus q/k/v's."""
    if other["provenance"]["inputs"].get("weights_sha256") != ablation["provenance"]["inputs"].get("weights_sha256"):
        raise ValueError("the two sweeps were written from different weights; a family comparison needs one model")
    family = other["provenance"]["parameters"].get("family")
    ours, theirs = _rules(ablation), _rules(other, family)
    rows = []
    for fraction in ours.index:
        for rule in ("IG signed", "activation"):
            difference = theirs.loc[fraction, rule] - ours.loc[fraction, rule]
            rows.append({"claim": f"{family} units keep more accuracy than q/k/v ({rule})", "at": f"{fraction:.0%} kept",
                         "holds": bool(difference > 0), "value": round(float(difference), 4)})
    return rows


def run_claims(results: Path, family_results: Path | None = None) -> list[dict]:
    """Every claim of one run (`results`: a folder of its result files), with the family comparison when
    `family_results` holds the same model's sweep of another family."""
    ablation = read_json(results / "ablation.json")
    rows = sweep_claims(ablation) + heatmap_claims(read_json(results / "heatmaps.json"))
    if (results / "class_neurons.json").exists():
        rows += suppression_claim(read_json(results / "class_neurons.json"))
    if family_results is not None and (family_results / "ablation.json").exists():
        rows += family_claims(ablation, read_json(family_results / "ablation.json"))
    return rows


def tally(per_seed: dict[int, list[dict]]) -> pd.DataFrame:
    """Claims of several training seeds side by side: each seed's value and whether it holds, and "k of n"."""
    frames = [pd.DataFrame(rows).set_index(["claim", "at"]).add_prefix(f"seed {seed} ") for seed, rows in per_seed.items()]
    table = pd.concat(frames, axis=1, join="outer")
    held, counted = held_counts(table, list(per_seed))
    table["holds in"] = held.astype(str) + " of " + counted.astype(str)
    return table.reset_index()


def held_counts(table: pd.DataFrame, seeds: list) -> tuple[pd.Series, pd.Series]:
    """Per claim of a tally: in how many seeds it holds, and in how many it was tested."""
    held = table[[f"seed {seed} holds" for seed in seeds]]
    return held.fillna(False).astype(bool).sum(axis=1), held.notna().sum(axis=1)


def seed_claims(profiles: list[str], folder: Path, locate: Callable[[str], Path] | None = None,
                planned: tuple[str, ...] = ()) -> Path:
    """Tally the claims of the runs of `profiles` (one training seed each; a run `<profile>-ffn` beside one adds the
    family claim) and write `folder`/claims.json, with each seed's weights fingerprint and dataset checksum.

    `locate` gives the folder of a profile's result files: its run (runs/<profile>) unless told otherwise, e.g. the
    published record (`runner.record_dir`), so that a published tally reads exactly the published files. The runs
    of `planned` (seeds, and their `-ffn` runs) not counted are recorded as pending: the tally is then an interim one,
    and says so."""
    from .provenance import write_result
    from .runs import runs_root

    locate = locate or (lambda profile: runs_root() / profile)
    per_seed, inputs = {}, {}
    for profile in profiles:
        run = locate(profile)
        if not (run / "ablation.json").exists():
            raise FileNotFoundError(f"{run}: no ablation.json; run `python -m kn_utils run --profile {profile}` "
                                    "(and publish it, for a published tally) first")
        finetune = read_json(run / "finetune.json")
        seed = finetune["provenance"]["parameters"]["seed"]
        if seed in per_seed:
            raise ValueError(f"{profile}: seed {seed} is already counted (from {inputs[seed]['profile']}); one run per seed")
        family = locate(f"{profile}-ffn")
        compared = (family / "ablation.json").exists()
        per_seed[seed] = run_claims(run, family if compared else None)
        inputs[seed] = {"profile": profile, "family_profile": f"{profile}-ffn" if compared else None,
                        **finetune["provenance"]["inputs"]}
    table = tally(per_seed)
    counted = set(profiles) | {run["family_profile"] for run in inputs.values()}
    figures = {"seeds": list(per_seed), "claims": table.to_dict("records"), "runs": inputs,
               "pending": [profile for profile in planned if profile not in counted]}
    return write_result(folder, "claims", figures, {"profiles": list(profiles), "margin_sd": MARGIN_SD, "holm_alpha": HOLM_ALPHA},
                        inputs={f"seed {seed}": found["weights_sha256"] for seed, found in inputs.items()})
