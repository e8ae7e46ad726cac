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
# sum to P(all on) - P(all off).
#
# **The quadrature is refined until that check passes** (`kn_utils.attribution`). Along the all-gates path the
# integrand is not smooth enough for a fixed 8-node rule: on the record's model such a rule misses completeness by tens
# of percent: F rises sharply over a short stretch of the path, at a place that differs between examples. So the path
# is cut into panels, placed where F changes (from F at `probes` points, forward passes only), each integrated with
# `steps` Gauss-Legendre nodes. A panel passes when
# its attributions sum to its own change in probability, within its share of the tolerance, and when a null rule on
# the same nodes (an error estimate per neuron, at no extra cost) says its terms are right too: a sum can come right
# by chance while single neurons are off. A failing panel is halved and integrated again, so nodes go where the
# integrand varies, and only on the examples that need them. A table below compares this with fixed rules against a
# fine reference. Our batched implementation is tested against Captum's `IntegratedGradients` to 1e-5.

# %% tags=["parameters"]
profile = "quick"
family = "qkv"          # units scored and ablated: qkv (the paper's) | ffn | heads, or a combination like qkv+ffn
device = "auto"
steps = 4                    # Gauss-Legendre nodes per panel
rule = "gausslegendre"       # gausslegendre | riemann_trapezoid | riemann_middle | riemann_left | riemann_right
panels = 2                   # panels per path to start with ...
probes = 8                   # ... placed where F changes, from F at this many points (forward passes only; 0: equal panels)
tolerance = 0.1              # completeness: each panel within its share of tolerance x |P(on) - P(off)| ...
absolute_tolerance = 0.001   # ... or of this probability, whichever is looser
neuron_tolerance = 0.5       # null-rule estimate of the neurons' L1 error within its share of this x their L1 norm
max_depth = 2                # halvings of a panel at most
precision = "fp32"           # bf16 | fp32 autocast; auto: bf16 where native. fp32: bf16 leaves a ~2 % completeness floor
max_tokens = 4096            # tokens per forward/backward pass (examples x nodes x length)
convergence_examples = 4     # examples on which fixed rules and this setting are compared with a fine reference
reference_steps = 32         # Gauss-Legendre nodes of the reference (fp32)

# %%
import time

import numpy as np
from IPython.display import display
from kn_utils import attribution, distributed, plots, scoring
from kn_utils.stage import open_stage

stage = open_stage("04_integrated_gradients", globals())
display(stage.banner())
index = stage.index

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing)
started = time.perf_counter()
adaptive = {"steps": steps, "rule": rule, "panels": panels, "probes": probes, "tolerance": tolerance, "max_depth": max_depth,
            "absolute_tolerance": absolute_tolerance, "neuron_tolerance": neuron_tolerance, "precision": stage.precision}
ig = distributed.integrated_gradients(stage.model, stage.sequences, stage.labels, stage.max_residues, max_tokens=max_tokens, **adaptive)
ig_seconds = time.perf_counter() - started
print(f"IG over {len(stage.sequences)} examples x {index.size:,} neurons in {ig_seconds:.0f} s ({len(stage.sequences) / ig_seconds:.2f} examples/s)")

# %% [markdown]
# ## Completeness
# Per example, the error |sum of attributions - (P(all on) - P(all off))|, relative to |P(all on) - P(all off)| and in
# probability (where the change is small the relative error is ill-conditioned), and the nodes the example took.

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (the quick model's probabilities barely move, so the relative errors' digits vary between CPUs)
completeness = attribution.completeness_summary(ig)
print(f"within the tolerance: {completeness['converged_share']:.1%} of examples; nodes per example: mean "
      f"{completeness['nodes_mean']:.1f}, max {completeness['nodes_max']}")
print(f"relative error: median {completeness['completeness_error_median']:.4f}, 90th percentile "
      f"{completeness['completeness_error_p90']:.4f}; absolute: median {completeness['absolute_error_median']:.5f}, "
      f"max {completeness['absolute_error_max']:.5f}")
print(f"P(true class): all on {completeness['p_on_mean']:.3f}, all off {completeness['p_off_mean']:.3f} (mean over examples)")

# %% tags=["nbval-ignore-output"]
figure = plots.histogram(ig["completeness_error"], "relative completeness error",
                         {"median": completeness["completeness_error_median"], "tolerance": tolerance}, log=True)
stage.save_figure(figure, "04_completeness");

# %% [markdown]
# ## Convergence
# The same first examples under fixed rules and under this run's setting, against a fine fixed rule
# (`reference_steps` nodes, fp32): nodes per example, completeness, agreement of the neuron rankings with the
# reference's, and speed.

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing of the extra IG runs)
settings = attribution.convergence_settings(adaptive, stage.device)
convergence = attribution.convergence_table(stage.model, stage.sequences[:convergence_examples], stage.labels[:convergence_examples],
                                            stage.max_residues, settings, {"steps": reference_steps}, max_tokens)
convergence.round(4)

# %% [markdown]
# A setting is faithful when its completeness error is small *and* its neuron error against the reference is: the
# first is what every example checks, the second what the selections of notebooks 05-07 rest on.

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
# Between two random disjoint halves of the test set. The signed score (mean of signed attributions) and the absolute
# score (mean of per-example |attribution|) are separate rankings: a neuron whose sign flips between classes has a
# signed mean near zero, which halves of the test set estimate noisily, while its absolute importance is stable.

# %%
stability = attribution.split_half_stability(ig["attributions"])
versus_activation = scoring.spearman(table["ig_signed"], table["activation"])
print(f"IG (signed) vs activation, Spearman over neurons: {versus_activation:.3f}")
print(f"halves of the test set, Spearman: signed {stability['split_half_spearman']:.3f}, "
      f"absolute {stability['split_half_spearman_absolute']:.3f}")

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.scatter_ranks(table["activation"], table["ig_signed"], "activation", "IG (signed)"), "04_ig_vs_activation");

# %% [markdown]
# IG and activation rank neurons differently: a neuron can be very active and still matter little to the class decision, which is why the paper's two methods keep different sets.

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing and memory)
per_class = scoring.class_means(ig["attributions"], stage.labels, stage.model.config.num_labels)
stage.save_table(table, "neuron_scores")
stage.save_table(scoring.per_class_table(index, {"activation": activation["per_class"], "ig_signed": per_class}, stage.class_names),
                 "neuron_scores_per_class")
stage.save_arrays("integrated_gradients", attributions=ig["attributions"], p_on=ig["p_on"], p_off=ig["p_off"], labels=stage.labels,
                  nodes=ig["nodes"], absolute_error=ig["absolute_error"])
stage.save_result("integrated_gradients", {
    "n_neurons": index.size, "n_examples": len(stage.sequences), "path": "all gates scaled together (0 = off, 1 = on)",
    "quadrature": f"adaptive: {panels} panels placed where F changes, {steps}-node {rule} each, halved until completeness holds",
    **completeness, **stability, "convergence": convergence.reset_index().to_dict("records"),
    "spearman_vs_activation": versus_activation, "ig_seconds": ig_seconds, "examples_per_s": len(stage.sequences) / ig_seconds,
    "signed_share_by_projection": shares["share_of_signed_total"].to_dict()})
