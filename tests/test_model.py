"""Loading the classifier: seeded random init, pretrained from a local folder, save/load, broken checkpoints."""
import json

import pytest
import torch

from kn_utils.alphabet import encode, pad_batch
from kn_utils.model import CheckpointError, ModelInfo, random_classifier, load_classifier, load_finetuned, save_classifier, select_device, weights_banner


def _logits(model, sequences=("MKTAYIAKQR", "MNIF")):
    input_ids, mask = pad_batch([encode(s) for s in sequences])
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).logits


def test_random_init_is_seeded(tiny_config):
    first, second, other = (random_classifier(tiny_config, s, "eager").eval() for s in (1, 1, 2))
    assert torch.equal(_logits(first), _logits(second))
    assert not torch.equal(_logits(first), _logits(other))


def test_full_size_config_has_the_papers_5760_qkv_units():
    model, info = load_classifier("random", seed=0)
    attention = [layer.attention.self for layer in model.esm.encoder.layer]
    assert len(attention) == 6 and all(a.query.out_features == 320 for a in attention)
    assert 6 * 3 * 320 == 5760 and info.init == "random" and "random-init" in info.source


def test_pretrained_loads_from_a_local_folder_in_hub_layout(tmp_path, tiny_config, tiny_model):
    tiny_model.esm.save_pretrained(tmp_path / "esm")  # the backbone only, as the hub ships it
    model, info = load_classifier("pretrained", tmp_path / "esm", seed=0)
    assert info.init == "pretrained" and info.source == str(tmp_path / "esm")
    backbone = model.esm.encoder.layer[0].attention.self.query.weight
    assert torch.equal(backbone, tiny_model.esm.encoder.layer[0].attention.self.query.weight)
    assert "pretrained ESM-2" in weights_banner(info)


def test_auto_falls_back_to_random_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="RANDOM INIT"):
        _, info = load_classifier("auto", tmp_path / "no-such-model", seed=0)
    assert info.init == "random"
    assert "RANDOM INIT" in weights_banner(info)
    with pytest.raises(RuntimeError, match="could not load pretrained weights"):
        load_classifier("pretrained", tmp_path / "no-such-model")


def test_save_and_load_round_trip(tmp_path, tiny_model):
    folder = save_classifier(tiny_model, tmp_path / "model", ModelInfo("random", "test", 0), {"max_residues": 64})
    loaded, info = load_finetuned(folder, attn_implementation="eager")
    assert torch.equal(_logits(loaded), _logits(tiny_model))
    assert info.init == "random" and info.fine_tuned and info.training["max_residues"] == 64


def test_checkpoint_missing_weights(tmp_path, tiny_model):
    folder = save_classifier(tiny_model, tmp_path / "model", ModelInfo("random", "test", 0))
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model: config.json present but no weights"):
        load_finetuned(folder)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_finetuned(tmp_path / "empty")


def test_checkpoint_with_corrupt_weights(tmp_path, tiny_model):
    folder = save_classifier(tiny_model, tmp_path / "model", ModelInfo("random", "test", 0))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="weights could not be read"):
        load_finetuned(folder)


def test_device_selection_falls_back_to_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            select_device("cuda")


@pytest.mark.parametrize("pooling, other", [("mean", "cls")])
def test_pooled_heads_read_their_reduction_of_the_non_padding_states(tiny_config, pooling, other):
    model = random_classifier(tiny_config, 0, "eager", pooling=pooling).eval()
    reduce = {"mean": lambda states: states.mean(1, keepdim=True)}[pooling]
    input_ids, mask = pad_batch([encode("MKTAYIAKQR"), encode("MNIF")])
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        states = model.esm(input_ids, attention_mask=mask).last_hidden_state
        by_hand = torch.stack([model.classifier(reduce(states[i : i + 1, : int(mask[i].sum())]))[0] for i in range(2)])
        alone = model(input_ids=input_ids[1:, :6], attention_mask=mask[1:, :6]).logits  # "MNIF" without padding
    torch.testing.assert_close(logits, by_hand)
    torch.testing.assert_close(logits[1:], alone)  # padding does not move the mean
    same_weights = random_classifier(tiny_config, 0, "eager", pooling=other).eval()  # another head input
    assert not torch.allclose(logits, _logits(same_weights))
    assert f"(<code>pooling={pooling}</code>)" in weights_banner(ModelInfo("random", "test", 0, pooling=pooling))


def test_pooling_survives_save_and_load_and_old_folders_read_cls(tmp_path, tiny_config):
    model = random_classifier(tiny_config, 0, "eager", pooling="mean").eval()
    folder = save_classifier(model, tmp_path / "model", ModelInfo("random", "test", 0, pooling="mean"))
    loaded, info = load_finetuned(folder, attn_implementation="eager")
    assert info.pooling == "mean" and torch.equal(_logits(loaded), _logits(model))
    config = json.loads((folder / "config.json").read_text())
    del config["classifier_pooling"]  # a folder saved before pooling was a setting
    (folder / "config.json").write_text(json.dumps(config))
    assert load_finetuned(folder)[1].pooling == "cls"


