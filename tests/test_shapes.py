"""Every stage keys on the model's config, never on the 8M shape: the pipeline's steps on tiny ESM-2 configs of other
depths, widths, head counts and class counts."""
import numpy as np
import pytest

from kn_utils import ablation, heatmaps, scoring
from kn_utils.attribution import completeness_summary, integrated_gradients
from kn_utils.model import esm2_config, random_classifier
from kn_utils.neurons import NeuronIndex

SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MNIFEMLRIDEGLRLKIYKDTEGY", "GSHMSLFDKLKGLVGKEKPLTG", "MADQLTEEQIAEFKEAFSLF"]


@pytest.mark.parametrize("layers, width, heads, ffn, classes", [(1, 8, 2, 16, 2), (3, 24, 4, 40, 4), (4, 12, 3, 20, 3)])
def test_scores_attributions_submodels_and_heatmaps_follow_the_config(layers, width, heads, ffn, classes):
    config = esm2_config(num_labels=classes, num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads,
                         intermediate_size=ffn)
    model = random_classifier(config, 0, "eager", pooling="mean").eval()
    labels = np.arange(len(SEQUENCES)) % classes
    index = NeuronIndex.of(model)
    assert (index.n_layers, index.units, index.size) == (layers, width, layers * 3 * width)
    activations = scoring.activation_scores(model, SEQUENCES, labels, 64, max_tokens=256)
    assert activations["mean"].shape == (index.size,) and activations["per_class"].shape == (classes, index.size)
    ig = integrated_gradients(model, SEQUENCES, labels, 64, steps=8, tolerance=0.01, panels=2, max_depth=4)
    assert ig["attributions"].shape == (len(SEQUENCES), index.size) and completeness_summary(ig)["within_bound"]
    table = scoring.score_table(index, {"activation": activations["mean"], "ig_signed": ig["attributions"].mean(0),
                                        "ig_absolute": np.abs(ig["attributions"]).mean(0)})
    results = ablation.run_sweep(model, SEQUENCES, labels, ablation.plan_sweep([0.5], 2), table, activations["mean_signed"],
                                 64)
    assert (results.loc[results["method"] != "full", "n_kept"] == index.size // 2).all()
    kept = ablation.select(table["ig_signed"].to_numpy(), 0.5)
    assert heatmaps.kept_grid(kept, index, width // 4).shape == (layers * 3, 4)
    assert sum(heatmaps.kept_by_layer_projection(kept, index).values()) == pytest.approx(layers * 3 * 0.5, abs=1)
