"""The README's Results section, generated from the committed result files (results/*.json)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .claims import submodels, sweep_claims
from .provenance import REPO_ROOT, atomic_path, read_json

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"


def _load(results: Path, stage: str) -> dict | None:
    """A committed result file, None when that stage has not been published (a corrupt one is named by read_json)."""
    path = results / f"{stage}.json"
    return read_json(path) if path.exists() else None


def _weights(result: dict) -> str:
    """Which weights a result came from, in words: pretrained and from where, or random init, said plainly."""
    init = result.get("init", "unknown")
    if init == "pretrained":
        return f"pretrained ESM-2 weights (`{result.get('model_source')}`)"
    warm = result.get("warm_start")
    start = f", encoder warmed up by masked-language modelling on the training chains (`{warm}`)" if warm else ""
    return f"**random init** (`{result.get('model_source')}`){start}, not pretrained ESM-2"


def _pooling(finetune: dict) -> str:
    """What the classification head read (result files before pooling was a setting read <cls>)."""
    pooling = finetune.get("pooling", "cls")
    heads = {"mean": "the mean final state of all non-padding positions",
             "max": "each unit's largest final state over the non-padding positions"}
    if pooling in heads:
        return f"{heads[pooling]} (`pooling: {pooling}`; the paper's head reads `<cls>`)"
    return "the final `<cls>` state, as in the paper"


def _data_section(data: dict) -> list[str]:
    """README lines for notebook 01: dataset size, split, class balance and drops by reason."""
    counts = data["counts"]
    per_class = {c: counts["train"][c] + counts["test"][c] for c in counts["train"]}
    reasons = sorted(data["dropped"].items(), key=lambda item: -item[1])
    dropped = ", ".join(f"{reason.replace('_', ' ')} {count:,}" for reason, count in reasons)
    return [
        "### Dataset (notebook 01)",
        f"{data['n_sequences']:,} distinct enzyme sequences ({data['n_train']:,} train / {data['n_test']:,} test, stratified, seeded), "
        f"per EC class {', '.join(f'{c}: {n:,}' for c, n in per_class.items())} (the paper: 11,731, about 2,000 per class). "
        f"Dropped: {dropped}. "
        + (f"{data['records_with_tag_trimmed']:,} sequences had an expression tag cut (His or T7 tag, linker up to the protease site). "
           if data.get("records_with_tag_trimmed") else "")
        + f"{data.get('test_accessions_seen_in_train', 0):.0%} of test sequences share a UniProt accession with a training sequence.",
        "",
        "![class counts](figures/01_class_counts.png)",
        "",
    ]


def _mlm_share(finetune: dict) -> str:
    """How the MLM warm start and fine-tuning enter the wall time: computed in it, or resumed from checkpoints of
    earlier runs of the same settings (whose times the file carries over: train_seconds adds up across resumes)."""
    mlm_seconds, train_seconds = finetune.get("mlm_seconds") or 0.0, finetune["train_seconds"]
    resumed = finetune.get("resumed_from_step") or 0
    if resumed:
        warm = " and the MLM warm start from its own" if mlm_seconds else ""
        return (f"resuming fine-tuning from its checkpoint at step {resumed:,} of {finetune['steps']:,}{warm}; "
                f"the runs that made them spent {train_seconds / 60:.1f} min fine-tuning"
                + (f" and {mlm_seconds / 60:.1f} min on the warm start " if mlm_seconds else " "))
    if not mlm_seconds:
        return ""
    if mlm_seconds + train_seconds <= finetune["wall_s"]:
        return f"including {mlm_seconds / 60:.1f} min of MLM warm start "
    # Stage time cannot hold both: the warm start came from a finished mlm.pt of an earlier run of the same settings.
    return (f"with the MLM warm start reused from its checkpoint; computing it took {mlm_seconds / 60:.1f} min, "
            f"so {(finetune['wall_s'] + mlm_seconds) / 60:.1f} min from scratch ")


def _similarity_lines(finetune: dict) -> list[str]:
    """A sentence on accuracy by the similarity of each test chain's nearest training chain (files since notebook 02 has it)."""
    buckets = finetune.get("accuracy_by_similarity")
    if not buckets:
        return []
    cells = [f"{row['similarity']} ({row['chains']:,} chains) {row['accuracy']:.3f}" for row in buckets if row["chains"]]
    yardstick = [f"{row['nearest_chain_accuracy']:.3f}" for row in buckets if row["chains"]]
    return [f"By the 3-mer similarity of each test chain's nearest training chain, test accuracy is {', '.join(cells)}; "
            f"that nearest chain's class is right for {', '.join(yardstick)} of them.", ""]


