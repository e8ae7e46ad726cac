# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Activation scores of the 5,760 query/key/value neurons
#
# **Question.** Which neurons of the attention projections are most active on the test set? The paper's
# activation method keeps the neurons with the largest mean activation magnitude.
#
# A neuron is one output unit of a query, key or value projection (6 layers x 3 x 320 = 5,760 for ESM-2 8M;
# the index is read off the loaded model, so 35M/150M work unchanged). Its score is the mean |output| over
# the **residue positions** of a sequence (`<cls>`, `<eos>` and padding excluded: they are not protein),
# averaged over test sequences, each sequence counting once; accumulated in float64 in one pass under
# `inference_mode`. We also keep the mean per true class (6 x 5,760 on the EC task).

# %% tags=["parameters"]
profile = "quick"
family = "qkv"          # units scored and ablated: qkv (the paper's) | ffn | heads, or a combination like qkv+ffn
device = "auto"
max_tokens = 16384      # tokens per forward pass

# %%
from IPython.display import display
from kn_utils import distributed, plots, scoring
from kn_utils.stage import open_stage

stage = open_stage("03_activations", globals())
display(stage.banner())
index = stage.index
print(f"{index.n_layers} layers x {index.layer_size:,} {index.family} units ({', '.join(index.kinds)}) = {index.size:,} "
      f"neurons; {len(stage.test_set)} test sequences")

# %%
activations = distributed.activation_scores(stage.model, stage.sequences, stage.labels, stage.max_residues, max_tokens=max_tokens)
table = scoring.score_table(index, {"activation": activations["mean"]})
table.sort_values("activation", ascending=False).head(10).round(4)

# %% [markdown]
# ## Where the large activations are

# %% tags=["nbval-ignore-output"]
stage.save_figure(plots.scores_by_projection(table, "activation", "mean |activation|"), "03_activation_by_projection");

# %%
scoring.mean_by_block(table, "activation").round(4)

# %% [markdown]
# Activation magnitude is a property of the projection's weight scale as much as of knowledge: a method that keeps the largest activations will favour whole projections whose outputs are large. Notebook 05's controls match selection sizes per projection type for this reason.

# %% [markdown]
# ## Stability and class dependence

# %%
halves = scoring.split_half_spearman(activations["per_example"], seed=0)
class_cv = scoring.median_class_variation(activations["per_class"], activations["mean"])
print(f"Spearman of activation scores between two random halves of the test set: {halves:.4f}")
print(f"median coefficient of variation across classes: {class_cv:.4f}")

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing)
stage.save_arrays("activations", mean=activations["mean"], per_class=activations["per_class"],
                  mean_signed=activations["mean_signed"])
stage.save_result("activations", {"n_neurons": index.size, "n_examples": len(stage.test_set), "split_half_spearman": halves,
                                  "median_class_cv": class_cv, "mean_by_projection": scoring.mean_by_projection(table, "activation"),
                                  "top10": scoring.top_rows(table, "activation", 10),
                                  "positions": "residues only (<cls>, <eos>, padding excluded)"})
