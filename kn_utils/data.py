"""The enzyme dataset: PDB chains labelled by top-level EC class, cleaned, de-duplicated and split."""
from __future__ import annotations

import gzip
import io
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .alphabet import AMBIGUOUS_RESIDUES, normalise_sequence, sequence_problem
from .sources import DataFileError

EC_CLASSES = {1: "oxidoreductases", 2: "transferases", 3: "hydrolases", 4: "lyases", 5: "isomerases", 6: "ligases"}
EC_NAMES = tuple(str(c) for c in EC_CLASSES)  # the study's class names, in label order (label i <-> EC class i + 1)
HEADER = re.compile(r"^>(?P<pdb>\w{4,})_(?P<chain>\S+)\s+mol:(?P<mol>\S+)(?:\s+length:(?P<length>\d+))?")
# Expression tags: SEQRES gives the construct that was crystallised, so about one chain in five starts with a His or
# T7 tag (and its linker up to a protease site) or ends with a His tag. Natural proteins, and the UniRef sequences
# ESM-2 was pretrained on, have none; shared across unrelated enzymes, a tag hides homology in the residues the
# model sees. A His run of six or more within the first 26 residues is taken for a tag.
PROTEASE_SITES = r"(?:LVPRGSH?|ENLYFQ[GS]?|LEVLFQ[GP]?|DDDDK|IEGR|EAQTQGPGS)"  # thrombin, TEV, 3C, enterokinase, Xa; a recurring His-tag linker
N_TERMINAL_TAG = re.compile(rf"^(?:[GSHM]{{0,3}}ASMTGGQQMGR(?:GS)?|.{{0,20}}?H{{6,}}(?:.{{0,30}}?{PROTEASE_SITES})?)")
C_TERMINAL_TAG = re.compile(r"(?:LE|GS|AAA)?H{6,}$")