def _finetune_section(finetune: dict) -> list[str]:
    """README lines for notebook 02: test metrics against the baselines, time and throughput, the weights used."""
    epochs = len(finetune["history"])
    return [
        "### Fine-tuning (notebook 02)",
        f"Weights: {_weights(finetune)}. Head input: {_pooling(finetune)}.",
        "",
        "| metric | ours | paper |",
        "| --- | --- | --- |",
        f"| test accuracy | {finetune['accuracy']:.4f} | 0.9131 (pretrained) |",
        f"| balanced accuracy | {finetune['balanced_accuracy']:.4f} | – |",
        f"| macro-F1 | {finetune['macro_f1']:.4f} | – |",
        f"| majority-class baseline | {finetune['majority_baseline']:.4f} | – |",
        "",
        f"{epochs} epochs, {finetune['wall_s'] / 60:.1f} min wall on {finetune['provenance']['torch_threads']} CPU threads "
        + _mlm_share(finetune)
        + f"({finetune['train_tokens_per_s']:,.0f} fine-tuning tokens/s, peak RSS {finetune['peak_rss_mb']:,.0f} MB).",
        "",
        *_similarity_lines(finetune),
        *(["![MLM warm start](figures/02_mlm_curve.png)", ""] if finetune.get("warm_start") else []),
        "![training curve](figures/02_training_curve.png)",
        "",
    ]


def _trained_epochs(result: dict) -> int | None:
    """Epochs of the fine-tuning behind a result: its model's training record, or notebook 02's own history."""
    training = ((result.get("provenance") or {}).get("model") or {}).get("training") or {}
    epochs = (training.get("train_config") or {}).get("epochs")
    return epochs if epochs is not None else (len(result["history"]) if result.get("history") else None)


def _stale_note(result: dict | None, finetune: dict | None) -> list[str]:
    """A warning line when a later stage's result file predates notebook 02's: it was computed on an earlier model."""
    created = ((result or {}).get("provenance") or {}).get("created")
    model_created = ((finetune or {}).get("provenance") or {}).get("created")
    if not created or not model_created or created >= model_created:
        return []
    was, now = _trained_epochs(result), _trained_epochs(finetune)
    trained = f" (trained {was} epochs, against {now} for notebook 02's)" if was and now and was != now else ""
    return [f"**Computed on an earlier model than notebook 02's**{trained}: this result file dates from "
            f"{created[:10]}, notebook 02's from {model_created[:10]}. `make study` re-runs the stages whose inputs changed.", ""]


def _flagged(section: list[str], result: dict | None, finetune: dict | None) -> list[str]:
    """A stage's README section with the earlier-model warning under its heading when it applies."""
    return section[:1] + _stale_note(result, finetune) + section[1:]


def _absolute(figures: dict, key: str) -> str:
    """', {value} for the absolute score' when the result file has it (older files do not)."""
    value = figures.get(f"{key}_absolute")
    return "" if value is None else f", {value:.3f} for the absolute score"


def _device(result: dict) -> str:
    """The device a result file's stage ran on, as README names it: CPU, or the accelerator (cuda:0)."""
    device = (result.get("provenance") or {}).get("device") or "cpu"
    return "CPU" if device.startswith("cpu") else device


def _quadrature(ig: dict) -> str:
    """How notebook 04 integrated: the adaptive rule with its nodes per example, or (older runs) the fixed rule."""
    if "quadrature" not in ig:
        return f"{ig['steps']}-node {ig['rule']} quadrature"
    return (f"{ig['quadrature']} (mean {ig['nodes_mean']:.1f} nodes per example, {ig['converged_share']:.1%} of examples "
            f"within the tolerance)")


