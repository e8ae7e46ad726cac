# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Submodels: how much of the model do the selected neurons keep?
#
# **Question.** If we keep only 50, 25, 10 or 1 % of the 5,760 query/key/value neurons (zeroing the rest),
# does choosing them by activation or by integrated gradients keep more test accuracy than choosing them
# at random? The paper (Table 1, Figure 2) says yes, from one random draw. We use several random seeds, both
# directions of the IG ranking (the paper's text keeps high scores, a summary of it keeps low ones), signed
# and absolute IG, and report accuracy (the paper's metric) with balanced accuracy and macro-F1.
#
# Submodels are gates on the projections' outputs (`kn_utils.ablation.submodel`): no weight is written,
# no model is copied, and leaving the block restores the model exactly (tested bit for bit).

# %% tags=["parameters"]
profile = "quick"
family = "qkv"          # units scored and ablated: qkv (the paper's) | ffn | heads, or a combination like qkv+ffn
device = "auto"
keep_fractions = [0.5, 0.25, 0.1, 0.01]
random_seeds = 2
curve_fractions = [0.05]   # extra sizes for the accuracy-versus-size curve
precision = "fp32"      # bf16 | fp32 autocast; auto: bf16 where the device computes it natively (CUDA, AMX/AVX512-BF16 CPU), else fp32; the full model's accuracy is compared below
max_tokens = 2048       # tokens per inference batch (2048 was fastest on 2 CPU cores)
speed_examples = 256    # test sequences timed for the evaluation-speed check

# %%
from IPython.display import display
from kn_utils import ablation, distributed, metrics, plots
from kn_utils.stage import open_stage

stage = open_stage("05_ablation", globals())
display(stage.banner())
levels = {"majority class": metrics.majority_baseline(stage.train_set["label"].to_numpy(), stage.labels),
          "chance": 1 / stage.model.config.num_labels}

# %% [markdown]
# ## Evaluation speed
# A submodel runs the same batches as the plain model plus one multiply per projection; the ratio of their speeds
# (median of 3 passes over the first `speed_examples` test sequences) says what the hooks cost.

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timings)
speed = ablation.inference_speed(stage.model, stage.sequences[:speed_examples], stage.max_residues,
                                 ablation.select_random(stage.index.size, 0.5, 0), precision=stage.precision, max_tokens=max_tokens)
print(f"plain {speed['plain_sequences_per_s']:.0f} seq/s, submodel {speed['submodel_sequences_per_s']:.0f} seq/s, ratio {speed['ratio']:.2f}")

# %% [markdown]
# ## The sweep

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing)
plan = ablation.plan_sweep(keep_fractions, random_seeds, curve_fractions, mean_ablation="head" not in stage.index.kinds)
results = distributed.sweep(stage.model, stage.sequences, stage.labels, plan, stage.scores(),
                            stage.arrays("activations")["mean_signed"], stage.max_residues, precision=stage.precision,
                            max_tokens=max_tokens)
print(f"{len(results)} submodels")

# %% [markdown]
# The sweep evaluates in `precision`; the full model's accuracy there against the fp32 figure of notebook 02 says what that costs:

# %%
finetune_accuracy = stage.result("finetune")["accuracy"]
print(f"full model: accuracy {ablation.full_accuracy(results):.4f} in {stage.precision}, {finetune_accuracy:.4f} in fp32 (notebook 02)")

# %% [markdown]
# ## Table 1
# Ours (test accuracy; random: mean ± sd over seeds) and the paper's.

# %%
ablation.table1(results, keep_fractions)

# %%
ablation.paper_table1()

# %%
ablation.table1(results, keep_fractions, "balanced_accuracy")

# %% [markdown]
# ## Figure 2

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.accuracy_bars(results, keep_fractions, levels), "05_figure2_accuracy");

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.accuracy_bars(results, keep_fractions, {f"chance 1/{len(stage.classes)}": levels["chance"]}, "balanced_accuracy"),
                  "05_figure2_balanced_accuracy");

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.accuracy_curve(results, levels, stage.index.size), "05_accuracy_curve");

# %% [markdown]
# ## High or low IG scores?
# The paper's text keeps the neurons with high IG; a summary of it keeps the low ones. Which keeps more accuracy:

# %%
directions = ablation.direction_table(results)
directions.round(4)

# %%
print("IG signed, high minus low accuracy at", ablation.high_minus_low(directions, keep_fractions))

# %% [markdown]
# ## Control: sizes matched per projection type
# A method could win by keeping, say, mostly value units. Here each method keeps the same number of query, key and value units, ranked within each type.

# %%
ablation.matched_table(results).round(4)

# %% [markdown]
# ## Control: mean-ablation
# Zeroing a query or key unit flattens attention, zeroing a value unit removes content; replacing an ablated unit by its mean output over residues removes its information without that side effect.

# %%
ablation.mean_ablation_table(results).round(4)

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timings)
stage.save_result("ablation", {"n_submodels": len(results), "evaluation_speed": speed, "majority_baseline": levels["majority class"],
                               "chance": levels["chance"], "full_accuracy": ablation.full_accuracy(results),
                               "full_accuracy_fp32": finetune_accuracy, "submodels": ablation.sweep_records(results)})
print(f"ablation stage: {len(results)} submodels")
