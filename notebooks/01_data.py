# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The enzyme dataset
#
# **Question.** Which PDB enzyme chains can we label unambiguously with one of the six top-level EC classes,
# and how does the resulting dataset compare with the paper's 11,731 roughly balanced sequences?
#
# The pipeline reads the two upstream files (PDB `pdb_seqres.txt.gz`, SIFTS `pdb_chain_enzyme.tsv.gz`) from a
# local mirror when one is given (`mirror` parameter or `$KN_MIRROR`), else from `data/raw/`, else downloads
# them. Every record that does not make it into the dataset is counted by reason. To run the study on your own
# data instead, set `fasta` (a FASTA file) and `labels` (a CSV/TSV with columns `id,label`, 2 or more classes of any
# names, or `id,ec_class` for EC classes): the same cleaning, merging and split apply, every later stage takes its
# classes, and a malformed record stops the run with an error naming it. With `synthetic`, the chains read are only
# the background statistics of the positive control, a task with planted motifs (`profiles/control.yaml`).

# %% tags=["parameters"]
profile = "quick"       # which runs/<profile>/ folder this run writes
seed = 0
mirror = None           # folder holding the two upstream files; None: $KN_MIRROR, data/raw, or download
fasta = None            # your own data instead of the PDB's: a FASTA file (optionally gzipped) ...
labels = None           # ... and a CSV/TSV with columns id,label (any class names) or id,ec_class (1-6 or an EC number)
split = "random"        # random | accession (all chains of one UniProt accession on the same side) | identity
split_identity = 0.5    # identity split: MMseqs2 clusters at this sequence identity (0.3, 0.5) stay on one side
test_fraction = 0.2
min_length = 30         # shorter chains are peptides or fragments, not enzyme domains
max_unknown_fraction = 0.1
trim_tags = True        # cut His/T7 expression tags (cloning artefacts, not enzyme) before de-duplicating
max_residues = 128      # residues of each sequence the model sees (the first ones); ESM-2 takes at most 1,022
max_per_class = 50      # None keeps every sequence; a number caps each class (the paper sampled ~2,000 per class)
synthetic = False       # True: the positive control, a planted-motif task (kn_utils.synthetic) replaces the chains read
synthetic_per_class = 1000      # its sequences per class
synthetic_length = [40, 60]     # their length range (residues)
label_noise = 0.0               # share of its labels flipped to another class
decoy_share = 0.2               # share of its sequences that carry a near miss of another class's motif

# %%
import pandas as pd
from IPython.display import display
from kn_utils import clusters, data, plots, provenance, sources, synthetic as planted
from kn_utils.stage import open_stage

stage = open_stage("01_data", globals())

# %% [markdown]
# ## Input files
# Where each file was found, and its SHA-256 (recorded in `data.json`).

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (absolute paths differ between machines)
paths = sources.resolve_inputs(mirror, fasta, labels)
checksums = {name: provenance.sha256_file(path) for name, path in paths.items()}
pd.DataFrame({"path": {name: str(path) for name, path in paths.items()}, "sha256": checksums})

# %% [markdown]
# ## Join, clean, de-duplicate
# A chain is kept when every EC number SIFTS gives it shares one top-level class in 1–6, its residues are valid, it has at least `min_length` residues and at most `max_unknown_fraction` ambiguous residues (X, B, Z, U, O). With `trim_tags`, expression tags are cut first: SEQRES records the crystallised construct, so many chains start with a His tag and its linker up to a protease site (e.g. `MGSSHHHHHHSSGLVPRGSH`) or a T7 tag, or end with a His tag; these residues are the same across unrelated enzymes and would fill part of the window the model sees. Identical sequences are merged into one record (and dropped when their chains disagree on the class).

# %%
dataset, dropped = data.build_from_inputs(paths, min_length=min_length, max_unknown_fraction=max_unknown_fraction,
                                          trim_tags=trim_tags)
print(f"{len(dataset):,} distinct labelled sequences; {(dataset['tagged_chains'] > 0).sum():,} of them lost an expression tag")
pd.Series(dropped, name="records dropped").sort_values(ascending=False).to_frame()

