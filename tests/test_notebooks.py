"""The notebooks at quick size: checked copies in sync with the notebooks, and the values the run recorded.

The nbval copies in tests/nbval/ are executed by `pytest --nbval` (collected before this file), writing
their results to $KN_RUNS_DIR/quick; this module reads them, running the notebooks with papermill first
when they are not there (for example when this file is run alone).
"""
from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path

import nbformat
import numpy as np
import pytest

from kn_utils.model import select_device
from kn_utils.runner import OPT_IN_STAGES, run_profile, stage_notebooks
from kn_utils.runs import notebook_node, run_dir, source_of

REPO = Path(__file__).resolve().parent.parent
CHECKED = REPO / "tests" / "nbval"
RECORD = REPO / "notebooks"  # the executed record of every published profile (issue 51)
STAGES = {"01": "data", "02": "finetune", "03": "activations", "04": "integrated_gradients", "05": "ablation", "06": "heatmaps", "07": "class_neurons"}


def _code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells
            if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", [])]


@pytest.mark.parametrize("source", [nb for nb in stage_notebooks() if nb.name[:2] not in OPT_IN_STAGES], ids=lambda p: p.name)
def test_checked_copy_is_regenerated_after_code_changes(source):
    copy = CHECKED / f"{source.stem}.ipynb"
    assert copy.exists(), f"{copy} missing: run `make notebooks`"
    assert _code_cells(nbformat.read(copy, as_version=4)) == _code_cells(notebook_node(source)), (
        f"{source.name} changed since {copy} was executed from it: run `make notebooks`")


@pytest.mark.parametrize("executed", sorted(RECORD.glob("**/[0-9][0-9]_*.ipynb")), ids=lambda p: str(p.relative_to(RECORD)))
def test_every_record_notebook_ran_from_its_source_as_it_stands(executed):
    source = source_of(executed.stem)
    assert _code_cells(nbformat.read(executed, as_version=4)) == _code_cells(notebook_node(source)), (
        f"{executed.relative_to(REPO)} was executed from another version of {source.name}: re-run and publish its profile")


