"""Command line: `python -m kn_utils run|study|publish|report|predict|evaluate ...`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _model_and_window(args: argparse.Namespace):
    """The model of `--model` and the residues per sequence it reads (`--max-residues`, else its training window), with
    notes on stderr: its init, a missing kn_model_info.json, reading beyond the window it was trained on."""
    from .alphabet import MAX_ESM_RESIDUES
    from .model import INFO_FILE, load_finetuned, select_device

    if args.max_residues is not None and not 1 <= args.max_residues <= MAX_ESM_RESIDUES:
        raise ValueError(f"--max-residues {args.max_residues}: must be from 1 to {MAX_ESM_RESIDUES}")
    model, info = load_finetuned(args.model, select_device(args.device))
    if not (Path(args.model) / INFO_FILE).exists():
        print(f"# WARNING: {args.model} has no {INFO_FILE}: how it was trained, and on how many residues, is unknown; "
              f"reading {args.max_residues or MAX_ESM_RESIDUES} residues per sequence (set --max-residues to the "
              "window it was trained on)", file=sys.stderr)
    elif info.init != "pretrained":
        print(f"# note: model {args.model} was fine-tuned from {info.init} init ({info.source})", file=sys.stderr)
    trained_window = (info.training or {}).get("max_residues")
    max_residues = args.max_residues or trained_window or MAX_ESM_RESIDUES
    if trained_window and max_residues > trained_window:  # a model knows the window it was trained on (docs/experiments.md)
        print(f"# warning: the model was trained on the first {trained_window} residues; reading {max_residues} is likely "
              "to make its predictions less accurate, not more (the study's model on held-out chains: 0.56 at its 128, "
              "0.41 at 256)", file=sys.stderr)
    return model, max_residues


def _note_long_sequences(records: list[tuple[str, str]], max_residues: int) -> None:
    """Say on stderr how many sequences are longer than the residues the model reads (it sees their first ones)."""
    longer = [record for record, sequence in records if len(sequence) > max_residues]
    if longer:
        print(f"# note: {len(longer)} of {len(records)} sequences are longer than {max_residues} residues (first: "
              f"{longer[0]!r}); the model reads the first {max_residues} of each", file=sys.stderr)


def _predict(args: argparse.Namespace) -> int:
    """Print predicted class and class probabilities per FASTA record."""
    from . import metrics
    from .alphabet import SequenceError, validate_sequence
    from .data import class_titles, read_fasta, trim_expression_tags
    from .inference import predict_logits
    from .model import CheckpointError, class_names_of
    from .sources import DataFileError

    try:
        records, lines = [], {}
        for header, raw, line in read_fasta(args.fasta):
            record = header.split()[0] if header.split() else f"(line {line})"
            sequence = validate_sequence(record, raw, args.fasta)
            if not args.keep_tags:  # the study's model learnt from chains with their expression tags cut
                sequence = trim_expression_tags(sequence) or sequence
            if record in lines:
                print(f"# warning: {args.fasta}: record id {record!r} (line {line}) also at line {lines[record]}; both are "
                      "predicted, under the same id", file=sys.stderr)
            lines.setdefault(record, line)
            records.append((record, sequence))
        if not records:
            raise DataFileError(f"{args.fasta}: no FASTA records")
        model, max_residues = _model_and_window(args)
    except (SequenceError, DataFileError, CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _note_long_sequences(records, max_residues)
    probabilities = metrics.probabilities(predict_logits(model, [sequence for _, sequence in records], max_residues))
    classes = class_names_of(model)
    titles = class_titles(classes)
    print("\t".join(["record", "predicted_class", "name", *(f"p_{c}" for c in classes)]))
    for (record, _), row in zip(records, probabilities):
        best = int(row.argmax())
        print("\t".join([record, classes[best], titles[best], *(f"{p:.4f}" for p in row)]))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """Score a model on a labelled FASTA: accuracy, balanced accuracy, macro-F1, per-class recall, confusion matrix,
    calibration, and (with `--run`) accuracy by the similarity of each sequence's nearest training chain."""
    import json

    import pandas as pd

    from . import compare, metrics
    from .data import class_names, load_dataset, load_labelled_fasta, short_names, trim_expression_tags
    from .inference import predict_logits
    from .model import CheckpointError, class_names_of
    from .sources import DataFileError

    try:
        frame = load_labelled_fasta(args.fasta, args.labels)
        train = None
        if args.run:
            train = load_dataset(Path(args.run) / "dataset.parquet").query("split == 'train'")
        model, max_residues = _model_and_window(args)
        classes = class_names_of(model)
        unknown = sorted(set(class_names(frame)) - set(classes))
        if unknown:
            raise DataFileError(f"{args.labels}: class(es) {unknown} are not among the model's classes {classes}")
        frame["label"] = [classes.index(name) for name in frame["class_name"].astype(str)]
    except (DataFileError, CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.keep_tags:  # as notebook 01 cut them from the training chains
        frame["sequence"] = [trim_expression_tags(sequence) or sequence for sequence in frame["sequence"]]
    _note_long_sequences(list(zip(frame["id"], frame["sequence"])), max_residues)
    logits = predict_logits(model, frame["sequence"].tolist(), max_residues)
    names = short_names(classes)
    report = {"model": str(args.model), "fasta": str(args.fasta), "labels": str(args.labels), "max_residues": max_residues,
              **metrics.evaluation_report(logits, frame["label"].to_numpy(), names)}
    if train is not None:
        table = compare.accuracy_by_similarity(train, frame, logits.argmax(1), max_residues)
        report["accuracy_by_nearest_training_chain"] = compare.similarity_records(table)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['examples']} sequences, {max_residues} residues read per sequence")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "expected_calibration_error", "mean_true_class_probability"):
        print(f"{key:30s} {report[key]:.4f}")
    recall = pd.Series(report["per_class_recall"], name="recall")
    print(pd.concat([recall, pd.DataFrame(report["confusion"]["matrix"], index=names,
                                          columns=[f"pred {n}" for n in names])], axis=1).to_string())
    if train is not None:
        print("accuracy by the 3-mer similarity of the nearest training chain of run", args.run)
        print(table.to_string())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m kn_utils", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute the numbered notebooks for a profile with papermill")
    run.add_argument("--profile", default="quick", help="profile name (profiles/NAME.yaml) or a YAML path")
    run.add_argument("--from", dest="first", help="first stage, e.g. 01")
    run.add_argument("--to", dest="last", help="last stage, e.g. 02")
    run.add_argument("--output-dir", help="where the executed notebooks go (default runs/PROFILE/notebooks)")
    run.add_argument("--publish", action="store_true", help="then copy notebooks, results and figures into the repository")
    run.add_argument("--rerun", action="store_true", help="run every stage, also those whose stamp says they are up to date")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "YAML_VALUE"), default=[],
                     help="override one notebook parameter")
    study = commands.add_parser("study", help="run the whole study: every profile phase by phase (notebook 07 compares them)")
    study.add_argument("--profiles", nargs="+", default=None, help="profiles of the study (default: full full-accession control)")
    study.add_argument("--jobs", type=int, default=1, help="profiles run side by side, sharing the CPU cores (default 1)")
    study.add_argument("--publish", action="store_true", help="then publish every profile into the repository")
    study.add_argument("--rerun", action="store_true", help="run every stage, also those whose stamp says they are up to date")
    publish = commands.add_parser("publish", help="copy a finished run into notebooks/, results/ and figures/, then update README")
    publish.add_argument("--profile", default="full")
    commands.add_parser("report", help="regenerate README's Results section from results/*.json")
    claims = commands.add_parser("claims", help="tally the study's claims over runs of several training seeds")
    claims.add_argument("--profiles", nargs="+", default=None,
                        help="one finished run per training seed (default: full full-seed1 full-seed2; fewer gives an "
                        "interim tally that names the study's runs still pending: seeds, and their ffn runs)")
    claims.add_argument("--publish", action="store_true", help="tally the published runs (results/<profile>/, "
                        "`publish` each first), write results/claims.json and update README (default: tally the runs in "
                        "runs/ and write runs/claims.json)")
    book = commands.add_parser("book", help="build the website of the committed record (Jupyter Book; executes nothing)")
    book.add_argument("--out", default=None, help="build folder (default build/book; the site lands in OUT/_build/html)")
    slides = commands.add_parser("slides", help="build the lab-meeting deck of the committed record (reveal.js)")
    slides.add_argument("--out", default=None, help="build folder (default build/slides; the deck is OUT/html/index.html)")
    predict = commands.add_parser("predict", help="predict the EC class of each sequence of a FASTA file")
    predict.add_argument("--model", required=True, help="a model folder saved by notebook 02 (runs/PROFILE/model)")
    predict.add_argument("fasta", help="FASTA file, optionally gzipped")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--keep-tags", action="store_true",
                         help="do not cut His/T7 expression tags first (notebook 01 cuts them from the training chains)")
    predict.add_argument("--max-residues", type=int, default=None, help="residues per sequence the model sees (default: as trained)")
    evaluate = commands.add_parser("evaluate", help="score a model on a FASTA file and a table of its labels")
    evaluate.add_argument("--model", required=True, help="a model folder saved by notebook 02 (runs/PROFILE/model)")
    evaluate.add_argument("fasta", help="FASTA file, optionally gzipped")
    evaluate.add_argument("labels", help="CSV/TSV with columns id,label (the model's class names) or id,ec_class (1-6 or an EC number)")
    evaluate.add_argument("--run", default=None, help="the run folder the model came from (runs/PROFILE): adds accuracy by "
                          "the similarity of each sequence's nearest training chain")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--keep-tags", action="store_true", help="do not cut His/T7 expression tags first")
    evaluate.add_argument("--max-residues", type=int, default=None, help="residues per sequence the model sees (default: as trained)")
    args = parser.parse_args(argv)
    if args.command == "predict":
        return _predict(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "report":
        from .report import update_readme

        update_readme()
        return 0
    if args.command in ("book", "slides"):
        from . import book as site

        build, default = (site.build_book, site.BOOK_DIR) if args.command == "book" else (site.build_slides, site.SLIDES_DIR)
        print(build(Path(args.out) if args.out else default))
        return 0
    if args.command == "claims":
        from .claims import seed_claims
        from .provenance import REPO_ROOT
        from .report import update_readme
        from .runner import SEED_FAMILY_PROFILES, SEED_PROFILES, record_dir
        from .runs import runs_root

        profiles, planned = args.profiles or SEED_PROFILES, SEED_PROFILES + SEED_FAMILY_PROFILES
        if args.publish:  # the published tally reads the published result files of each seed, so the two never disagree
            print(seed_claims(profiles, REPO_ROOT / "results", locate=record_dir, planned=planned))
            update_readme()
        else:
            print(seed_claims(profiles, runs_root(), planned=planned))
        return 0
    from .runner import STUDY_PROFILES, publish as publish_run, run_profile, run_study

    if args.command == "study":
        run_study(args.profiles or STUDY_PROFILES, args.jobs, args.publish, args.rerun)
    elif args.command == "run":
        from .runs import read_yaml

        overrides = {name: read_yaml(value) for name, value in args.parameter}
        run_profile(args.profile, args.first, args.last, args.output_dir, overrides, rerun=args.rerun)
        if args.publish:
            publish_run(Path(args.profile).stem)  # a profile given as a YAML path runs and publishes under its stem
    else:
        publish_run(Path(args.profile).stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
