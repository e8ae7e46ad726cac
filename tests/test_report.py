"""The README's sentences are derived from the sweep, not written by hand."""
import pandas as pd

from kn_utils.report import _ablation_answers, _split_accuracies


def _sweep(signed_low: dict[float, float]) -> dict:
    """ablation.json of a zero-ablation sweep: three random seeds, each rule's high set, signed IG's low set as given."""
    rows = []
    for fraction in (0.5, 0.1):
        rows += [("random", "-", fraction, seed, accuracy) for seed, accuracy in enumerate((0.30, 0.32, 0.34))]
        rows += [(method, "high", fraction, None, 0.5) for method in ("activation", "ig_signed", "ig_absolute")]
        rows.append(("ig_signed", "low", fraction, None, signed_low[fraction]))
    frame = pd.DataFrame(rows, columns=["method", "direction", "keep_fraction", "seed", "accuracy"])
    return {"submodels": frame.assign(ablation="zero", matched=False).to_dict("records"),
            "provenance": {"parameters": {"keep_fractions": [0.5, 0.1]}}}


def test_high_against_low_ig_says_every_size_only_when_it_holds_at_every_size():
    everywhere = _ablation_answers(_sweep({0.5: 0.2, 0.1: 0.2}))
    assert everywhere[-1].endswith("keeps more accuracy at every size (50%, 10%).")
    partly = _ablation_answers(_sweep({0.5: 0.2, 0.1: 0.6}))
    assert partly[-1].endswith("keeps more accuracy at 50% of 50%, 10%.")
    assert partly[0] == "- Activation (high scores kept) beats random by more than 2 sd at: 50%, 10%."


def test_the_similarity_sentence_reads_the_buckets_a_result_file_holds_and_is_absent_from_older_files():
    from kn_utils.report import _similarity_lines

    assert _similarity_lines({"accuracy": 0.5}) == []
    buckets = [{"similarity": ">= 0.99", "chains": 200, "accuracy": 0.875, "nearest_chain_accuracy": 0.995},
               {"similarity": "0.9-0.99", "chains": 0, "accuracy": float("nan"), "nearest_chain_accuracy": float("nan")},
               {"similarity": "< 0.5", "chains": 1000, "accuracy": 0.38, "nearest_chain_accuracy": 0.55}]
    sentence = _similarity_lines({"accuracy_by_similarity": buckets})[0]
    assert ">= 0.99 (200 chains) 0.875, < 0.5 (1,000 chains) 0.380;" in sentence and "nan" not in sentence
    assert sentence.endswith("right for 0.995, 0.550 of them.")


def test_a_later_stage_computed_before_the_model_it_describes_is_flagged():
    from kn_utils.report import _flagged, _stale_note

    def result(created, epochs):
        return {"provenance": {"created": created, "model": {"training": {"train_config": {"epochs": epochs}}}}}

    finetune = {"provenance": {"created": "2026-12-03T22:15:04+00:00"}, "history": [{}] * 12}
    stale = _flagged(["### Table 1 (notebook 05)", "table"], result("2026-11-23T18:00:00+00:00", 8), finetune)
    assert stale[0] == "### Table 1 (notebook 05)" and stale[-1] == "table"
    assert "earlier model" in stale[1] and "trained 8 epochs, against 12" in stale[1] and "2026-11-23" in stale[1]
    assert _stale_note(result("2026-12-03T23:00:00+00:00", 12), finetune) == []  # computed after the model: current
    assert _stale_note(result("2026-12-03T23:00:00+00:00", 12), None) == []  # no notebook 02 result to compare with