def _convergence(ig: dict) -> str:
    """Agreement of the run's signed ranking with a fine fixed rule on notebook 04's convergence examples."""
    if "convergence" in ig:
        rows = {row["setting"]: row for row in ig["convergence"]}
        run = rows.get("adaptive (this run)")
        return "" if run is None else f"Spearman {run['Spearman signed']:.4f} with a fine reference rule (signed score); "
    if "steps_spearman" in ig:
        return f"{ig['steps']} vs more steps Spearman {ig['steps_spearman']:.3f}{_absolute(ig, 'steps_spearman')}; "
    return ""


def _scores_section(activations: dict | None, ig: dict | None) -> list[str]:
    """README lines for notebooks 03-04: how stable and exact the activation and IG neuron scores are."""
    lines = ["### Neuron scores (notebooks 03–04)"]
    if activations:
        lines.append(f"Activation scores of all {activations['n_neurons']:,} neurons over {activations['n_examples']:,} test sequences "
                     f"(residue positions only); split-half Spearman {activations['split_half_spearman']:.3f}.")
    if ig:
        lines.append(f"Integrated gradients, {ig['path']}, {_quadrature(ig)}: completeness error median "
                     f"{ig['completeness_error_median']:.2%} (90th percentile {ig['completeness_error_p90']:.2%}); split-half Spearman "
                     f"{ig['split_half_spearman']:.3f} for the signed score{_absolute(ig, 'split_half_spearman')}; "
                     f"{_convergence(ig)}{ig['ig_seconds'] / 60:.1f} min for the whole test set on {_device(ig)}, peak RSS "
                     f"{ig['peak_rss_mb']:,.0f} MB.")
    return lines + [""]


def _four_decimals(frame):
    """A mixed table (numbers and words per row) with every float at 4 decimals."""
    return frame.map(lambda value: f"{value:.4f}" if isinstance(value, float) else value)


def _markdown_safe(labels):
    """Rule names with '|' escaped ('IG |.|') so they stay inside a Markdown table cell."""
    return labels.str.replace("|", "\\|", regex=False)


def _ablation_section(ablation: dict) -> list[str]:
    """README lines for notebook 05: submodel accuracy by rule and kept fraction against random selection."""
    from .ablation import paper_table1, table1

    frame = submodels(ablation)
    fractions = ablation["provenance"]["parameters"]["keep_fractions"]
    ours = table1(frame, fractions)
    ours.index = _markdown_safe(ours.index)
    return ["### Table 1 (notebook 05)", "Ours (test accuracy; random: mean ± sd over seeds):", "", ours.to_markdown(), "",
            "The paper's:", "", paper_table1().to_markdown(), "",
            f"Majority class {ablation['majority_baseline']:.4f}, chance {ablation['chance']:.4f}. The sweep evaluates in "
            f"{ablation['provenance']['parameters'].get('precision', 'fp32')}; the full model scores {ablation['full_accuracy']:.4f} "
            f"there and {ablation.get('full_accuracy_fp32', ablation['full_accuracy']):.4f} in fp32 (notebook 02). "
            f"{ablation['n_submodels']} submodels in {ablation.get('sweep_seconds', ablation['wall_s']) / 60:.1f} min; "
            "submodel evaluation runs at "
            f"{ablation['evaluation_speed']['ratio']:.0%} of plain inference speed.", "",
            "![Figure 2](figures/05_figure2_accuracy.png)", "", *_ablation_answers(ablation), ""]


def _ablation_answers(ablation: dict) -> list[str]:
    """Sentences answering the paper's ablation claims from the sweep (claims.sweep_claims): rules against random,
    high against low IG."""
    claims = pd.DataFrame(sweep_claims(ablation))
    sizes = claims["at"].str.removesuffix(" kept").drop_duplicates().tolist()
    held = {claim: group.loc[group["holds"], "at"].str.removesuffix(" kept").tolist() for claim, group in claims.groupby("claim")}
    lines = [f"- {label} (high scores kept) beats random by more than 2 sd at: {_sizes(held[claim])}."
             for claim, label in (("activation beats random", "Activation"), ("IG signed (high) beats random", "IG signed"))]
    better = held["high IG beats low IG"]
    where = f"every size ({', '.join(sizes)})" if better == sizes else f"{_sizes(better)} of {', '.join(sizes)}"
    lines.append(f"- High or low IG (the paper's text against its summary): keeping high signed IG keeps more accuracy at {where}.")
    return lines


