"""Sharded scoring and sweeps on 2 CPU processes (gloo) give the single-process results: activation scores, IG
attributions and completeness, every submodel's accuracy and Table 1."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kn_utils import distributed, ranks
from kn_utils.ablation import plan_sweep, table1
from kn_utils.model import esm2_config, random_classifier
from kn_utils.neurons import NeuronIndex
from kn_utils.scoring import score_table

FRACTIONS = [0.5, 0.1]
IG = {"steps": 4, "tolerance": 0.01, "absolute_tolerance": 1e-4, "max_depth": 4, "max_tokens": 256}


def _task(count: int = 30) -> tuple[list[str], np.ndarray]:
    """Sequences of varied lengths with a class motif each, three classes."""
    rng = np.random.default_rng(0)
    motifs = ["WWWW", "CCCC", "HHHH"]
    sequences = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVY"), size=int(rng.integers(8, 40)))) + motifs[i % 3]
                 for i in range(count)]
    return sequences, np.arange(count) % 3


def _model():
    """A tiny seeded ESM-2 classifier whose weight matrices are scaled up, so that its predictions vary with the input
    (at init it predicts one class, and every submodel would score the same)."""
    config = esm2_config(num_labels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32)
    model = random_classifier(config, 0, "eager").eval()
    with torch.no_grad():
        for name, weights in model.named_parameters():
            if weights.dim() == 2 and "embed" not in name:
                weights.mul_(8)
    return model


def _study() -> dict:
    """Activation scores, IG and the sweep that reads them, through kn_utils.distributed (sharded when a group is up)."""
    torch.manual_seed(0)
    model, (sequences, labels) = _model(), _task()
    activations = distributed.activation_scores(model, sequences, labels, 64, max_tokens=256)
    ig = distributed.integrated_gradients(model, sequences, labels, 64, **IG)
    scores = score_table(NeuronIndex.of(model), {"activation": activations["mean"], "ig_signed": ig["attributions"].mean(0),
                                                  "ig_absolute": np.abs(ig["attributions"]).mean(0)})
    sweep = distributed.sweep(model, sequences, labels, plan_sweep(FRACTIONS, 3), scores, activations["mean_signed"], 64,
                              max_tokens=256)
    return {"activations": activations, "ig": ig, "sweep": sweep}


def _rank(rank: int, size: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        assert ranks.world() == (rank, size) and ranks.is_main() == (rank == 0)
        result = _study()
        with open(f"{out}.{rank}", "wb") as handle:
            pickle.dump(result, handle)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def single_and_sharded(tmp_path_factory) -> tuple[dict, list[dict]]:
    folder = tmp_path_factory.mktemp("dist")
    torch.set_num_threads(1)
    single = _study()
    mp.spawn(_rank, args=(2, str(folder / "init"), str(folder / "result")), nprocs=2, join=True)
    ranks = []
    for rank in range(2):
        with open(folder / f"result.{rank}", "rb") as handle:
            ranks.append(pickle.load(handle))
    return single, ranks


def test_shards_split_the_examples_evenly_by_length_and_cover_each_once():
    lengths = np.array([5, 50, 7, 49, 6, 48, 8, 47])
    shards = [ranks.shard(lengths, rank, 2) for rank in range(2)]
    assert sorted(np.concatenate(shards)) == list(range(8)) and len(shards[0]) == len(shards[1])
    assert abs(lengths[shards[0]].sum() - lengths[shards[1]].sum()) <= lengths.max() - lengths.min()


def test_one_process_is_the_single_process_code():
    assert ranks.world() == (0, 1) and ranks.is_main()


def test_activation_scores_are_the_same_on_two_processes(single_and_sharded):
    single, ranks = single_and_sharded
    for sharded in ranks:  # every rank holds the whole result
        for name in ("mean", "per_class", "per_example", "mean_signed"):
            np.testing.assert_allclose(sharded["activations"][name], single["activations"][name], rtol=1e-6, atol=1e-9)


def test_integrated_gradients_and_completeness_are_the_same_on_two_processes(single_and_sharded):
    single, ranks = single_and_sharded
    assert np.abs(single["ig"]["attributions"]).sum() > 0 and single["ig"]["converged"].all()
    for sharded in ranks:
        np.testing.assert_allclose(sharded["ig"]["attributions"], single["ig"]["attributions"], rtol=1e-4, atol=1e-6)
        for name in ("p_on", "p_off", "absolute_error"):
            np.testing.assert_allclose(sharded["ig"][name], single["ig"][name], rtol=1e-5, atol=1e-6)
        assert (sharded["ig"]["converged"] == single["ig"]["converged"]).all()


def test_every_submodel_and_table_1_are_the_same_on_two_processes(single_and_sharded):
    single, ranks = single_and_sharded
    assert single["sweep"]["accuracy"].nunique() > 1  # the submodels differ: the check compares something
    for sharded in ranks:
        pd.testing.assert_frame_equal(sharded["sweep"], single["sweep"])
        pd.testing.assert_frame_equal(table1(sharded["sweep"], FRACTIONS), table1(single["sweep"], FRACTIONS))


def _fine_tune(folder: str) -> dict:
    """A few optimiser steps of notebook 02's loop (kn_utils.training.train) on the toy task; weights and losses."""
    from kn_utils.training import TrainConfig, train

    torch.manual_seed(0)
    model, (sequences, labels) = _model(), _task(40)
    config = TrainConfig(epochs=2, max_tokens=160, max_residues=64, warmup_steps=2, start_shift=0.0, seed=3,
                         fused_kernels=False)
    outcome = train(model, sequences, labels, sequences[:6], labels[:6], config, folder)
    return {"weights": {name: value.detach().clone() for name, value in model.state_dict().items()},
            "losses": [epoch["train_loss"] for epoch in outcome["history"]], "steps": outcome["step"],
            "tokens": outcome["train_tokens"]}