def test_the_control_section_renders_the_planted_truth_answers_from_the_result_file(tmp_path):
    import json

    from kn_utils.report import render

    record = {"init": "random", "model_source": "random-init:x", "accuracy": 0.97,
              "sweep": [{"kept": "25%", "IG signed": 0.4, "activation": 0.3, "random mean": 0.29, "random sd": 0.03,
                         "IG z vs random": 3.7}],
              "summary": [{"question": "IG-kept submodels beat random by > 2 sd", "yes": 1, "of": 1, "counted over": "kept sizes"}]}
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "planted_truth.json").write_text(json.dumps(record))
    text = render(tmp_path)
    assert "### Positive control" in text and "test accuracy 0.9700" in text and "**random init**" in text
    assert "| IG-kept submodels beat random by > 2 sd |     1 |    1 | kept sizes" in text
    assert "completeness" not in text  # no IG result file published beside it: nothing said about it
    ig = {"completeness_error_median": 0.0054, "completeness_error_p90_beyond_small_change": 0.0196,
          "small_change_absolute_error_max": 0.0071, "converged_share": 0.833, "within_bound": False}
    (tmp_path / "control" / "integrated_gradients.json").write_text(json.dumps(ig))
    line = next(line for line in render(tmp_path).splitlines() if "IG completeness" in line)
    assert "largest absolute error 0.0071 where it is smaller; 83.3% of examples within the tolerance" in line
    assert "(outside the study's bound)" in line  # said as the result file says it, not assumed


def test_the_family_comparison_is_said_in_sentences_read_off_its_table():
    from kn_utils.ablation import family_winners
    from kn_utils.report import _family_findings

    rows = []
    for family, ig, activation, random in (("qkv", (0.30, 0.40), (0.30, 0.20), (0.35, 0.25)),
                                           ("ffn", (0.50, 0.35), (0.55, 0.30), (0.45, 0.20))):
        for kept, i, a, r in zip((0.5, 0.01), ig, activation, random):
            rows.append({"family": family, "kept": kept, "IG signed": i, "IG signed beats random": i > r + 0.02,
                         "activation": a, "activation beats random": a > r + 0.02, "random_mean": r, "random_sd": 0.01})
    table = pd.DataFrame(rows)
    lines = _family_findings(table, family_winners(table), {"qkv": 5760, "ffn": 7680})
    assert lines[0].startswith("- qkv (5,760 units)") and lines[0].endswith("at no kept fraction.")
    assert lines[1].startswith("- ffn (7,680 units)") and lines[1].endswith("at 50% kept.")  # at 1 % qkv wins by IG
    assert lines[2] == "- Within qkv: IG signed beats random by more than 2 sd at 1%; activation at no size."
    assert lines[3] == "- Within ffn: IG signed beats random by more than 2 sd at 50%, 1%; activation at 50%, 1%."


def test_the_split_sentence_says_which_split_is_at_its_majority_baseline():
    splits = pd.DataFrame({"full": {"split": "random", "accuracy": 0.57, "majority_baseline": 0.357, "n_test": 1630},
                           "ident": {"split": "identity 30%", "accuracy": 0.362, "majority_baseline": 0.357, "n_test": 1629}})
    sentence = _split_accuracies(splits)
    assert "0.570 ± 0.012 on the random split against a majority baseline of 0.357;" in sentence
    assert sentence.endswith("0.362 ± 0.012 on the identity 30% split against a majority baseline of 0.357 (within 2 se of it).")


def test_the_claims_summary_names_what_held_in_every_seed_in_some_and_in_none():
    from kn_utils.report import _claims_summary

    table = pd.DataFrame({"claim": ["IG beats random", "IG beats random", "key densest", "ffn keeps more", "high beats low"],
                          "at": ["50% kept", "10% kept", "activation", "50% kept", "1% kept"],
                          "seed 0 holds": [True, True, False, True, True], "seed 1 holds": [True, True, False, None, False],
                          "seed 2 holds": [True, True, False, False, True]})
    assert _claims_summary(table, [0, 1, 2]) == [  # a claim tested on 2 seeds only is in none of the three
        "- Held in all 3 seeds: IG beats random (50% kept, 10% kept).",
        "- Held in some seeds but not all, so not findings: high beats low (1% kept).",
        "- Held in no seed: key densest (activation).",
        "- Not yet tested in every seed (held in k of the n tested): ffn keeps more (50% kept: 1 of 2)."]
    assert len(_claims_summary(table[table["claim"] != "ffn keeps more"], [0, 1, 2])) == 3  # all tested: no fourth line
