"""Precision follows the hardware: bf16 autocast only where the device computes bf16 natively.

On a CPU without AMX/AVX512-BF16 (e.g. an AVX2-only AMD EPYC) a bf16 matmul is emulated, about 100x slower than
fp32, so `auto` must pick fp32 there; an explicit `bf16` still runs but warns.
"""
import warnings

import pytest
import torch

from kn_utils import model as esm, provenance
from kn_utils.metrics import classification_metrics
from kn_utils.model import random_classifier, resolve_precision
from kn_utils.attention import UNSCALED_EAGER, attention_kernel
from kn_utils.training import TrainConfig, train


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU reports the given capability flags (torch.cpu.get_capabilities)."""
    def pretend(**flags):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "Test CPU", **flags})
    return pretend


@pytest.mark.parametrize("flags, expected", [({}, "fp32"), ({"avx2": True}, "fp32"), ({"avx512_f": True}, "fp32"),
                                             ({"avx512_bf16": True}, "bf16"), ({"amx_bf16": True}, "bf16"),
                                             ({"bf16": True}, "bf16")])
def test_auto_takes_bf16_only_on_a_cpu_with_native_bf16(cpu_flags, flags, expected):
    cpu_flags(**flags)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32"


def test_explicit_bf16_without_native_support_warns_and_is_kept(cpu_flags):
    cpu_flags(avx2=True)
    with pytest.warns(RuntimeWarning, match="Test CPU.*no native bf16"):
        assert resolve_precision("bf16", "cpu") == "bf16"
    cpu_flags(amx_bf16=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu") == "bf16"


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half")


def test_auto_training_is_the_run_of_the_precision_it_resolves_to(cpu_flags, tiny_config, toy_task, tmp_path):
    """`auto` trains exactly as the explicit precision the hardware calls for (fp32 here, bf16 with native bf16)."""
    sequences, labels = toy_task
    tiny_config.num_labels = 3
    settings = dict(epochs=2, learning_rate=1e-2, warmup_steps=2, max_tokens=256, max_residues=40, checkpoint_every=1000)

    def losses(precision: str, folder: str) -> list[float]:
        model = random_classifier(tiny_config, 0, "eager")
        outcome = train(model, sequences, labels, sequences, labels, TrainConfig(precision=precision, **settings),
                        tmp_path / folder, classification_metrics)
        return [epoch["train_loss"] for epoch in outcome["history"]]

    cpu_flags(avx2=True)
    fp32 = losses("fp32", "fp32")
    assert losses("auto", "auto-avx2") == fp32
    cpu_flags(amx_bf16=True)
    bf16 = losses("bf16", "bf16")
    assert losses("auto", "auto-amx") == bf16
    assert bf16 != fp32  # the two precisions are told apart by this task


def test_result_files_name_the_device_and_its_bf16_support(cpu_flags):
    cpu_flags(avx2=True)
    record = provenance.provenance({"precision": "fp32"}, device="cpu")
    assert record["device_name"].startswith("Test CPU (") and record["native_bf16"] is False
    assert esm.native_bf16("cpu") is False and "BF16" not in record["device_name"]
    cpu_flags(avx512_bf16=True, amx_bf16=True)
    assert esm.device_name("cpu").endswith(", AMX-BF16)") and esm.native_bf16("cpu") is True


@pytest.mark.parametrize("precision, kernel", [("fp32", "sdpa"), ("bf16", UNSCALED_EAGER)])
def test_training_uses_the_attention_kernel_of_its_precision(tiny_config, toy_task, tmp_path, precision, kernel):
    """SDPA in fp32, the stock eager kernel's exact trim under bf16 (the faster on CPU); the caller's comes back."""
    sequences, labels = toy_task
    tiny_config.num_labels = 3
    model = random_classifier(tiny_config, 0, "kn_eager")
    seen = []

    def evaluate(logits, labels):  # called inside the training loop, between epochs
        seen.append(model.config._attn_implementation)
        return classification_metrics(logits, labels)

    config = TrainConfig(epochs=1, max_tokens=256, max_residues=40, precision=precision, checkpoint_every=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 on a CPU without it
        train(model, sequences, labels, sequences, labels, config, tmp_path, evaluate)
    assert seen == [kernel] and model.config._attn_implementation == "kn_eager"


def test_gpus_keep_sdpa_in_both_precisions():
    """On CUDA the fused SDPA kernels serve bf16 too; eager attention under bf16 is a CPU choice."""
    assert attention_kernel("bf16", "cuda") == attention_kernel("fp32", torch.device("cuda:0")) == "sdpa"
    assert attention_kernel("bf16", "cpu") == UNSCALED_EAGER and attention_kernel("fp32", "cpu") == "sdpa"