def _training_rank(rank: int, size: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        result = _fine_tune(f"{out}.checkpoints")  # one folder: rank 0 writes the checkpoints
        with open(f"{out}.{rank}", "wb") as handle:
            pickle.dump(result, handle)
    finally:
        dist.destroy_process_group()


def test_fine_tuning_on_two_processes_gives_the_single_process_weights(tmp_path):
    from kn_utils.ranks import rank_share

    batch = np.array([4, 9, 1])
    shares = [rank_share(batch, rank, 2) for rank in range(2)]
    assert [list(rows) for rows, _ in shares] == [[4, 1], [9]]
    assert all(np.isclose(factor / (len(rows) * 2), 1 / 3) for rows, factor in shares)  # every example weighs 1 / 3
    assert rank_share(np.array([7]), 1, 2) == (np.array([7]), 0.0)  # no row of its own: joins at factor 0
    torch.set_num_threads(1)
    single = _fine_tune(str(tmp_path / "single"))
    mp.spawn(_training_rank, args=(2, str(tmp_path / "init"), str(tmp_path / "result")), nprocs=2, join=True)
    start = _model().state_dict()
    assert any(not torch.equal(single["weights"][name], start[name]) for name in start)  # it trained
    for rank in range(2):
        with open(tmp_path / f"result.{rank}", "rb") as handle:
            sharded = pickle.load(handle)
        assert sharded["steps"] == single["steps"] and sharded["tokens"] == single["tokens"]
        np.testing.assert_allclose(sharded["losses"], single["losses"], rtol=1e-5)
        for name, value in single["weights"].items():
            torch.testing.assert_close(sharded["weights"][name], value, rtol=1e-4, atol=1e-5)


def _warm_up(folder: str) -> dict:
    """A few steps of the masked-language warm start (kn_utils.pretraining.pretrain_mlm) on the toy chains."""
    from kn_utils.pretraining import MLMConfig, masked_lm, pretrain_mlm

    torch.manual_seed(0)
    config = esm2_config(num_labels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32)
    model, (sequences, _) = masked_lm(config, 0), _task(40)
    outcome = pretrain_mlm(model, sequences, MLMConfig(steps=6, max_tokens=160, max_residues=64, warmup_steps=2, log_every=2,
                                                     fused_kernels=False), folder)
    return {"weights": {name: value.detach().clone() for name, value in model.state_dict().items()},
            "losses": [point["loss"] for point in outcome["history"]], "tokens": outcome["train_tokens"]}


def _mlm_rank(rank: int, size: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        result = _warm_up(f"{out}.checkpoints")
        with open(f"{out}.{rank}", "wb") as handle:
            pickle.dump(result, handle)
    finally:
        dist.destroy_process_group()


def test_the_mlm_warm_start_on_two_processes_gives_the_single_process_weights(tmp_path):
    torch.set_num_threads(1)
    single = _warm_up(str(tmp_path / "single"))
    mp.spawn(_mlm_rank, args=(2, str(tmp_path / "init"), str(tmp_path / "result")), nprocs=2, join=True)
    for rank in range(2):
        with open(tmp_path / f"result.{rank}", "rb") as handle:
            sharded = pickle.load(handle)
        assert sharded["tokens"] == single["tokens"]  # each rank ran its share only: the sum is the batches' tokens
        np.testing.assert_allclose(sharded["losses"], single["losses"], rtol=1e-5)
        for name, value in single["weights"].items():
            torch.testing.assert_close(sharded["weights"][name], value, rtol=1e-4, atol=1e-5)
