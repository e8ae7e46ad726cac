# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Integrated-gradients scores of the 5,760 neurons
#
# **Question.** How much does each query/key/value neuron contribute to the probability of the true EC class?
#
# Every neuron gets a gate multiplying its output; gate 1 is the model, gate 0 the neuron switched off
# (weight row and bias zeroed), the paper's baseline. **Path: all 5,760 gates scaled together**, from all
# off to all on. Why this path: it costs one path per example for every neuron at once (per-neuron paths
# would cost 5,760 paths per example), it attributes to every neuron in the context of the others (the
# per-projection or per-layer paths keep the rest of the network fixed at "on", which measures a
# different, single-block effect), and its completeness is checkable per example: the attributions must
# sum to P(all on) - P(all off). The integral is a Gauss-Legendre quadrature (`steps`, `rule` are
# parameters); our batched implementation is tested against Captum's `IntegratedGradients` to 1e-5.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
steps = 4               # quadrature nodes per path
rule = "gausslegendre"  # gausslegendre | riemann_trapezoid | riemann_middle | riemann_left | riemann_right
precision = "fp32"      # bf16 | fp32 autocast; auto: bf16 where the device computes it natively (CUDA, AMX/AVX512-BF16 CPU), else fp32
max_tokens = 4096       # tokens per forward/backward pass (examples x steps x length)
stability_examples = 8  # examples on which the step count is checked
stability_steps = 8

# %%
import time

import numpy as np
from IPython.display import display
from kn_utils import plots, scoring
from kn_utils.stage import open_stage

stage = open_stage("04_integrated_gradients", globals())
display(stage.banner())
index = stage.index

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing)
started = time.perf_counter()
ig = scoring.integrated_gradients(stage.model, stage.sequences, stage.labels, stage.max_residues, steps=steps, rule=rule,
                                  max_tokens=max_tokens, precision=stage.precision)
ig_seconds = time.perf_counter() - started
print(f"IG over {len(stage.sequences)} examples x {index.size:,} neurons in {ig_seconds:.0f} s ({len(stage.sequences) / ig_seconds:.2f} examples/s)")

# %% [markdown]
# ## Completeness
# Per example, |sum of attributions - (P(all on) - P(all off))| / |P(all on) - P(all off)|.

# %% tags=["nbval-ignore-output"]
completeness = scoring.completeness_summary(ig)
print(f"completeness error: median {completeness['completeness_error_median']:.4f}, 90th percentile "
      f"{completeness['completeness_error_p90']:.4f}, max {completeness['completeness_error_max']:.4f}")
print(f"P(true class): all on {completeness['p_on_mean']:.3f}, all off {completeness['p_off_mean']:.3f} (mean over examples)")
figure = plots.histogram(ig["completeness_error"], "relative completeness error",
                         {"median": completeness["completeness_error_median"]}, log=True)
stage.save_figure(figure, "04_completeness");

# %% [markdown]
# ## Scores
# Signed IG (mean over test examples) and absolute IG (mean of |IG| per example).

# %%
activation = stage.arrays("activations")
table = scoring.score_table(index, {"activation": activation["mean"], "ig_signed": ig["attributions"].mean(0),
                                    "ig_absolute": np.abs(ig["attributions"]).mean(0)})
table.sort_values("ig_signed", ascending=False).head(10).round(5)

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.scores_by_projection(table, "ig_signed", "IG (signed, mean over test)"), "04_ig_by_projection");

# %%
shares = scoring.signed_share_by_projection(table)
shares.round(4)

# %% [markdown]
# ## Ranking stability
# Between two random disjoint halves of the test set, and between step counts on a subset. The signed score
# (mean of signed attributions) and the absolute score (mean of per-example |attribution|) are separate
# rankings: a neuron whose sign flips between classes has a signed mean near zero, which halves of the
# test set estimate noisily, while its absolute importance is stable.

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing of the extra IG runs)
stability = scoring.ranking_stability(stage.model, stage.sequences, stage.labels, ig, stage.max_residues, stability_examples,
                                      stability_steps, rule, max_tokens, stage.precision)
versus_activation = scoring.spearman(table["ig_signed"], table["activation"])

# %%
print(f"IG (signed) vs activation, Spearman over neurons: {versus_activation:.3f}")
scoring.stability_table(stability, steps, stability_steps).round(3)

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.scatter_ranks(table["activation"], table["ig_signed"], "activation", "IG (signed)"), "04_ig_vs_activation");

# %% [markdown]
# IG and activation rank neurons differently: a neuron can be very active and still matter little to the class decision, which is why the paper's two methods keep different sets.

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing and memory)
per_class = scoring.class_means(ig["attributions"], stage.labels, stage.model.config.num_labels)
stage.save_table(table, "neuron_scores")
stage.save_table(scoring.per_class_table(index, {"activation": activation["per_class"], "ig_signed": per_class}),
                 "neuron_scores_per_class")
stage.save_arrays("integrated_gradients", attributions=ig["attributions"], p_on=ig["p_on"], p_off=ig["p_off"], labels=stage.labels)
stage.save_result("integrated_gradients", {
    "n_neurons": index.size, "n_examples": len(stage.sequences), "path": "all gates scaled together (0 = off, 1 = on)",
    "steps": steps, "rule": rule, "precision": stage.precision, **completeness, **stability,
    "spearman_vs_activation": versus_activation, "ig_seconds": ig_seconds, "examples_per_s": len(stage.sequences) / ig_seconds,
    "signed_share_by_projection": shares["share_of_signed_total"].to_dict()})