def test_pooling_auto_follows_the_weights(tmp_path, tiny_model):
    tiny_model.esm.save_pretrained(tmp_path / "esm")
    assert load_classifier("pretrained", tmp_path / "esm", pooling="auto")[1].pooling == "cls"
    random_model, info = load_classifier("random", pooling="auto")
    assert info.pooling == "mean" == random_model.config.classifier_pooling
    assert "pooling=mean" in weights_banner(info)
    with pytest.raises(ValueError, match="pooling must be"):
        load_classifier("random", pooling="attention")


@pytest.mark.parametrize("shape", ["facebook/esm2_t12_35M_UR50D", "facebook/esm2_t30_150M_UR50D"])
def test_random_init_takes_the_shape_of_the_source_it_names(shape):
    from kn_utils.model import ESM2_SHAPES, esm2_config

    config = esm2_config(shape=shape)
    layers, hidden, heads, ffn = ESM2_SHAPES[shape]
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == \
        (layers, hidden, heads, ffn)
    with pytest.raises(ValueError, match="unknown ESM-2 shape 'esm2_t99'"):
        esm2_config(shape="esm2_t99")


def test_classes_and_architecture_reach_the_model_and_survive_saving(tmp_path):
    from kn_utils.model import class_names_of
    from kn_utils.neurons import NeuronIndex

    sizes = {"num_hidden_layers": 3, "hidden_size": 24, "num_attention_heads": 4, "intermediate_size": 48}
    model, info = load_classifier("random", seed=0, classes=["cytoplasm", "membrane"], architecture=sizes)
    assert model.config.num_labels == 2 and class_names_of(model) == ["cytoplasm", "membrane"]
    assert NeuronIndex.of(model).size == 3 * 3 * 24 and "num_hidden_layers=3" in info.source
    loaded, _ = load_finetuned(save_classifier(model, tmp_path / "m", info), attn_implementation="eager")
    assert class_names_of(loaded) == ["cytoplasm", "membrane"]
    with pytest.raises(ValueError, match="unknown key"):
        load_classifier("random", architecture={"layers": 2})
    with pytest.raises(ValueError, match="init='random'"):
        load_classifier("auto", architecture=sizes)
    with pytest.raises(ValueError, match="not a multiple"):
        load_classifier("random", architecture={"hidden_size": 30, "num_attention_heads": 4})


def test_a_six_class_model_saved_without_names_reads_as_the_ec_classes(tiny_model):
    from kn_utils.model import class_names_of

    assert class_names_of(tiny_model) == ["1", "2", "3", "4", "5", "6"]


def _card_sections(text: str) -> list[str]:
    return [line[3:] for line in text.splitlines() if line.startswith("## ")]


def test_model_card_states_random_init_first_with_metrics_and_data(tmp_path, tiny_model):
    import yaml

    from kn_utils.model_card import CARD_FILE
    from kn_utils.training import weights_fingerprint

    data = {"source": "PDB", "split": "identity", "split_identity": 0.3, "seed": 1, "n_train": 80, "n_test": 20,
            "dataset_sha256": "abc123"}
    metrics = {"accuracy": 0.61234, "balanced_accuracy": 0.5, "macro_f1": 0.45, "majority_baseline": 0.357,
               "chance_balanced": 1 / 6}
    folder = save_classifier(tiny_model, tmp_path / "model", ModelInfo("random", "random-init:x", 3, warm_start="mlm(1)"),
                             {"max_residues": 64}, card={"data": data, "metrics": metrics})
    text = (folder / CARD_FILE).read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["library_name"] == "transformers" and "base_model" not in header  # random init names no base model
    assert header["labels"] == [str(c) for c in range(1, 7)]
    assert _card_sections(text)[0] == "Base weights"
    weights = text.split("## Base weights")[1].split("##")[0]
    assert "RANDOM INITIALISATION" in weights and "seed 3" in weights and "mlm(1)" in weights
    assert "| accuracy | 0.6123 |" in text and "| majority-class baseline (accuracy) | 0.3570 |" in text
    assert "first **64 residues**" in text and "30% sequence identity" in text and "`abc123`" in text
    assert weights_fingerprint(tiny_model) in text
    assert {"Intended use", "Limitations", "Window", "Metrics"} <= set(_card_sections(text))


def test_model_card_of_pretrained_weights_names_the_base_model(tmp_path, tiny_model):
    import yaml

    from kn_utils.model_card import CARD_FILE

    folder = save_classifier(tiny_model, tmp_path / "model", ModelInfo("pretrained", "facebook/esm2_t6_8M_UR50D"))
    text = (folder / CARD_FILE).read_text()
    assert yaml.safe_load(text.split("---")[1])["base_model"] == "facebook/esm2_t6_8M_UR50D"
    assert "pretrained ESM-2" in text.split("## Base weights")[1].split("##")[0] and "RANDOM" not in text
    assert "Not recorded when this folder was saved" in text  # no metrics given: said, not invented