def _open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file, gunzipping when its name ends in .gz; a folder or a missing file is refused by name."""
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"{path}: is a folder, not a file")
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_fasta(path: str | Path) -> Iterator[tuple[str, str, int]]:
    """Yield (header without '>', raw sequence, header line number) from a FASTA file, gzipped or not."""
    header, lines, header_line = None, [], 0
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, 1):
                if line.startswith(">"):
                    if header is not None:
                        yield header, "".join(lines), header_line
                    header, lines, header_line = line[1:].strip(), [], line_number
                elif line.strip():
                    if header is None:
                        raise DataFileError(f"{path}: line {line_number}: sequence before the first '>' header; not FASTA")
                    lines.append(line.strip())
            if header is not None:
                yield header, "".join(lines), header_line
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFileError(f"{path}: truncated or corrupt gzip file ({error})") from None
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not a text file ({error})") from None


def read_pdb_protein_chains(path: str | Path, dropped: Counter) -> Iterator[tuple[str, str]]:
    """Yield (chain id `1abc_A`, raw sequence) for protein chains of pdb_seqres; other records counted in `dropped`."""
    for header, sequence, _line in read_fasta(path):
        match = HEADER.match(">" + header)
        if not match:
            dropped["malformed_header"] += 1
            continue
        if match["mol"] != "protein":
            dropped["not_protein"] += 1
            continue
        if match["length"] is not None and int(match["length"]) != len(sequence):
            dropped["length_mismatch"] += 1
            continue
        yield f"{match['pdb'].lower()}_{match['chain']}", sequence


SIFTS_COLUMNS = ("PDB", "CHAIN", "ACCESSION", "EC_NUMBER")
EC_NUMBER = re.compile(r"^\d+(?:\.(?:n?\d+|-)){0,3}$")  # 3.4.21.-, 1.1.1.n2


def read_sifts_ec(path: str | Path, dropped: Counter | None = None) -> dict[str, tuple[set[int], set[str]]]:
    """Map chain id `1abc_A` to (top-level EC classes, UniProt accessions) from SIFTS pdb_chain_enzyme.

    A row that is not four tab-separated fields with a PDB id, a chain and an EC number is counted in `dropped`
    (`malformed_sifts_row`) and read as nothing: a broken row must not give a chain a second class.
    """
    chains: dict[str, tuple[set[int], set[str]]] = defaultdict(lambda: (set(), set()))
    dropped = Counter() if dropped is None else dropped
    try:
        with _open_text(path) as handle:
            rows = ((number, line) for number, line in enumerate(handle, 1) if line.strip() and not line.startswith("#"))
            header = next(rows, (0, ""))[1].rstrip("\r\n").split("\t")
            missing = set(SIFTS_COLUMNS) - set(header)
            if missing:
                raise DataFileError(f"{path}: missing column(s) {sorted(missing)}; not a SIFTS pdb_chain_enzyme file")
            where = [header.index(column) for column in SIFTS_COLUMNS]
            for number, line in rows:
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != len(header):
                    dropped["malformed_sifts_row"] += 1
                    continue
                pdb, chain, accession, ec_number = (fields[i].strip() for i in where)
                if not re.fullmatch(r"\w{4,}", pdb) or not chain or not EC_NUMBER.match(ec_number):
                    dropped["malformed_sifts_row"] += 1
                    continue
                classes, accessions = chains[f"{pdb.lower()}_{chain}"]
                classes.add(int(ec_number.split(".")[0]))
                if accession:
                    accessions.add(accession)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFileError(f"{path}: truncated or corrupt gzip file ({error})") from None
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not a text file ({error})") from None
    if chains == {} and dropped["malformed_sifts_row"]:
        raise DataFileError(f"{path}: no well-formed row ({dropped['malformed_sifts_row']} malformed); not a SIFTS "
                            "pdb_chain_enzyme file")
    return dict(chains)


def trim_expression_tags(sequence: str) -> str:
    """The chain without its N-terminal His/T7 tag (with linker and protease site) and C-terminal His tag: cloning
    artefacts, not enzyme (see N_TERMINAL_TAG)."""
    match = C_TERMINAL_TAG.search(sequence)  # first, so that a short chain's C-terminal tag is not read as an N-terminal one
    if match:
        sequence = sequence[: match.start()]
    for _ in range(3):  # a T7 tag can follow a cleaved His tag
        match = N_TERMINAL_TAG.match(sequence)
        if match is None or match.end() == 0:
            break
        sequence = sequence[match.end():]
    return sequence


def build_dataset(seqres_path: str | Path, sifts_path: str | Path, min_length: int = 30,
                  max_unknown_fraction: float = 0.1, trim_tags: bool = True) -> tuple[pd.DataFrame, Counter]:
    """Join PDB protein chains with their EC class; drop (and count by reason) what cannot be a clean example.

    A chain is kept when all its EC numbers share one top-level class in 1-6 and its residues are valid; with
    `trim_tags`, expression tags are cut first (column `tagged_chains` counts the chains a record lost one from);
    identical sequences are merged into one record, and dropped when their chains disagree on the class.
    """
    dropped: Counter = Counter()
    ec = read_sifts_ec(sifts_path, dropped)
    by_sequence: dict[str, dict] = {}
    for chain_id, raw in read_pdb_protein_chains(seqres_path, dropped):
        if chain_id not in ec:
            dropped["no_ec_number"] += 1
            continue
        classes, accessions = ec[chain_id]
        if len(classes) > 1:
            dropped["several_ec_classes"] += 1
            continue
        (ec_class,) = classes
        if ec_class not in EC_CLASSES:
            dropped["ec_class_outside_1_6"] += 1
            continue
        sequence = normalise_sequence(raw)
        untrimmed_length = len(sequence)
        if trim_tags:
            sequence = trim_expression_tags(sequence)
        problem = sequence_problem(sequence)
        if problem:
            dropped["empty_sequence" if sequence == "" else "invalid_residue"] += 1
            continue
        reason = _drop_reason(sequence, min_length, max_unknown_fraction)
        if reason:
            dropped[reason] += 1
            continue
        _add_chain(by_sequence, sequence, chain_id, str(ec_class), accessions, tagged=len(sequence) < untrimmed_length)
    return _merge_identical(by_sequence, dropped, EC_NAMES), dropped


def _drop_reason(sequence: str, min_length: int, max_unknown_fraction: float) -> str | None:
    """Why a valid sequence is no clean example (too short, too many ambiguous residues), or None."""
    if len(sequence) < min_length:
        return "too_short"
    if sum(sequence.count(r) for r in AMBIGUOUS_RESIDUES) > max_unknown_fraction * len(sequence):
        return "too_many_unknown_residues"
    return None


def _add_chain(by_sequence: dict[str, dict], sequence: str, chain_id: str, class_name: str, accessions: set[str],
               tagged: bool) -> None:
    """File one kept chain under its sequence, for `_merge_identical`."""
    entry = by_sequence.setdefault(sequence, {"chains": [], "classes": set(), "accessions": set(), "tagged": 0})
    entry["chains"].append(chain_id)
    entry["tagged"] += tagged
    entry["classes"].add(class_name)
    entry["accessions"] |= accessions


def _merge_identical(by_sequence: dict[str, dict], dropped: Counter, classes: tuple[str, ...]) -> pd.DataFrame:
    """One record per distinct sequence (its smallest chain id); counts merged duplicates, drops those whose classes
    differ. `classes` are the task's class names in label order."""
    records = []
    for sequence, entry in by_sequence.items():
        dropped["duplicate_sequence"] += len(entry["chains"]) - 1
        if len(entry["classes"]) > 1:
            dropped["duplicates_disagree_on_class"] += 1
            continue
        (class_name,) = entry["classes"]
        records.append({
            "id": min(entry["chains"]), "class_name": class_name, "label": classes.index(class_name),
            "sequence": sequence, "length": len(sequence), "n_chains": len(entry["chains"]), "tagged_chains": entry["tagged"],
            "accession": min(entry["accessions"]) if entry["accessions"] else f"none:{min(entry['chains'])}",
        })
    frame = pd.DataFrame.from_records(records, columns=COLUMNS).sort_values("id", ignore_index=True)
    return with_classes(frame, classes)