def _heatmaps_section(heatmaps: dict) -> list[str]:
    """README lines for notebook 06: where the kept neurons sit, and which of the paper's claims the tests support."""
    import pandas as pd

    tests = pd.DataFrame(heatmaps["tests"])[["claim", "method", "sparsity", "statistic", "p_value", "p_holm"]]
    return ["### Where the kept neurons sit (notebook 06)", "", "![heatmaps](figures/06_kept_heatmaps.png)", "",
            "Permutation tests of the paper's claims against random kept sets of the same size (Holm-corrected):", "",
            tests.round(4).to_markdown(index=False), "", *_claim_answers(tests), ""]


def _claim_answers(tests) -> list[str]:
    """One sentence per claim: the selections for which it holds at Holm-corrected p < 0.05."""
    lines = []
    for claim, group in tests.groupby("claim", sort=False):
        held = [f"{row.method} at {row.sparsity:.0%}" for row in group.itertuples() if row.p_holm < 0.05]
        lines.append(f"- \"{claim}\": holds (Holm p < 0.05) for {'; '.join(held) if held else 'no selection'} "
                     f"of {len(group)} tested.")
    return lines


def _split_accuracies(splits: pd.DataFrame) -> str:
    """A sentence on the split table: test accuracy per split against its majority baseline, with its binomial
    standard error, saying where the model is within 2 standard errors of always answering the largest class."""
    said = []
    for profile in splits.columns:
        accuracy, majority, n = (float(splits.loc[row, profile]) for row in ("accuracy", "majority_baseline", "n_test"))
        error = (accuracy * (1 - accuracy) / n) ** 0.5
        level = " (within 2 se of it)" if abs(accuracy - majority) <= 2 * error else ""
        said.append(f"{accuracy:.3f} ± {error:.3f} on the {splits.loc['split', profile]} split against a majority "
                    f"baseline of {majority:.3f}{level}")
    return "Test accuracy (± its binomial standard error): " + "; ".join(said) + "."


def _shared_accessions(results: Path, splits: pd.DataFrame) -> dict[str, float]:
    """Per split of the table, the share of test chains sharing a UniProt accession with a training chain, from its
    published data.json (the record's own in `results`; a split not published is left out)."""
    shares = {}
    for profile in splits.columns:
        data = _load(results, "data") if profile == splits.columns[0] else _load(results / profile, "data")
        if data and "test_accessions_seen_in_train" in data:
            shares[profile] = data["test_accessions_seen_in_train"]
    return shares


def _identity_leak(splits: pd.DataFrame, shares: dict[str, float]) -> list[str]:
    """A sentence when an identity split leaves test chains sharing an accession with training chains."""
    leaky = {profile: share for profile, share in shares.items()
             if share > 0 and str(splits.loc["split", profile]).startswith("identity")}
    if not leaky:
        return []
    said = ", ".join(f"{share:.1%} at {splits.loc['split', profile]}" for profile, share in leaky.items())
    return [f"An identity split keeps clusters apart, not proteins: {said} of the test chains share a UniProt accession "
            "with a training chain, since chains of one protein whose alignment covers less than 80 % of either (a domain "
            "and the whole chain, say) fall into different clusters. Its accuracy is likely higher than a split keeping "
            "both clusters and accessions apart would give.", ""]


