"""One source of defaults: the notebooks' parameters cells are the quick profile (on a CI-size model), and kn_utils'
configs agree with them."""
import ast
import dataclasses

import pytest

from kn_utils.pretraining import MLMConfig
from kn_utils.runs import declared_parameters, load_profile, source_of
from kn_utils.runner import stage_notebooks
from kn_utils.training import TrainConfig


def _defaults(stage: str) -> dict:
    return {name: ast.literal_eval(spec["default"]) for name, spec in declared_parameters(source_of(stage)).items()}


def test_the_quick_profile_is_the_notebooks_own_defaults_on_a_ci_size_model():
    profile = load_profile("quick")
    assert profile == {"02_finetune": {"architecture": profile["02_finetune"]["architecture"]}}, (
        "quick.yaml sets the model's size only: change the notebook's parameters cell instead")


@pytest.mark.parametrize("config, prefix", [(TrainConfig, ""), (MLMConfig, "mlm_")])
def test_training_configs_default_to_notebook_02s_parameters(config, prefix):
    notebook = _defaults("02")
    fields = {field.name: field.default for field in dataclasses.fields(config)}
    resolved = {"pooling"}  # the config holds the head the model has, the notebook may say `auto`
    shared = {name: notebook[prefix + name] for name in fields if prefix + name in notebook and name not in resolved}
    if prefix == "mlm_":
        shared.update(steps=notebook["mlm_steps"], precision=notebook["precision"], max_residues=notebook["max_residues"])
    assert len(shared) >= 5
    assert {name: fields[name] for name in shared} == shared


def test_every_notebook_shares_the_common_defaults():
    common = {"seed": 0, "precision": "fp32", "device": "auto", "max_residues": 128}
    for notebook in stage_notebooks():
        defaults = _defaults(notebook.name[:2])
        assert {name: value for name, value in defaults.items() if name in common} == {
            name: value for name, value in common.items() if name in defaults}, notebook.name


def test_profiles_carry_one_short_comment_per_setting_and_no_probe_results():
    """Probe results live in docs/experiments.md; a profile says what a setting is, not what it scored."""
    import re

    from kn_utils.runs import PROFILES_DIR

    for path in PROFILES_DIR.glob("*.yaml"):
        for line in path.read_text().splitlines():
            if "#" in line and not line.lstrip().startswith("#"):
                comment = line.split("#", 1)[1]
                assert len(comment) <= 100 and not re.search(r"\b0\.\d{3}\b", comment), f"{path.name}: {line}"


def test_the_paper_profile_asks_for_pretrained_weights_the_cls_head_and_the_full_window():
    from kn_utils.runner import stage_parameters

    plan = {notebook.name[:2]: parameters for notebook, parameters in stage_parameters("paper")}
    assert plan["01"]["split"] == "random" and plan["01"]["test_fraction"] == 0.2
    assert plan["02"]["init"] == "pretrained" and plan["02"]["pooling"] == "cls"
    assert {parameters.get("max_residues", 1022) for parameters in plan.values()} == {1022}
    assert stage_parameters("paper", overrides={"init": "random"})[1][1]["init"] == "random"  # labelled random init
