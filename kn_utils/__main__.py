"""Command line: `python -m kn_utils run|study|publish|report|predict ...`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _predict(args: argparse.Namespace) -> int:
    """Print predicted EC class and class probabilities per FASTA record."""
    import numpy as np

    from .alphabet import MAX_ESM_RESIDUES, SequenceError, validate_sequence
    from .data import EC_CLASSES, LABELS, read_fasta, trim_expression_tags
    from .model import load_finetuned, select_device
    from .sources import DataFileError
    from .inference import predict_logits

    try:
        if args.max_residues is not None and not 1 <= args.max_residues <= MAX_ESM_RESIDUES:
            raise ValueError(f"--max-residues {args.max_residues}: must be from 1 to {MAX_ESM_RESIDUES}")
        records = []
        for header, raw, line in read_fasta(args.fasta):
            record = header.split()[0] if header.split() else f"(line {line})"
            sequence = validate_sequence(record, raw, args.fasta)
            if not args.keep_tags:  # the study's model learnt from chains with their expression tags cut
                sequence = trim_expression_tags(sequence) or sequence
            records.append((record, sequence))
        if not records:
            raise DataFileError(f"{args.fasta}: no FASTA records")
        model, info = load_finetuned(args.model, select_device(args.device))
    except (SequenceError, DataFileError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if info.init != "pretrained":
        print(f"# note: model {args.model} was fine-tuned from {info.init} init ({info.source})", file=sys.stderr)
    trained_window = (info.training or {}).get("max_residues")
    max_residues = args.max_residues or trained_window or MAX_ESM_RESIDUES
    if trained_window and max_residues > trained_window:  # a model knows the window it was trained on (docs/experiments.md)
        print(f"# warning: the model was trained on the first {trained_window} residues; reading {max_residues} is likely "
              "to make its predictions less accurate, not more (the study's model on held-out chains: 0.56 at its 128, "
              "0.41 at 256)", file=sys.stderr)
    logits = predict_logits(model, [sequence for _, sequence in records], max_residues)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    print("\t".join(["record", "predicted_ec_class", "name", *(f"p_ec{c}" for c in LABELS)]))
    for (record, _), row in zip(records, probabilities):
        best = LABELS[int(row.argmax())]
        print("\t".join([record, str(best), EC_CLASSES[best], *(f"{p:.4f}" for p in row)]))
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
    study.add_argument("--profiles", nargs="+", default=None, help="profiles of the study (default: full full-accession)")
    study.add_argument("--jobs", type=int, default=1, help="profiles run side by side, sharing the CPU cores (default 1)")
    study.add_argument("--publish", action="store_true", help="then publish every profile into the repository")
    study.add_argument("--rerun", action="store_true", help="run every stage, also those whose stamp says they are up to date")
    publish = commands.add_parser("publish", help="copy a finished run into notebooks/, results/ and figures/, then update README")
    publish.add_argument("--profile", default="full")
    commands.add_parser("report", help="regenerate README's Results section from results/*.json")
    predict = commands.add_parser("predict", help="predict the EC class of each sequence of a FASTA file")
    predict.add_argument("--model", required=True, help="a model folder saved by notebook 02 (runs/PROFILE/model)")
    predict.add_argument("fasta", help="FASTA file, optionally gzipped")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--keep-tags", action="store_true",
                         help="do not cut His/T7 expression tags first (notebook 01 cuts them from the training chains)")
    predict.add_argument("--max-residues", type=int, default=None, help="residues per sequence the model sees (default: as trained)")
    args = parser.parse_args(argv)
    if args.command == "predict":
        return _predict(args)
    if args.command == "report":
        from .report import update_readme

        update_readme()
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