def _class_neurons_section(record: dict, results: Path) -> list[str]:
    """README lines for notebook 07: class-specific neurons, their effects against matched random sets, motifs."""
    import pandas as pd

    specificity = pd.DataFrame(record["specificity"]).rename(columns={"neurons of class": "class"})
    classes = len(record["specific"])
    specificity["scaling"] = specificity["factor"].map({"x0": "suppress (x0)", "x2": "amplify (x2)"}).fillna(specificity["factor"])
    shown = ["scaling", "class", *(c for c in ("own_class", "other_classes", "random_own_mean", "random_own_sd", "z_vs_random", "own_rank")
                                      if c in specificity)]
    tests = pd.DataFrame(record["motif_tests"])
    selective = record["motif_selective_neurons"]
    lines = ["### Class-specific knowledge neurons (notebook 07)",
             f"Top {record['top_size']} neurons per class by mean signed IG; shared by all {classes} classes: "
             f"{len(record['shared_by_all'])}; specific to one class: "
             + ", ".join(f"{'EC ' * c.isdigit()}{c} {len(ids)}" for c, ids in record["specific"].items()) + ".", "",
             "![class overlap](figures/07_class_overlap.png)", "",
             f"Scaling class c's set by 0 (suppression) and 2 (amplification) on a class-balanced subset of "
             f"{record['effect_examples']:,} test sequences, against {record['provenance']['parameters']['random_seeds']} random sets "
             "with the same (layer, projection) make-up (own-class effect on the true-class probability; z against the random sets):", "",
             specificity[shown].round(4).to_markdown(index=False), "",
             f"Suppression hurts a class's own examples more than the others' and beyond 2 random-control sd for "
             f"{record['suppression_classes_supported']} of {classes} classes; no other class is hurt more (net of the random sets) for "
             f"{record.get('suppression_classes_strict', 'an unrecorded number of')} of {classes}.", "",
             "![scaling effects](figures/07_scaling_effects.png)", "",
             f"Motifs at activation peaks: {len(tests)} neuron x motif tests against a shuffled-position control "
             f"({record['multiple_testing']}); motif-selective neurons at q < 0.05: "
             f"{', '.join(selective) if selective else 'none'}.", "",
             "![logos](figures/07_logos.png)", ""]
    comparison = record.get("comparison")
    if comparison:
        headline = pd.DataFrame(comparison["headline"])
        ours, other = headline.columns
        lines += [f"Homology-aware re-run (`{other}`: all chains of one UniProt accession on one side; its notebooks, "
                  f"results and figures are in `notebooks/{other}/`, `results/{other}/`, `figures/{other}/`):", "",
                  _four_decimals(headline).to_markdown(), ""]
        if any(row.endswith("1-NN accuracy") for row in headline.index):
            from .compare import leakage_summary

            lines += [leakage_summary(headline), ""]
        if comparison.get("table1"):
            table = pd.DataFrame(comparison["table1"])
            table["rule"] = _markdown_safe(table["rule"])
            lines += ["Table 1 of both runs (test accuracy by kept fraction; random: mean ± sd over seeds):", "",
                      table.to_markdown(index=False), ""]
        if comparison.get("selection_overlap"):
            overlap = pd.DataFrame(comparison["selection_overlap"])
            lines += ["Kept neuron sets of the two runs: Jaccard overlap (random expectation beside it) and the fraction "
                      "of each projection type kept in each run:", "", overlap.round(3).to_markdown(index=False), ""]
    splits = pd.DataFrame(record.get("splits") or {})
    if comparison and set(splits.columns) <= set(headline.columns):
        lines += ["No other split has been run for this record yet (identity clusters: `make splits`).", ""]
    elif len(splits.columns):
        sentence, shares = _split_accuracies(splits), _shared_accessions(results, splits)
        if shares:
            splits.loc["test chains sharing an accession with train"] = [shares.get(p, "–") for p in splits.columns]
        lines += ["Every split that has been run (notebooks 01–02 of each; identity: MMseqs2 clusters at that identity "
                  "over 80 % of both chains kept on one side): test accuracy beside the model-free 3-mer yardstick:", "",
                  _four_decimals(splits).to_markdown(), "", sentence, "", *_identity_leak(splits, shares)]
    return lines


def _other_run_answers(results: Path, profile: str) -> list[str]:
    """The ablation and claim answers of a compared run published under results/<profile>/, when it is there."""
    import pandas as pd

    ablation, heatmaps = _load(results, "ablation"), _load(results, "heatmaps")
    if not ablation or not heatmaps:
        return []
    tests = pd.DataFrame(heatmaps["tests"])
    return [f"The same answers in the `{profile}` run:", "",
            *_ablation_answers(ablation), *_claim_answers(tests), ""]


def _family(result: dict) -> str:
    """The neuron family a stage's result file was written for (qkv before families existed)."""
    return result["provenance"]["parameters"].get("family", "qkv")


def _training_seed(result: dict) -> int | None:
    """The training seed of the model a stage's result file was written from."""
    return (result["provenance"].get("model") or {}).get("seed")