# %% [markdown]
# Most PDB protein chains carry no EC number at all (they are not enzymes); exact duplicates are the next largest loss, since the PDB holds many structures of the same protein.

# %% [markdown]
# ## The positive control (`synthetic = True` only)
# Does the study find knowledge where we know it is? With `synthetic`, the dataset becomes a task with planted truth:
# five classes each defined by one PROSITE-like motif (two degenerate positions, planted once per sequence at a
# class-specific place with a jitter of ±10 residues), and a sixth defined by composition alone (K/E-rich, no motif),
# on backgrounds drawn from a first-order Markov model fitted to the chains above. A share of sequences carry a decoy
# (another class's motif with one position mutated out of its set). Where each motif sits in each sequence is saved
# (`planted.parquet`) for notebook 08.

# %%
planted_motifs = {}
if synthetic:
    dataset, truth, spec = planted.control_task(dataset["sequence"], synthetic_per_class, synthetic_length, label_noise,
                                                decoy_share, seed)
    planted_motifs, dropped = planted.planted_motifs(spec), {}  # the chains read were the background, not records
    stage.save_table(truth, "planted")
    print(f"planted task: {len(dataset):,} sequences; {(truth['kind'] == 'decoy').sum():,} decoys; "
          f"{(truth['kind'] == 'label_noise').sum():,} flipped labels")
    display(pd.Series(planted_motifs, name="pattern").to_frame())
else:
    print("the study's data (synthetic = False)")

# %% [markdown]
# ## Sample and split
# The split is stratified by class and seeded; `split="accession"` keeps all chains of one UniProt accession on the same
# side, and `split="identity"` all chains of one MMseqs2 cluster at `split_identity` sequence identity (over 80 % of
# both chains), as the field's homology-aware benchmarks do.

# %%
dataset = data.cap_per_class(dataset, max_per_class, seed)
if split == "identity":
    dataset = clusters.with_clusters(dataset, split_identity)
dataset = data.split_dataset(dataset, test_fraction, seed, strategy=split)
summary = data.dataset_summary(dataset, dropped, max_residues) | ({"planted_motifs": planted_motifs} if synthetic else {})
if split == "identity":
    summary |= clusters.cluster_summary(dataset) | {"mmseqs": clusters.mmseqs_version()}
    print(f"{summary['n_clusters']:,} clusters at {split_identity:.0%} identity; the largest holds {summary['largest_cluster_share']:.1%}")
print(f"test records whose UniProt accession also occurs in training: {summary['test_accessions_seen_in_train']:.1%}")
data.counts_table(summary["counts"])

# %% [markdown]
# A random split leaves many test proteins with a sibling chain of the same accession in training: the model is partly tested on proteins it has seen. The `accession` split removes that leakage; the `full-accession` profile re-runs the study on it.

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.class_counts_bar(summary["counts"]), "01_class_counts");

# %% [markdown]
# ## Lengths
# The model sees the first `max_residues` residues of each sequence (ESM-2 itself accepts 1,022).

# %% tags=["nbval-ignore-output"]
figure = plots.length_histogram(dataset["length"], dataset["label"], data.short_names(summary["classes"]),
                                {"max_residues": max_residues, "ESM-2 limit": 1022})
stage.save_figure(figure, "01_lengths")
print(f"median length {summary['length_median']:.0f}; {summary['fraction_longer_than_max_residues']:.1%} of sequences are longer than {max_residues} residues")

# %% [markdown]
# ## Against the paper
# The paper used 11,731 sequences, about 2,000 per class. Our mirror is a subset of the PDB, so classes 4–6 are much smaller; we keep the imbalance and report balanced accuracy and macro-F1 beside accuracy.

# %%
data.paper_comparison(dataset)

# %%
data.save_dataset(dataset, stage.run / "dataset.parquet")
stage.save_result("data", summary, inputs={f"sha256:{name}": checksum for name, checksum in checksums.items()})
print({key: summary[key] for key in ("n_sequences", "n_train", "n_test", "class_imbalance_ratio")})