COLUMNS = ["id", "class_name", "label", "sequence", "length", "n_chains", "tagged_chains", "accession"]  # the dataset table


def with_classes(frame: pd.DataFrame, classes: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """`frame` with `class_name` as a categorical of the task's classes in label order (the table carries its class
    list, also a class no record has, through Parquet), checked against `label`."""
    frame = frame.copy()
    frame["class_name"] = pd.Categorical(frame["class_name"].astype(str), categories=list(classes))
    if frame["class_name"].isna().any() or (frame["class_name"].cat.codes.to_numpy() != frame["label"].to_numpy()).any():
        raise ValueError("class_name and label disagree, or a class_name is not one of the classes")
    return frame


def class_names(frame: pd.DataFrame) -> list[str]:
    """The task's class names in label order (label i is class_names[i]); EC classes 1-6 for a table without them."""
    if "class_name" in frame and isinstance(frame["class_name"].dtype, pd.CategoricalDtype):
        return [str(name) for name in frame["class_name"].cat.categories]
    return list(EC_NAMES)


def is_ec_task(classes: list[str] | tuple[str, ...]) -> bool:
    """Whether the classes are the study's six top-level EC classes."""
    return tuple(classes) == EC_NAMES


def short_names(classes: list[str] | tuple[str, ...]) -> list[str]:
    """Names for axes and table rows: `EC 1` ... for the EC task, the class names themselves for any other."""
    return [f"EC {c}" for c in classes] if is_ec_task(classes) else [str(c) for c in classes]


def class_titles(classes: list[str] | tuple[str, ...]) -> list[str]:
    """Names to show: `EC 1 oxidoreductases` ... for the EC task, the class names themselves for any other."""
    return [f"EC {c} {EC_CLASSES[int(c)]}" for c in classes] if is_ec_task(classes) else [str(c) for c in classes]


def label_order(names: set[str]) -> list[str]:
    """Class names in label order: numerically when all are integers, else alphabetically."""
    return sorted(names, key=int) if all(re.fullmatch(r"-?\d+", name) for name in names) else sorted(names)


def read_label_table(path: str | Path) -> pd.DataFrame:
    """A CSV (or TSV, by its name) of labels as text columns; a folder, a binary or non-UTF-8 file, or text that is
    no table, refused with the file's name (and the line, where the parser gives one)."""
    separator = "\t" if str(path).endswith((".tsv", ".tsv.gz")) else ","
    with _open_text(path) as handle:
        try:
            text = handle.read()
        except UnicodeDecodeError as error:
            raise DataFileError(f"{path}: not a UTF-8 text file (byte {error.start}: {error.reason})") from None
    if "\x00" in text:
        raise DataFileError(f"{path}: line {text[:text.index(chr(0))].count(chr(10)) + 1}: NUL byte; a binary file, not "
                            "a CSV/TSV table")
    try:
        return pd.read_csv(io.StringIO(text), sep=separator, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataFileError(f"{path}: not a {'TSV' if separator == chr(9) else 'CSV'} table ({error})") from None


def read_labels(path: str | Path, min_per_class: int = 1) -> tuple[dict[str, str], tuple[str, ...]]:
    """A label table as ({id: class name}, classes in label order).

    Columns `id,label`: any class names, 2 or more classes. Columns `id,ec_class`: the study's EC task (1-6, or an
    EC number like 3.1.1.4, read as its top-level class; all six classes kept). A repeated id, an unknown EC class
    or a class with fewer than `min_per_class` records is refused, naming the file and the row.
    """
    table = read_label_table(path)
    column = "label" if "label" in table.columns else "ec_class"
    if "id" not in table.columns or column not in table.columns:
        raise DataFileError(f"{path}: needs columns 'id' and 'label' (any class names) or 'id' and 'ec_class' (EC 1-6), "
                            f"found {list(table.columns)}")
    blank = table[table["id"].isna() | table[column].isna()]
    if len(blank):
        raise DataFileError(f"{path}: row {blank.index[0] + 2}: empty id or {column}")
    repeated = table["id"][table["id"].duplicated()]
    if len(repeated):  # which of two labels is meant cannot be guessed
        raise DataFileError(f"{path}: id {repeated.iloc[0]!r} (row {repeated.index[0] + 2}) is labelled more than once")
    names = table[column].str.strip()
    if column == "ec_class":
        names = names.str.split(".").str[0]
        unknown = names[~names.isin(EC_NAMES)]
        if len(unknown):
            row = unknown.index[0]
            raise DataFileError(f"{path}: row {row + 2}, record {table.at[row, 'id']!r}: unknown label "
                                f"{table.at[row, column]!r}; expected an EC class 1-6 (or use a 'label' column for "
                                "classes of any names)")
    sizes = names.value_counts()
    if column == "label" and len(sizes) < 2:
        raise DataFileError(f"{path}: one class only ({sizes.index[0]!r}); a classifier needs 2 or more")
    if (sizes < min_per_class).any():
        lonely = sizes.index[sizes < min_per_class][0]
        row = names.index[names == lonely][0]
        raise DataFileError(f"{path}: class {lonely!r} has {sizes[lonely]} record(s) (row {row + 2}, {table.at[row, 'id']!r}); "
                            f"every class needs at least {min_per_class}, to train on and to test")
    classes = EC_NAMES if column == "ec_class" else tuple(label_order(set(names)))
    return dict(zip(table["id"], names)), classes


def load_labelled_fasta(fasta_path: str | Path, labels_path: str | Path, min_length: int = 1,
                        min_per_class: int = 1) -> pd.DataFrame:
    """Your own data: a FASTA file and a label table (`read_labels`: columns id,label or id,ec_class), every FASTA
    record labelled and every labelled id in the FASTA; the table's classes carried by `class_name`."""
    class_of, classes = read_labels(labels_path, min_per_class)
    records, seen = [], set()
    for header, raw, line in read_fasta(fasta_path):
        record = header.split()[0] if header.split() else ""
        if not record:
            raise DataFileError(f"{fasta_path}: line {line}: header without an identifier")
        if record in seen:
            raise DataFileError(f"{fasta_path}: record {record!r} (line {line}): identifier used twice")
        seen.add(record)
        sequence = normalise_sequence(raw)
        problem = sequence_problem(sequence) or (f"shorter than {min_length} residues" if len(sequence) < min_length else None)
        if problem:
            raise DataFileError(f"{fasta_path}: record {record!r} (line {line}): {problem}")
        if record not in class_of:
            raise DataFileError(f"{labels_path}: no label for record {record!r} (line {line} of {fasta_path})")
        records.append({"id": record, "class_name": class_of[record], "label": classes.index(class_of[record]),
                        "sequence": sequence, "length": len(sequence), "n_chains": 1, "accession": record})
    if not records:
        raise DataFileError(f"{fasta_path}: no FASTA records")
    unknown = [record for record in class_of if record not in seen]
    if unknown:
        raise DataFileError(f"{labels_path}: id {unknown[0]!r} is not a record of {fasta_path}"
                            + (f" ({len(unknown)} such ids)" if len(unknown) > 1 else ""))
    return with_classes(pd.DataFrame.from_records(records), classes)


def build_labelled_dataset(fasta_path: str | Path, labels_path: str | Path, min_length: int = 30,
                           max_unknown_fraction: float = 0.1, trim_tags: bool = True) -> tuple[pd.DataFrame, Counter]:
    """Your own data as notebook 01 builds the PDB's: tags cut, short or unknown-rich records dropped (counted), identical
    sequences merged. A malformed record (bad residue, no label, unknown class) stops with an error naming it.

    Each record is its own accession, so `split="accession"` splits records as `random` does.
    """
    dropped: Counter = Counter()
    by_sequence: dict[str, dict] = {}
    labelled = load_labelled_fasta(fasta_path, labels_path, min_per_class=2)
    for record in labelled.itertuples():
        sequence = trim_expression_tags(record.sequence) if trim_tags else record.sequence
        reason = _drop_reason(sequence, min_length, max_unknown_fraction)
        if reason:
            dropped[reason] += 1
            continue
        _add_chain(by_sequence, sequence, record.id, record.class_name, {record.accession}, tagged=len(sequence) < record.length)
    frame = _merge_identical(by_sequence, dropped, tuple(class_names(labelled)))
    if frame.empty:
        raise DataFileError(f"{fasta_path}: no record left after dropping {dict(dropped)}")
    return frame, dropped


def build_from_inputs(paths: dict[str, Path], min_length: int = 30, max_unknown_fraction: float = 0.1,
                      trim_tags: bool = True) -> tuple[pd.DataFrame, Counter]:
    """The dataset from `sources.resolve_inputs`: your own `fasta` and `labels`, else the PDB's two upstream files."""
    if "fasta" in paths:
        return build_labelled_dataset(paths["fasta"], paths["labels"], min_length, max_unknown_fraction, trim_tags)
    return build_dataset(paths["pdb_seqres.txt.gz"], paths["pdb_chain_enzyme.tsv.gz"], min_length, max_unknown_fraction,
                         trim_tags)


def cap_per_class(frame: pd.DataFrame, max_per_class: int | None, seed: int) -> pd.DataFrame:
    """At most `max_per_class` records of each class, drawn with `seed` (None keeps all)."""
    if not max_per_class:
        return frame
    rng = np.random.default_rng(seed)
    keep = [group.iloc[np.sort(rng.permutation(len(group))[:max_per_class])] for _, group in frame.groupby("label")]
    return pd.concat(keep).sort_values("id", ignore_index=True)


GROUPS = {"accession": "accession", "identity": "cluster"}  # grouped splits: the column whose groups stay on one side


def split_dataset(frame: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0, strategy: str = "random") -> pd.DataFrame:
    """Add a `split` column (train/test), stratified by class and seeded.

    `random` splits records; `accession` keeps every record of one UniProt accession on the same side
    (stratified group split), so that test proteins are not the training proteins again; `identity` does the same
    for the sequence-identity clusters of a `cluster` column (clusters.with_clusters, MMseqs2).
    """
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    sizes = frame["label"].value_counts()
    if (sizes < 2).any():  # a stratified split puts one of each class's records on each side
        lonely = class_names(frame)[int(sizes.index[sizes < 2][0])]
        raise ValueError(f"class {lonely!r} has {int(sizes.min())} record left after cleaning; a split needs at least 2 "
                         "per class (label more records of it, or drop the class from the label table)")
    frame = frame.copy()
    if strategy == "random":
        _, test_index = train_test_split(np.arange(len(frame)), test_size=test_fraction, stratify=frame["label"], random_state=seed)
    elif strategy in GROUPS:
        if GROUPS[strategy] not in frame:
            raise ValueError(f"the {strategy} split needs a {GROUPS[strategy]!r} column (clusters.with_clusters adds it)")
        n_folds = round(1 / test_fraction)  # the held-out side is one of n stratified group folds: a share of 1/n
        if abs(1 / n_folds - test_fraction) > 0.01:
            raise ValueError(f"the {strategy} split holds out one fold in n, 1/n of the records; {test_fraction!r} is not "
                             f"within 0.01 of any 1/n (nearest: 1/{n_folds} = {1 / n_folds:.3f})")
        folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        _, test_index = next(folds.split(frame, frame["label"], groups=frame[GROUPS[strategy]]))
    else:
        raise ValueError(f"unknown split strategy {strategy!r}; use 'random', 'accession' or 'identity'")
    frame["split"] = "train"
    frame.loc[frame.index[test_index], "split"] = "test"
    return frame


def validation_split(train: pd.DataFrame, fraction: float, seed: int = 0,
                     strategy: str = "random") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a stratified share of the training records (none at 0) to choose settings on without the test set."""
    if fraction == 0:
        return train, train.iloc[:0]
    if not 0 < fraction < 0.5:
        raise ValueError(f"validation_fraction must be in [0, 0.5), not {fraction!r}")
    held_out = split_dataset(train, test_fraction=fraction, seed=seed, strategy=strategy)["split"].eq("test").to_numpy()
    return train[~held_out], train[held_out]


def class_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Records per split and class, as {split: {class name: n}}, every class of the task listed."""
    table = frame.groupby(["split", "label"]).size()
    return {split: {name: int(table.get((split, label), 0)) for label, name in enumerate(class_names(frame))}
            for split in sorted(frame["split"].unique())}


def sequence_checksum(frame: pd.DataFrame) -> str:
    """SHA-256 over (id, label, split, sequence) of every record: the data checksum results record."""
    import hashlib

    digest = hashlib.sha256()
    columns = [c for c in ("id", "label", "split", "sequence") if c in frame.columns]
    for row in frame[columns].itertuples(index=False):
        digest.update(("\t".join(map(str, row)) + "\n").encode())
    return digest.hexdigest()


def save_dataset(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the dataset table as Parquet, atomically."""
    from .provenance import save_table

    return save_table(frame, path)


def load_dataset(path: str | Path) -> pd.DataFrame:
    """Read the dataset table written by notebook 01, naming the file when it is missing."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: dataset not found; run notebook 01 (notebooks/01_data.py) for this profile first")
    return pd.read_parquet(path)


def dataset_summary(frame: pd.DataFrame, dropped: Counter, max_residues: int) -> dict:
    """The figures data.json records: totals, counts per split and class, drops by reason, lengths."""
    lengths = frame["length"]
    return {
        "classes": class_names(frame),
        "n_sequences": int(len(frame)),
        "n_train": int((frame["split"] == "train").sum()),
        "n_test": int((frame["split"] == "test").sum()),
        "counts": class_counts(frame),
        "dropped": {reason: int(n) for reason, n in sorted(dropped.items())},
        "records_with_tag_trimmed": int((frame["tagged_chains"] > 0).sum()) if "tagged_chains" in frame else 0,
        "n_accessions": int(frame["accession"].nunique()),
        "length_median": float(lengths.median()),
        "length_p95": float(lengths.quantile(0.95)),
        "fraction_longer_than_max_residues": float((lengths > max_residues).mean()),
        "max_residues": int(max_residues),
        "class_imbalance_ratio": float(frame["label"].value_counts().max() / frame["label"].value_counts().min()),
        "test_accessions_seen_in_train": accession_overlap(frame),
    }


def counts_table(counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Records per class (rows) and split (columns); for the EC task with each class's name."""
    table = pd.DataFrame(counts).rename_axis("class")
    if is_ec_task(list(table.index)):
        table["name"] = [EC_CLASSES[int(c)] for c in table.index]
    return table


PAPER_SEQUENCES = 11_731  # the paper's dataset, about 2,000 per class


def paper_comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """Sequences per class here, beside the paper's (its total spread evenly over the six classes) for the EC task."""
    classes = class_names(frame)
    per_class = frame.groupby("label").size().reindex(range(len(classes)), fill_value=0).set_axis(classes)
    columns = {"ours": per_class}
    if is_ec_task(classes):
        columns["paper (approx.)"] = PAPER_SEQUENCES / len(EC_CLASSES)
    table = pd.DataFrame(columns).astype(int).T
    return table.assign(total=lambda t: t.sum(axis=1))


def accession_overlap(frame: pd.DataFrame) -> float:
    """Fraction of test records whose UniProt accession also occurs in the training split (leakage measure)."""
    train = set(frame.loc[frame["split"] == "train", "accession"])
    test = frame.loc[frame["split"] == "test", "accession"]
    return float(test.isin(train).mean()) if len(test) else 0.0