def _families_section(results: Path, ablation: dict) -> list[str]:
    """README lines setting the record's sweep beside each published run of another neuron family (results/<profile>/
    with a `family` other than the record's) on the same weights; a run of other weights is named, not compared, unless
    it is another training seed's (the claims section tallies those)."""
    from .ablation import family_comparison, family_winners

    others = {folder.name: result for folder in sorted(results.iterdir()) if folder.is_dir()
              and (result := _load(folder, "ablation")) and _family(result) != _family(ablation)
              and _training_seed(result) == _training_seed(ablation)}
    if not others:
        return []
    weights = ablation["provenance"]["inputs"].get("weights_sha256")
    lines = ["### Neuron families on one model (notebook 05 of each)"]
    sweeps = {_family(ablation): submodels(ablation)}
    for profile, result in others.items():
        if result["provenance"]["inputs"].get("weights_sha256") != weights:
            lines += [f"`results/{profile}/` was written from other weights than this record's; not compared.", ""]
        else:
            sweeps[_family(result)] = submodels(result)
    if len(sweeps) < 2:
        return lines
    fractions = ablation["provenance"]["parameters"]["keep_fractions"]
    table = family_comparison(sweeps, fractions)
    shown = table.assign(kept=table["kept"].map("{:.0%}".format),
                         random=table["random_mean"].map("{:.4f}".format) + " ± " + table["random_sd"].map("{:.4f}".format))
    units = {family: int(sweep.loc[sweep["method"] == "full", "n_kept"].iloc[0]) for family, sweep in sweeps.items()}
    winners = family_winners(table)
    lines += ["Test accuracy kept at equal fractions of each family's units (the rest zeroed; random: mean ± sd over "
              "seeds; beats random: above its mean by more than 2 sd), "
              + ", ".join(f"{family}: {count:,} units" for family, count in units.items()) + ":", "",
              shown.drop(columns=["random_mean", "random_sd"]).round(4).to_markdown(index=False), "",
              "The family that keeps more accuracy, per rule and kept fraction:", "",
              winners.rename(index="{:.0%}".format).to_markdown(), "",
              *_family_findings(table, winners, units), ""]
    return lines


def _sizes(sizes) -> str:
    """Kept sizes in words, from labels ('50%') or fractions (0.5): '50%, 25%', or 'no size' when there are none."""
    return ", ".join(size if isinstance(size, str) else f"{size:.0%}" for size in sizes) or "no size"


def _family_findings(table: pd.DataFrame, winners: pd.DataFrame, units: dict[str, int]) -> list[str]:
    """The family comparison in sentences, read off its table (ablation.family_comparison) and its winners
    (ablation.family_winners): where one family wins by every rule, and where each family's rules beat random."""
    rival = "the other family" if len(units) == 2 else "every other family"
    lines = []
    for family in units:
        won = winners.index[(winners == family).all(axis=1)]
        lines.append(f"- {family} ({units[family]:,} units) keeps more accuracy than {rival} by all three rules (IG signed, "
                     f"activation, random) at " + (f"{_sizes(won)} kept." if len(won) else "no kept fraction."))
    for family, rows in table.groupby("family", sort=False):
        lines.append(f"- Within {family}: IG signed beats random by more than 2 sd at "
                     f"{_sizes(rows.loc[rows['IG signed beats random'], 'kept'])}; activation at "
                     f"{_sizes(rows.loc[rows['activation beats random'], 'kept'])}.")
    return lines + ["- One model and one training seed: *The claims across training seeds* (below, once tallied) says which "
                    "of these hold on other seeds."]


def _claims_summary(table: pd.DataFrame, seeds: list) -> list[str]:
    """Which claims held in every seed, which in some only and which in none, each with where it was tested, read off
    the tally."""
    from .claims import held_counts

    held, counted = held_counts(table, seeds)
    lines = []
    every = "both seeds" if len(seeds) == 2 else f"all {len(seeds)} seeds"
    for label, chosen in ((f"Held in {every}", held == counted),
                          ("Held in some seeds but not all, so not findings", (held > 0) & (held < counted)),
                          ("Held in no seed", held == 0)):
        rows = table[chosen & (counted == len(seeds))]
        said = "; ".join(f"{claim} ({', '.join(group['at'])})" for claim, group in rows.groupby("claim", sort=False))
        lines.append(f"- {label}: {said or 'none'}.")
    fewer = table.assign(held=held, counted=counted)[counted < len(seeds)]
    if len(fewer):  # e.g. the family claim of a seed whose ffn run is pending: no line above may count it
        said = "; ".join(f"{claim} ({', '.join(f'{at}: {h} of {n}' for at, h, n in zip(group['at'], group['held'], group['counted']))})"
                         for claim, group in fewer.groupby("claim", sort=False))
        lines.append(f"- Not yet tested in every seed (held in k of the n tested): {said}.")
    return lines