@pytest.mark.parametrize("source", stage_notebooks(), ids=lambda p: p.name)
def test_notebook_code_cells_are_calls_not_algorithms(source):
    """Logic lives in kn_utils: no def or class in a notebook, and no code cell over 15 lines (parameters aside)."""
    import ast

    for cell in notebook_node(source).cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        defined = [node for node in ast.walk(ast.parse(cell.source))
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defined, f"{source.name}: a cell defines {type(defined[0]).__name__}: {cell.source[:80]!r}"
        lines = len(cell.source.strip().splitlines())
        assert lines <= 15, f"{source.name}: a code cell of {lines} lines: {cell.source[:80]!r}"


@pytest.mark.parametrize("source", stage_notebooks(), ids=lambda p: p.name)
def test_cells_that_say_nbval_ignores_them_carry_its_tag(source):
    """A `# NBVAL_IGNORE_OUTPUT  (reason)` comment documents; the `nbval-ignore-output` tag is what nbval acts on
    (it reads a comment only when the line holds the bare marker), so a commented cell without the tag is checked."""
    for cell in notebook_node(source).cells:
        if cell.cell_type == "code" and "# NBVAL_IGNORE_OUTPUT" in cell.source:
            assert "nbval-ignore-output" in cell.metadata.get("tags", []), f"{source.name}: {cell.source[:80]!r} lacks the tag"


@pytest.mark.parametrize("source", stage_notebooks(), ids=lambda p: p.name)
def test_every_notebook_states_its_question_and_opens_its_stage(source):
    cells = notebook_node(source).cells
    tagged = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "profile" in tagged[0].source
    assert cells[0].cell_type == "markdown" and "**Question.**" in cells[0].source
    assert f'open_stage("{source.stem}", globals())' in source.read_text()  # one stage helper, no copied set-up
    assert '["provenance"]' not in source.read_text()  # no deep look-ups into result files


def test_executed_notebooks_keep_progress_output_short():
    for copy in sorted(CHECKED.glob("*.ipynb")):
        streams = [output.text for cell in nbformat.read(copy, as_version=4).cells if cell.cell_type == "code"
                   for output in cell.outputs if output.output_type == "stream"]
        assert sum(text.count("\n") + text.count("\r") for text in streams) < 60, copy.name


@pytest.fixture(scope="module")
def quick_run() -> Path:
    run = run_dir("quick")
    if not all((run / f"{stage}.json").exists() for stage in STAGES.values()):
        run_profile("quick", last=max(STAGES))
    return run


def _shape(run: Path) -> tuple[int, int]:
    """(layers, width) of a run's model."""
    config = json.loads((run / "model" / "config.json").read_text())
    return config["num_hidden_layers"], config["hidden_size"]


@pytest.fixture(scope="module")
def results(quick_run) -> dict[str, dict]:
    return {stage: json.loads((quick_run / f"{stage}.json").read_text()) for stage in STAGES.values()}


def test_data_counts_add_up(results):
    data = results["data"]
    counts = data["counts"]
    assert sum(counts["train"].values()) == data["n_train"] and sum(counts["test"].values()) == data["n_test"]
    assert set(counts["test"]) == {"1", "2", "3", "4", "5", "6"} and min(counts["test"].values()) > 0
    assert data["n_test"] / data["n_sequences"] == pytest.approx(0.2, abs=0.02)
    assert data["dropped"]["not_protein"] > 0 and data["dropped"]["duplicate_sequence"] > 0
    assert 0 < data["records_with_tag_trimmed"] < data["n_sequences"]  # about one PDB chain in five carries a tag
    inputs = data["provenance"]["inputs"]
    if "mirror" in os.environ.get("KN_MIRROR", ""):
        sums = dict(line.split()[::-1] for line in (Path(os.environ["KN_MIRROR"]) / "SHA256SUMS").read_text().splitlines())
        assert inputs["sha256:pdb_seqres.txt.gz"] == sums["pdb_seqres.txt.gz"]


def test_finetune_records_the_flat_keys_readers_rely_on(results):
    finetune, data = results["finetune"], results["data"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "majority_baseline", "wall_s", "train_tokens_per_s", "peak_rss_mb"):
        assert isinstance(finetune[key], float), key
    assert 0 <= finetune["accuracy"] <= 1 and finetune["train_tokens_per_s"] > 0
    assert finetune["init"] == "random" and finetune["model_source"].startswith("random-init")
    assert (finetune["n_train"], finetune["n_test"]) == (data["n_train"], data["n_test"])
    assert finetune["majority_baseline"] == pytest.approx(max(data["counts"]["test"].values()) / data["n_test"])
    assert len(finetune["history"]) == finetune["provenance"]["parameters"]["epochs"]
    assert sum(map(sum, finetune["confusion_matrix"])) == data["n_test"]
    buckets = finetune["accuracy_by_similarity"]  # the near-copy control partitions the test set
    assert [row["similarity"] for row in buckets] == [">= 0.99", "0.9-0.99", "0.5-0.9", "< 0.5"]
    assert sum(row["chains"] for row in buckets) == data["n_test"]
    assert sum(row["accuracy"] * row["chains"] for row in buckets if row["chains"]) == pytest.approx(
        finetune["accuracy"] * data["n_test"], abs=1e-6)
    assert finetune["accuracy_distant"] == buckets[-1]["accuracy"]
    assert all((row["accuracy"] is None) == (row["chains"] == 0) for row in buckets)  # an empty bucket: None, not NaN
    mlm = finetune["provenance"]["parameters"]["mlm"]  # the quick profile exercises the MLM warm start too
    assert finetune["warm_start"].startswith(f"mlm-warm-start(steps={mlm['steps']},") and mlm["steps"] > 0
    assert [point["step"] for point in finetune["mlm_history"]][-1] == mlm["steps"] and finetune["mlm_seconds"] > 0
    assert finetune["provenance"]["model"]["warm_start"] == finetune["warm_start"]


def test_every_result_records_its_provenance(results):
    for stage, result in results.items():
        provenance = result["provenance"]
        assert provenance["parameters"]["profile"] == "quick", stage
        assert provenance["packages"]["torch"] == metadata.version("torch"), stage  # the installed build, CPU or CUDA
        assert "git_commit" in provenance and provenance["created"], stage
    finetune = results["finetune"]["provenance"]
    assert finetune["model"]["init"] == "random" and finetune["device"] == str(select_device("auto"))
    assert finetune["inputs"]["dataset_sha256"] == results["data"]["provenance"]["inputs"]["dataset_sha256"]


def test_every_result_names_one_model_and_one_dataset(quick_run, results):
    from kn_utils.model import load_finetuned
    from kn_utils.training import weights_fingerprint

    weights = {stage: result["provenance"]["inputs"].get("weights_sha256") for stage, result in results.items()}
    assert weights.pop("data") is None  # the dataset comes before any model
    assert set(weights.values()) == {weights_fingerprint(load_finetuned(quick_run / "model")[0])}
    assert len({result["provenance"]["inputs"]["dataset_sha256"] for result in results.values()}) == 1


def test_scores_cover_every_neuron(quick_run, results):
    import pandas as pd

    table = pd.read_parquet(quick_run / "neuron_scores.parquet")
    layers, width = _shape(quick_run)
    assert len(table) == layers * 3 * width == results["activations"]["n_neurons"] == results["integrated_gradients"][
        "n_neurons"]
    assert table.groupby(["layer", "projection"]).size().eq(width).all() and table["layer"].nunique() == layers
    assert (table["activation"] > 0).all() and (table["ig_absolute"] >= table["ig_signed"].abs() - 1e-9).all()
    ig = results["integrated_gradients"]
    # Each example within the quick profile's tolerance, in relative or absolute terms (tests/test_attribution.py
    # checks the adaptive rule to 1 % against a fine one); the convergence table has its reference row.
    parameters = ig["provenance"]["parameters"]
    assert ig["converged_share"] >= 0.9
    assert ig["absolute_error_median"] <= parameters["absolute_tolerance"] or ig["completeness_error_median"] <= parameters["tolerance"]
    rows = {row["setting"]: row for row in ig["convergence"]}
    assert rows["reference"]["Spearman signed"] == 1 and rows["adaptive (this run)"]["nodes per example"] >= parameters["steps"]
    assert -1 <= ig["split_half_spearman"] <= 1 and ig["n_examples"] == results["data"]["n_test"]
    assert -1 <= ig["split_half_spearman_absolute"] <= 1
    assert results["activations"]["positions"].startswith("residues only")


def test_ablation_records_every_submodel(results):
    ablation = results["ablation"]
    rows = ablation["submodels"]
    assert len(rows) == ablation["n_submodels"]
    for row in rows:
        assert {"method", "direction", "ablation", "keep_fraction", "seed", "accuracy", "balanced_accuracy", "macro_f1"} <= set(row)
    full = [row for row in rows if row["method"] == "full"]
    n_test = results["finetune"]["n_test"]
    assert ablation["full_accuracy_fp32"] == pytest.approx(results["finetune"]["accuracy"], abs=1e-12)
    assert len(full) == 1 and abs(full[0]["accuracy"] - results["finetune"]["accuracy"]) <= 2 / n_test  # bf16 vs fp32
    assert {row["seed"] for row in rows if row["method"] == "random" and row["ablation"] == "zero"} == {0, 1}
    assert {row["ablation"] for row in rows} == {"none", "zero", "mean"}
    assert set(ablation["evaluation_speed"]) == {"plain_sequences_per_s", "submodel_sequences_per_s", "ratio"}


def test_heatmap_tests_have_p_values(results):
    heatmaps = results["heatmaps"]
    assert heatmaps["tests"] and all(0 < test["p_value"] <= 1 and "statistic" in test for test in heatmaps["tests"])
    fractions = heatmaps["kept_fractions"]["random@0.5"]
    assert len(fractions) == 18 and abs(sum(fractions.values()) / 18 - 0.5) < 1e-9


def test_class_neurons_record_sets_effects_and_corrected_tests(results):
    record = results["class_neurons"]
    parameters = record["provenance"]["parameters"]
    assert all(len(ids) == parameters["top_size"] for ids in record["class_set_ids"].values())
    assert list(record["class_sets"]) == [f"EC {c}" for c in range(1, 7)] == record["classes"]  # the EC task's names
    assert all(name.startswith("L") and name.count(".") == 2 for name in record["class_sets"]["EC 1"])  # NeuronIndex.name
    for factor in ("0", "2"):
        for metric in ("probability", "accuracy"):
            matrices = record["scaling"][factor][metric]
            assert all(len(matrices[key]) == 6 and all(len(row) == 6 for row in matrices[key]) for key in ("effect", "random_mean", "random_sd"))
    tests = record["motif_tests"]
    assert tests and all(0 < t["p_value"] <= 1 and t["p_value"] <= t["q_value"] + 1e-12 for t in tests)
    assert "Benjamini-Hochberg" in record["multiple_testing"]


def test_comparing_a_run_with_itself_gives_identity(quick_run):
    from kn_utils.compare import headline, run_available, selection_overlap, table1_side_by_side
    from kn_utils.neurons import NeuronIndex

    pair = {"a": quick_run, "b": quick_run}
    assert run_available(quick_run)
    heads = headline(pair)
    assert heads["a"].equals(heads["b"]) and heads.loc["split", "a"] == "random"
    overlap = selection_overlap(pair, NeuronIndex(*_shape(quick_run)), [0.5, 0.99])
    assert (overlap["jaccard"] == 1).all() and (overlap["random_jaccard"] < 0.5).all()
    assert (overlap["a: key"] == overlap["b: key"]).all()
    tables = table1_side_by_side(pair, [0.5, 0.25, 0.1, 0.01])
    assert tables.xs("a", level="run").equals(tables.xs("b", level="run"))


def test_saved_model_is_loadable_and_marked_random(quick_run):
    from kn_utils.model import load_finetuned

    _, info = load_finetuned(quick_run / "model")
    assert info.init == "random" and info.training["max_residues"] == results_parameter(quick_run, "max_residues")
    assert info.warm_start.startswith("mlm-warm-start(")  # later stages read it with the model


def results_parameter(run: Path, name: str):
    return json.loads((run / "finetune.json").read_text())["provenance"]["parameters"][name]


def test_random_init_is_impossible_to_miss_in_the_executed_notebook(quick_run):
    executed = CHECKED / "02_finetune.ipynb"
    text = json.dumps(nbformat.read(executed, as_version=4).cells)
    assert "RANDOM INIT" in text


def test_report_renders_every_stage_from_the_result_files(quick_run, tmp_path):
    import shutil

    from kn_utils.report import render

    for stage in STAGES.values():
        shutil.copy(quick_run / f"{stage}.json", tmp_path)
    text = render(tmp_path)
    for heading in ("### Dataset", "### Fine-tuning", "### Neuron scores", "### Table 1", "### Where the kept neurons sit",
                    "### Class-specific knowledge neurons"):
        assert heading in text
    assert "beats random by more than 2 sd" in text and '"value least important": holds' in text
    assert "**random init**" in text and "Benjamini-Hochberg" in text
    assert "had an expression tag cut" in text
    assert "Head input: the mean final state" in text  # quick is random init, so pooling auto reads the mean
    assert "| suppress (x0) " in text and "| amplify (x2) " in text and "('x0'" not in text  # rows named, not tuples


def test_report_renders_the_homology_comparison(quick_run, tmp_path):
    import shutil

    from kn_utils.compare import headline, selection_overlap, table1_side_by_side
    from kn_utils.neurons import NeuronIndex
    from kn_utils.report import render

    for stage in STAGES.values():
        shutil.copy(quick_run / f"{stage}.json", tmp_path)
    pair = {"quick": quick_run, "again": quick_run}
    record = json.loads((tmp_path / "class_neurons.json").read_text())
    record["comparison"] = {"profile": "again", "headline": headline(pair).to_dict(),
                            "selection_overlap": selection_overlap(pair, NeuronIndex(*_shape(quick_run)), [0.9]).to_dict("records"),
                            "table1": table1_side_by_side(pair, [0.5, 0.25, 0.1, 0.01]).reset_index().to_dict("records")}
    (tmp_path / "class_neurons.json").write_text(json.dumps(record))
    text = render(tmp_path)
    comparison = text.split("Homology-aware re-run (`again`")[1]
    assert "Table 1 of both runs" in comparison and "IG \\|.\\| (high)" in comparison
    assert "random_jaccard" in comparison and "again: value" in comparison
    assert "The same answers in the `again` run" not in text  # its result files are not published beside
    (tmp_path / "again").mkdir()
    for stage in ("ablation", "heatmaps"):
        shutil.copy(quick_run / f"{stage}.json", tmp_path / "again")
    answers = render(tmp_path).split("The same answers in the `again` run:")[1]
    assert "beats random by more than 2 sd" in answers and '"value least important": holds' in answers


def test_validation_fraction_scores_held_out_training_chains_each_epoch(quick_run, tmp_path):
    import shutil

    from kn_utils.runs import PROFILES_DIR

    shutil.copy(PROFILES_DIR / "quick.yaml", tmp_path)
    profile = tmp_path / "quick-validation.yaml"
    profile.write_text("extends: quick\n02_finetune:\n  validation_fraction: 0.25\n  epochs: 1\n  mlm_steps: 4\n")
    run = run_dir("quick-validation")
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    run_profile(str(profile), last="02", output_dir=tmp_path)  # 01 too: 02 runs only on a dataset whose stage finished
    finetune = json.loads((run / "finetune.json").read_text())
    n_train = json.loads((quick_run / "data.json").read_text())["n_train"]
    assert finetune["epoch_scores_on"] == "validation" and finetune["provenance"]["parameters"]["validation_fraction"] == 0.25
    assert finetune["n_train"] + finetune["n_validation"] == n_train and 0.2 < finetune["n_validation"] / n_train < 0.3
    assert len(finetune["history"]) == 1 and 0 <= finetune["accuracy"] <= 1  # the test set, scored once at the end
    assert json.loads((quick_run / "finetune.json").read_text())["epoch_scores_on"] == "test"  # the default
    assert "held out for validation" in json.dumps(nbformat.read(tmp_path / "02_finetune.ipynb", as_version=4).cells)


def test_own_fasta_and_labels_build_the_same_dataset_notebook_01_builds_from_the_pdb(quick_run, tmp_path, monkeypatch):
    """The quick run's chains, written out as your own FASTA and labels, give the same dataset, split and checksum."""
    import pandas as pd

    dataset = pd.read_parquet(quick_run / "dataset.parquet")
    (tmp_path / "mine.fasta").write_text("".join(f">{row.id} own record\n{row.sequence}\n" for row in dataset.itertuples()))
    dataset[["id", "class_name"]].rename(columns={"class_name": "ec_class"}).to_csv(tmp_path / "labels.csv", index=False)
    (tmp_path / "mine.yaml").write_text("extends: quick\n01_data:\n  fasta: mine.fasta\n  labels: labels.csv\n"
                                        "  trim_tags: false\n")  # the chains are cut already; quick.yaml is not beside it
    monkeypatch.chdir(tmp_path)  # relative paths are read from where the command runs, not from notebooks/
    run_profile(str(tmp_path / "mine.yaml"), last="01", output_dir=tmp_path / "out")
    own, pdb = (json.loads((run / "data.json").read_text()) for run in (run_dir("mine"), quick_run))
    assert own["provenance"]["inputs"]["dataset_sha256"] == pdb["provenance"]["inputs"]["dataset_sha256"]
    assert own["counts"] == pdb["counts"] and sum(own["dropped"].values()) == 0
    assert own["provenance"]["inputs"]["sha256:fasta"] != own["provenance"]["inputs"]["sha256:labels"]
    assert own["provenance"]["parameters"]["fasta"] == str(tmp_path / "mine.fasta")


@pytest.fixture(scope="module")
def three_class_profile(quick_run, tmp_path_factory) -> Path:
    """Your own labels, K = 3 with names that are no EC classes, run by the runner through notebook 03 (so stamped:
    the profiles below that share its stages read them, not a rerun)."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("three")
    dataset = pd.read_parquet(quick_run / "dataset.parquet")
    names = np.array(["cytoplasm", "membrane", "secreted"])[dataset["label"].to_numpy() % 3]
    (folder / "mine.fasta").write_text("".join(f">{row.id}\n{row.sequence}\n" for row in dataset.itertuples()))
    pd.DataFrame({"id": dataset["id"], "label": names}).to_csv(folder / "labels.csv", index=False)
    (folder / "three.yaml").write_text(f"extends: quick\n01_data:\n  fasta: {folder / 'mine.fasta'}\n"
                                       f"  labels: {folder / 'labels.csv'}\n  trim_tags: false\n"
                                       "02_finetune:\n  epochs: 1\n  mlm_steps: 2\n")
    run_profile(str(folder / "three.yaml"), last="03", output_dir=folder / "out")
    return folder / "three.yaml"


def test_a_three_class_task_of_any_names_runs_through_training_and_scoring(three_class_profile):
    """Notebooks 01-03 take the classes from the table: names, confusion matrix, per-class scores, model card."""
    run = run_dir("three")
    data, finetune = (json.loads((run / f"{stage}.json").read_text()) for stage in ("data", "finetune"))
    assert data["classes"] == ["cytoplasm", "membrane", "secreted"] and set(data["counts"]["test"]) == set(data["classes"])
    assert np.array(finetune["confusion_matrix"]).shape == (3, 3)
    assert json.loads((run / "model" / "config.json").read_text())["id2label"] == {"0": "cytoplasm", "1": "membrane",
                                                                                  "2": "secreted"}
    with np.load(run / "activations.npz") as arrays:
        assert arrays["per_class"].shape[0] == 3
    card = (run / "model" / "README.md").read_text()  # the model card names the task's classes and its data
    assert 'labels: ["cytoplasm", "membrane", "secreted"]' in card and "mine.fasta" in card
    assert f"| accuracy | {finetune['accuracy']:.4f} |" in card and finetune["provenance"]["inputs"]["weights_sha256"] in card


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="MMseqs2 not installed (make install installs it; CI has it)")
def test_identity_split_runs_through_training_and_is_tabulated_beside_the_random_split(quick_run, tmp_path):
    """Notebook 01 with `split: identity` keeps MMseqs2 clusters apart; notebook 07's split table reads the run."""
    import pandas as pd

    from kn_utils.compare import headline, split_runs

    (tmp_path / "ident.yaml").write_text("extends: quick\ncommon:\n  split: identity\n01_data:\n  split_identity: 0.3\n"
                                         "02_finetune:\n  epochs: 1\n  mlm_steps: 2\n")
    run_profile(str(tmp_path / "ident.yaml"), last="02", output_dir=tmp_path / "out")
    run = run_dir("ident")
    dataset, data = pd.read_parquet(run / "dataset.parquet"), json.loads((run / "data.json").read_text())
    assert dataset.groupby("cluster")["split"].nunique().max() == 1 and data["test_clusters_seen_in_train"] == 0
    assert data["provenance"]["parameters"]["split_identity"] == 0.3 and data["mmseqs"]
    runs = split_runs(quick_run, "quick", [None, "no-such-profile", "ident"])
    assert list(runs) == ["quick", "ident"]
    table = headline(runs)
    assert table.loc["split"].tolist() == ["random", "identity 30%"]
    assert table.loc["near-copy in train", "ident"] < table.loc["near-copy in train", "quick"]
    assert "30% sequence identity" in (run / "model" / "README.md").read_text()
    from kn_utils.report import render

    for stage in STAGES.values():
        shutil.copy(quick_run / f"{stage}.json", tmp_path)
    record = json.loads((tmp_path / "class_neurons.json").read_text())
    (tmp_path / "class_neurons.json").write_text(json.dumps(record | {"splits": table.to_dict()}))
    assert "identity 30%" in render(tmp_path).split("Every split that has been run")[1]
    (tmp_path / "ident").mkdir()  # the split's data.json, published: its test chains sharing an accession with train
    shutil.copy(run / "data.json", tmp_path / "ident")
    row = next(line for line in render(tmp_path).splitlines() if line.startswith("| test chains sharing an accession"))
    assert f"{data['test_accessions_seen_in_train']:.4f}" in row


def test_a_profile_with_model_from_scores_another_family_of_the_same_model(three_class_profile):
    """`model_from: three` (the profile beside it) shares stages 01-02, no retraining; ffn is scored on the same weights."""
    profile = three_class_profile.parent / "three-ffn.yaml"
    profile.write_text("extends: three\nmodel_from: three\ncommon:\n  family: ffn\n")
    executed = run_profile(str(profile), last="03", output_dir=profile.parent / "out-ffn")
    assert [path.name[:2] for path in executed] == ["03"]  # 01-02 shared, not run again
    run, source = run_dir("three-ffn"), run_dir("three")
    assert os.path.samefile(run / "model" / "model.safetensors", source / "model" / "model.safetensors")
    ffn, qkv = (json.loads((folder / "activations.json").read_text()) for folder in (run, source))
    assert ffn["provenance"]["inputs"]["weights_sha256"] == qkv["provenance"]["inputs"]["weights_sha256"]
    assert ffn["provenance"]["parameters"]["family"] == "ffn" and qkv["provenance"]["parameters"]["family"] == "qkv"
    with np.load(run / "activations.npz") as arrays:
        assert arrays["per_class"].shape[0] == 3  # the shared model's three classes
    assert run_profile(str(profile), last="03", output_dir=profile.parent / "out-ffn")  # again: all up to date
    assert json.loads((run / "activations.json").read_text())["provenance"] == ffn["provenance"]


def test_readme_sets_another_family_beside_the_record_only_on_the_same_weights(quick_run, tmp_path):
    from kn_utils.report import render

    results = tmp_path / "results"
    (results / "quick-ffn").mkdir(parents=True)
    for stage in STAGES.values():
        shutil.copy(quick_run / f"{stage}.json", results)
    ffn = json.loads((quick_run / "ablation.json").read_text())
    qkv = next(row["n_kept"] for row in ffn["submodels"] if row["method"] == "full")
    ffn["provenance"]["parameters"]["family"] = "ffn"
    for row in ffn["submodels"]:  # this family keeps everything the full model has under IG
        row["n_kept"] = 2 * qkv if row["method"] == "full" else row["n_kept"]
        row["accuracy"] = 0.99 if row["method"] == "ig_signed" else row["accuracy"]
    (results / "quick-ffn" / "ablation.json").write_text(json.dumps(ffn))
    section = render(results).split("### Neuron families on one model")[1].split("###")[0]
    assert f"qkv: {qkv:,} units, ffn: {2 * qkv:,} units" in section
    winners = section.split("The family that keeps more accuracy")[1]
    assert all(line.split("|")[2].strip() == "ffn" for line in winners.splitlines() if line.startswith("| 50%"))
    ffn["provenance"]["inputs"]["weights_sha256"] = "0" * 64
    (results / "quick-ffn" / "ablation.json").write_text(json.dumps(ffn))
    text = render(results)
    assert "other weights than this record's; not compared" in text and "The family that keeps more" not in text
    ffn["provenance"]["model"]["seed"] += 1  # another training seed's run: the claims tally it, the family table does not
    (results / "quick-ffn" / "ablation.json").write_text(json.dumps(ffn))
    assert "### Neuron families on one model" not in render(results)


def test_a_profile_with_data_from_trains_another_seed_on_the_same_split(three_class_profile):
    """`data_from: three` shares stage 01 only: the same dataset and split, a model of its own seed."""
    profile = three_class_profile.parent / "three-seed1.yaml"
    profile.write_text("extends: three\ndata_from: three\ncommon:\n  seed: 1\n")
    executed = run_profile(str(profile), last="02", output_dir=profile.parent / "out-seed1")
    assert [path.name[:2] for path in executed] == ["02"]
    run, source = run_dir("three-seed1"), run_dir("three")
    assert os.path.samefile(run / "dataset.parquet", source / "dataset.parquet")
    ours, theirs = (json.loads((folder / "finetune.json").read_text())["provenance"] for folder in (run, source))
    assert ours["inputs"]["dataset_sha256"] == theirs["inputs"]["dataset_sha256"]
    assert ours["inputs"]["weights_sha256"] != theirs["inputs"]["weights_sha256"] and ours["parameters"]["seed"] == 1


def test_two_ranks_under_torchrun_score_as_one_process_does(three_class_profile):
    """`torchrun --nproc-per-node 2 -m kn_utils run`: the ranks shard notebook 03's examples (gloo on CPU), rank 0 alone
    writes results and stamps, and the scores equal the single-process run's (same weights via model_from)."""
    import socket
    import subprocess
    import sys

    profile = three_class_profile.parent / "three-ranks.yaml"
    profile.write_text("extends: three\nmodel_from: three\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(port), "-m", "kn_utils", "run", "--profile", str(profile), "--to", "03"]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("03_activations.py done in") == 1  # progress from rank 0 only
    run, single = run_dir("three-ranks"), run_dir("three")
    result = json.loads((run / "activations.json").read_text())
    assert result["world_size"] == 2 and (run / "stages" / "03_activations.json").exists()
    assert result["provenance"]["inputs"]["weights_sha256"] == json.loads((single / "activations.json").read_text())[
        "provenance"]["inputs"]["weights_sha256"]
    assert sorted(path.name for path in (run / "notebooks").iterdir()) == ["03_activations.ipynb"]
    with np.load(run / "activations.npz") as ranks, np.load(single / "activations.npz") as one:
        assert set(ranks.files) == set(one.files)
        for name in one.files:
            np.testing.assert_allclose(ranks[name], one[name], rtol=1e-5, atol=1e-8)
