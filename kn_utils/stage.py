"""One notebook stage of a run, opened in one line: its parameters, inputs, model and result files.

A notebook's first code cell is `stage = open_stage("03_activations", globals())`; from then on it asks the stage
for what it needs (`stage.test_set`, `stage.model`, `stage.index`, `stage.max_residues`, ...) and ends with
`stage.save_result(...)`, which records every parameter the notebook declares, with the provenance of the result.
Everything is loaded on first use, so a stage pays only for what it reads.
"""
from __future__ import annotations

import resource
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import provenance
from .runs import declared_parameters, run_dir, source_of


class Stage:
    """A stage (notebook `name`) of the run of `parameters["profile"]`, with the parameters its notebook declares."""

    def __init__(self, name: str, parameters: dict) -> None:
        """Open the run folder; nothing else is read until asked for."""
        from .ranks import init_from_env

        self.name, self.parameters = name, parameters
        self.run = run_dir(parameters["profile"])
        self.started = time.perf_counter()
        self.world_size = init_from_env()[1]  # 1 unless torchrun started several ranks

    # --- inputs written by earlier stages -------------------------------------------------------------------------
    def result(self, stage: str) -> dict:
        """An earlier stage's result file (`data`, `finetune`, ...), naming the stage to run when it is missing; refused
        when it was written from other weights or another dataset than the run's (check_inputs)."""
        result = provenance.read_json(self.run / f"{stage}.json")
        self.check_inputs(stage, result)
        return result

    @cached_property
    def weights_sha256(self) -> str | None:
        """Fingerprint of the run's fine-tuned weights (training.weights_fingerprint), as notebook 02 recorded it in
        finetune.json; None before notebook 02 has run."""
        path = self.run / "finetune.json"
        if not path.exists():
            return None
        return provenance.read_json(path)["provenance"].get("inputs", {}).get("weights_sha256")

    def required_weights(self) -> str:
        """`weights_sha256`, refused when finetune.json does not record one (written before fingerprints were)."""
        if self.weights_sha256 is None:
            raise RuntimeError(f"{self.run / 'finetune.json'} records no weights fingerprint (written before they were "
                               "recorded): run again from stage 02")
        return self.weights_sha256

    def check_inputs(self, stage: str, result: dict) -> None:
        """Refuse an earlier stage's output (its result file `result`) written from other weights than the run's
        model, or from another dataset than the run's dataset.parquet: a stage never mixes two models."""
        recorded = result.get("provenance", {}).get("inputs", {})
        path = self.run / f"{stage}.json"
        if stage not in ("data", "finetune") and recorded.get("weights_sha256") != self.required_weights():
            found = (recorded.get("weights_sha256") or "none recorded")[:12]
            raise RuntimeError(f"{path}: written from weights {found}, but this run's model is "
                               f"{self.weights_sha256[:12]} (finetune.json): run again from the stage that writes it")
        if (self.run / "dataset.parquet").exists() and recorded.get("dataset_sha256") not in (None, self.dataset_sha256):
            raise RuntimeError(f"{path}: written from dataset {recorded['dataset_sha256'][:12]}, but {self.run}/dataset.parquet "
                               f"holds {self.dataset_sha256[:12]}: run again from the stage that writes it")

    @cached_property
    def dataset(self) -> pd.DataFrame:
        """The run's dataset table (notebook 01's dataset.parquet)."""
        from .data import load_dataset

        return load_dataset(self.run / "dataset.parquet")

    @cached_property
    def train_set(self) -> pd.DataFrame:
        """The training split."""
        return self.dataset[self.dataset["split"] == "train"]

    @cached_property
    def test_set(self) -> pd.DataFrame:
        """The test split, in the dataset's order (every per-example array of the run follows it)."""
        return self.dataset[self.dataset["split"] == "test"]

    @cached_property
    def sequences(self) -> list[str]:
        """The test sequences."""
        return self.test_set["sequence"].tolist()

    @cached_property
    def labels(self) -> np.ndarray:
        """The test labels (class indices)."""
        return self.test_set["label"].to_numpy()

    @cached_property
    def classes(self) -> list[str]:
        """The task's class names in label order (data.class_names): EC classes 1-6 for the study's data."""
        from .data import class_names

        return class_names(self.dataset)

    @cached_property
    def class_names(self) -> list[str]:
        """The classes as tables and figures show them (data.short_names: `EC 1` ... for the EC task)."""
        from .data import short_names

        return short_names(self.classes)

    @cached_property
    def dataset_sha256(self) -> str:
        """Checksum of the dataset's sequences, labels and split (data.sequence_checksum)."""
        from .data import sequence_checksum

        return sequence_checksum(self.dataset)

    @cached_property
    def split(self) -> str:
        """How notebook 01 split the data: random, accession or identity."""
        return self.result("data")["provenance"]["parameters"]["split"]

    @cached_property
    def max_residues(self) -> int:
        """Residues of each sequence the model sees: this notebook's parameter, else what notebook 02 trained with."""
        if "max_residues" in self.parameters:
            return self.parameters["max_residues"]
        return self.result("finetune")["provenance"]["parameters"]["max_residues"]

    def data_facts(self) -> dict:
        """What a model card says of the run's data (model_card.data_section): source, split, seed, sizes, checksum."""
        data = self.result("data")
        recorded = data["provenance"]["parameters"]
        if recorded.get("fasta"):
            source = f"`{recorded['fasta']}` labelled by `{recorded['labels']}`"
        elif "planted_motifs" in data:
            source = "the positive control's synthetic task with planted motifs (kn_utils.synthetic)"
        else:
            source = ("PDB SEQRES protein chains (pdb_seqres.txt.gz) labelled with their top-level EC class by SIFTS "
                      "(pdb_chain_enzyme.tsv.gz)")
        return {"source": source, "split": recorded["split"], "split_identity": recorded.get("split_identity"),
                "seed": recorded["seed"], "n_train": data["n_train"], "n_test": data["n_test"],
                "dataset_sha256": self.dataset_sha256}

    def planted_truth(self) -> pd.DataFrame:
        """The positive control's planted truth (notebook 01 with `synthetic`): motif, decoy and label-noise rows."""
        path = self.run / "planted.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found; this run has no planted truth (run notebook 01 with "
                                    "synthetic=True, as profiles/control.yaml does)")
        if "planted_motifs" not in self.result("data"):  # data.json of a later run without synthetic: a stale file
            raise FileNotFoundError(f"{path}: left by an earlier run; this run's notebook 01 planted nothing "
                                    "(synthetic=False)")
        return pd.read_parquet(path)

    def scores(self) -> pd.DataFrame:
        """Notebook 04's neuron score table (activation, ig_signed, ig_absolute per neuron), refused when it scored
        another neuron family than this stage's."""
        self.check_family("integrated_gradients", self.result("integrated_gradients"))  # and its weights and dataset
        return pd.read_parquet(self.run / "neuron_scores.parquet")

    def check_family(self, stage: str, result: dict) -> None:
        """Refuse an earlier stage's per-neuron output written for another neuron family than this stage's."""
        written = result.get("provenance", {}).get("parameters", {}).get("family", "qkv")
        if written != self.index.family:
            raise RuntimeError(f"{self.run / (stage + '.json')}: written for neuron family {written!r}, but this stage "
                               f"addresses {self.index.family!r}: give every stage the same `family` (a common setting)")

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of an earlier stage's `name`.npz (activations, integrated_gradients), checked against the
        weights and dataset its result file `name`.json records."""
        path = self.run / f"{name}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found; run the stage that writes it first")
        self.check_family(name, self.result(name))
        with np.load(path) as arrays:
            return dict(arrays)

    # --- the model --------------------------------------------------------------------------------------------------
    @cached_property
    def device(self):
        """The device the `device` parameter names (auto: CUDA when present, else CPU)."""
        from .ranks import local_device

        return local_device(self.parameters.get("device", "auto"))

    @cached_property
    def precision(self) -> str:
        """The `precision` parameter resolved for the device (auto: bf16 where it is native); fp32 when undeclared."""
        from .model import resolve_precision

        return resolve_precision(self.parameters.get("precision", "fp32"), self.device)

    @cached_property
    def _loaded(self):
        """The fine-tuned classifier of notebook 02 on `device`, with its ModelInfo, its units those of the `family`
        parameter (neurons.use_family; qkv when undeclared); refused when its weights are not the ones finetune.json
        records."""
        from .model import load_finetuned
        from .neurons import use_family
        from .training import weights_fingerprint

        model, info = load_finetuned(self.run / "model", self.device)
        use_family(model, self.parameters.get("family", "qkv"))
        self.result("finetune")  # exists, and was written from the run's dataset
        if weights_fingerprint(model) != self.required_weights():
            raise RuntimeError(f"{self.run / 'model'}: holds other weights than notebook 02 recorded in finetune.json "
                               f"({self.weights_sha256[:12]}): run again from stage 02")
        return model, info

    @property
    def model(self):
        """The fine-tuned classifier (eval mode)."""
        return self._loaded[0]

    @property
    def info(self):
        """Where the model's weights came from (model.ModelInfo)."""
        return self._loaded[1]

    @cached_property
    def index(self):
        """The model's neuron index (neurons.NeuronIndex): layers x projections x units."""
        from .neurons import NeuronIndex

        return NeuronIndex.of(self.model)

    def banner(self, info=None):
        """The weights banner of the model (or of `info`), as notebook Markdown."""
        from IPython.display import Markdown

        from .model import weights_banner

        return Markdown(weights_banner(info or self.info))

    # --- outputs ----------------------------------------------------------------------------------------------------
    def save_figure(self, figure, name: str) -> Path:
        """Save a matplotlib figure as runs/<profile>/figures/<name>.png (atomically) and close it."""
        from .plots import save_figure

        return save_figure(figure, self.run / "figures", name)

    def save_table(self, frame: pd.DataFrame, name: str) -> Path:
        """Write a table as runs/<profile>/<name>.parquet (atomically)."""
        return provenance.save_table(frame, self.run / f"{name}.parquet")

    def save_arrays(self, name: str, **arrays: np.ndarray) -> Path:
        """Write arrays as runs/<profile>/<name>.npz (atomically)."""
        path = self.run / f"{name}.npz"
        with provenance.atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, **arrays)
        return path

    def save_result(self, name: str, figures: dict, *, parameters: dict | None = None, info=None, model=None,
                    inputs: dict | None = None) -> Path:
        """Write runs/<profile>/<name>.json: `figures`, wall time and peak memory, and the provenance block.

        The provenance records every parameter the notebook declares (with `parameters` added, e.g. a training
        config), the resolved residue window and precision, the model's origin (`info`, else the loaded model's) and
        the device it ran on (none for a stage without a model), the fingerprint of the weights (of `model`, notebook
        02's freshly trained classifier, else the run's), the dataset checksum (with `inputs` added), versions and
        commit.
        """
        from .training import weights_fingerprint

        info = info if info is not None else (self.info if "_loaded" in self.__dict__ else None)
        has_dataset = (self.run / "dataset.parquet").exists()
        recorded = {**self.parameters, **(parameters or {})}
        if "precision" in self.parameters:
            recorded["precision"] = self.precision
        if has_dataset or "max_residues" in self.parameters:
            recorded.setdefault("max_residues", self.max_residues)
        figures = {**figures, "wall_s": time.perf_counter() - self.started,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if info is not None:
            figures.update(init=info.init, model_source=info.source)
        checksum = {"dataset_sha256": self.dataset_sha256} if has_dataset else {}
        weights = weights_fingerprint(model) if model is not None else None if name == "data" else self.weights_sha256
        if weights is not None:  # notebook 01's dataset precedes any model
            checksum["weights_sha256"] = weights
        device = None if info is None else str(self.device)
        if self.world_size > 1:
            figures["world_size"] = self.world_size
        path = provenance.write_result(self.run, name, figures, recorded, device=device,
                                       model=None if info is None else info.as_dict(), inputs={**checksum, **(inputs or {})})
        from .ranks import barrier

        barrier()  # the next stage's ranks read what rank 0 wrote
        return path


def open_stage(name: str, namespace: dict) -> Stage:
    """The stage of notebook `name` (e.g. "03_activations"), with the values in `namespace` (the notebook's globals())
    of every parameter its parameters cell declares."""
    declared = declared_parameters(source_of(name))
    missing = [parameter for parameter in declared if parameter not in namespace]
    if missing:
        raise NameError(f"{name}: parameter(s) {', '.join(missing)} not defined; run the parameters cell first")
    return Stage(name, {parameter: namespace[parameter] for parameter in declared})