def _claims_section(record: dict) -> list[str]:
    """README lines for claims.json: each claim of the paper and of this study, per training seed and "k of n"."""
    table = pd.DataFrame(record["claims"])
    seeds = record["seeds"]
    for seed in seeds:  # one cell per seed: the figure the claim rests on, and whether it holds
        held, value = table[f"seed {seed} holds"], table[f"seed {seed} value"]
        table[f"seed {seed}"] = [("" if pd.isna(h) else ("yes " if h else "no ") + f"({v:g})") for h, v in zip(held, value)]
    shown = table[["claim", "at", *(f"seed {seed}" for seed in seeds), "holds in"]]
    runs = ", ".join(f"`{run['profile']}`" for run in record["runs"].values())
    pending = record.get("pending") or []
    interim = ([f"**Interim tally**: {len(seeds)} seeds published so far; not yet run: "
                + ", ".join(f"`{profile}`" for profile in pending) + ". A claim is not yet a finding across seeds while a "
                "run it rests on is pending; one that fails in any seed already did not hold on another.", ""]
               if pending else [])
    return ["### The claims across training seeds (`python -m kn_utils claims`)", *interim,
            f"Runs {runs}: one dataset and split, training "
            f"seeds {', '.join(map(str, seeds))}. A rule beats random when it exceeds random's mean by more than "
            f"{record['provenance']['parameters']['margin_sd']:g} sd; the heatmap claims hold at Holm p < "
            f"{record['provenance']['parameters']['holm_alpha']:g} (value: the smallest p); the family claim's value is "
            "the other family's accuracy minus q/k/v's.", "", *_claims_summary(table, seeds), "",
            shown.assign(at=_markdown_safe(shown["at"])).to_markdown(index=False), ""]


def _control_section(record: dict, ig: dict | None) -> list[str]:
    """README lines for the positive control (profile `control`, notebook 08): its answers against the planted truth."""
    import pandas as pd

    sweep = pd.DataFrame(record["sweep"]).set_index("kept")
    shown = sweep[["IG signed", "activation", "random mean", "random sd", "IG z vs random"]].round(3)
    summary = pd.DataFrame(record["summary"]).set_index("question")
    bound = "" if ig is None else (
        f" IG completeness: median relative error {ig['completeness_error_median']:.2%}, 90th percentile "
        f"{ig['completeness_error_p90_beyond_small_change']:.2%} where |F(1) - F(0)| >= 0.05, largest absolute error "
        f"{ig['small_change_absolute_error_max']:.4f} where it is smaller"
        + (f"; {ig['converged_share']:.1%} of examples within the tolerance" if "converged_share" in ig else "")
        + f" ({'within' if ig.get('within_bound') else 'outside'} the study's bound).")
    return ["### Positive control: planted motifs (profile `control`, notebook 08)",
            f"A small ESM-2-shaped model ({_weights(record)}) trained on a task with planted truth (five motif classes and "
            f"one composition class, `kn_utils.synthetic`) reaches test accuracy {record['accuracy']:.4f}.{bound} "
            "Notebooks 01-07 ran on it unchanged; notebook 08 sets their outputs against the truth "
            "([notebooks/control/](notebooks/control/)).", "",
            "Kept submodels (test accuracy; random: mean and sd over seeds):", "", shown.to_markdown(), "",
            "What the methods recover (each against its null):", "", summary.to_markdown(), ""]


def render(results: Path = REPO_ROOT / "results") -> str:
    """Markdown of every result file present, in stage order."""
    lines: list[str] = []
    data, finetune = _load(results, "data"), _load(results, "finetune")
    activations, ig = _load(results, "activations"), _load(results, "integrated_gradients")
    ablation, heatmaps = _load(results, "ablation"), _load(results, "heatmaps")
    class_neurons = _load(results, "class_neurons")
    if data:
        lines += _data_section(data)
    if finetune:
        lines += _finetune_section(finetune)
    if activations or ig:
        lines += _flagged(_scores_section(activations, ig), activations or ig, finetune)
    if ablation:
        lines += _flagged(_ablation_section(ablation), ablation, finetune)
        lines += _families_section(results, ablation)
    if heatmaps:
        lines += _flagged(_heatmaps_section(heatmaps), heatmaps, finetune)
    if class_neurons:
        lines += _flagged(_class_neurons_section(class_neurons, results), class_neurons, finetune)
        comparison = class_neurons.get("comparison") or {}
        if comparison.get("profile"):
            lines += _other_run_answers(results / comparison["profile"], comparison["profile"])
    claims = _load(results, "claims")
    if claims:
        lines += _claims_section(claims)
    control = _load(results / "control", "planted_truth")
    if control:
        lines += _control_section(control, _load(results / "control", "integrated_gradients"))
    return "\n".join(lines) if lines else "No committed results yet: run `make study`."


HEADLINE_RULES = {"random": "random", "activation": "activation", "integrated gradients": "IG signed (high)"}


def headline(results: Path = REPO_ROOT / "results") -> str:
    """README's first-screen table: the paper's Table 1 beside ours (kept fractions as columns), from the result files."""
    from .ablation import paper_table1, table1

    finetune, ablation = _load(results, "finetune"), _load(results, "ablation")
    if not ablation:
        return "No committed Table 1 yet: run `make study`."
    ours = table1(submodels(ablation), ablation["provenance"]["parameters"]["keep_fractions"])
    paper = paper_table1()
    rows = [{"selection": f"{rule} (ours: {ours_rule})" if ours_rule != rule else rule,
             **{column: f"{ours.loc[ours_rule, column]} / {paper.loc[rule, column]}" for column in paper.columns}}
            for rule, ours_rule in HEADLINE_RULES.items()]
    table = pd.DataFrame(rows).rename(columns={"100%": "all kept"})
    ig = _load(results, "integrated_gradients")
    neurons = f"{ig['n_neurons']:,}" if ig and "n_neurons" in ig else "the"
    return "\n".join([f"Test accuracy when only a share of the {neurons} query/key/value neurons is kept, the rest zeroed "
                      "(**ours / the paper's**; ours random init, the paper's pretrained; random selection: mean ± sd over "
                      "seeds). Full tables and the controls: *Results* below.", "", table.to_markdown(index=False), "",
                      *_headline_seeds(_load(results, "claims"), _training_seed(ablation)),
                      *_stale_note(ablation, finetune)]).strip()


def _headline_seeds(record: dict | None, seed: int | None) -> list[str]:
    """A sentence under the headline table, from claims.json: at which kept sizes each rule beat random, in how many
    of the published training seeds."""
    from .claims import held_counts

    if not record:
        return []
    table = pd.DataFrame(record["claims"])
    held, counted = held_counts(table, record["seeds"])
    said = []
    for claim, label in (("IG signed (high) beats random", "integrated gradients"), ("activation beats random", "activation")):
        rows = table["claim"] == claim
        sizes = [f"{at.removesuffix(' kept')} in {h} of {n}" for at, h, n in zip(table.loc[rows, "at"], held[rows], counted[rows]) if h]
        said.append(f"{label} at {', '.join(sizes) or 'no size'}")
    pending = record.get("pending") or []
    seeds = ", ".join(map(str, record["seeds"])) + (f"; interim, {', '.join(pending)} not yet run" if pending else "")
    return [f"The table is training seed {seed}'s model. Over the published training seeds ({seeds}), keeping the "
            f"highest-scoring neurons beat random by more than {record['provenance']['parameters']['margin_sd']:g} sd for "
            f"{'; for '.join(said)}: *The claims across training "
            "seeds* below.", ""]


def _between(text: str, begin: str, end: str, body: str, readme: Path) -> str:
    """`text` with what lies between the `begin` and `end` markers replaced by `body`."""
    if begin not in text or end not in text:
        raise ValueError(f"{readme}: no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def update_readme(readme: Path = REPO_ROOT / "README.md") -> None:
    """Regenerate README's headline table and its Results section from the results/ beside it."""
    results = readme.parent / "results"
    text = _between(readme.read_text(), BEGIN, END, render(results), readme)
    text = _between(text, HEADLINE_BEGIN, HEADLINE_END, headline(results), readme)
    with atomic_path(readme) as temporary:
        temporary.write_text(text)
