# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Where do the kept neurons sit?
#
# **Question.** The paper's Figures 3–5 draw which neurons each method keeps at 50, 90 and 99 % sparsity and
# claim that (a) value neurons are the least important and (b) at high sparsity the kept neurons sit mostly
# in key projections. Do our selections show this, beyond what a random selection of the same size would?
#
# Rows are layer x {query, key, value}; each cell is the fraction kept among a group of `bin_width` adjacent
# units (16 = one attention head of ESM-2 8M; the paper's "groups of 200" does not divide a 320-unit
# projection). Claims are tested with permutation tests against random kept sets of the same size,
# Holm-corrected over all tests of this notebook.

# %% tags=["parameters"]
profile = "quick"
family = "qkv"          # units scored and ablated: qkv (the paper's) | ffn | heads, or a combination like qkv+ffn
sparsities = [0.5, 0.9, 0.99]
bin_width = 16
permutations = 2000
seed = 0

# %%
from IPython.display import display
from kn_utils import heatmaps, plots
from kn_utils.stage import open_stage

stage = open_stage("06_heatmaps", globals())
display(stage.banner())
index = stage.index
selections = heatmaps.selections(stage.scores(), index.size, sparsities, seed)

# %% [markdown]
# ## Figures 3–5

# %% tags=["nbval-ignore-output"]
grids = {key: heatmaps.kept_grid(kept, index, bin_width) for key, kept in selections.items()}
stage.save_figure(plots.kept_heatmaps(grids, index.n_layers, bin_width, index.kinds), "06_kept_heatmaps");

# %% [markdown]
# ## Kept fraction per projection type

# %% tags=["nbval-ignore-output"]
by_projection = heatmaps.projection_table(selections, index)
stage.save_figure(plots.kept_by_projection_bars(by_projection), "06_kept_by_projection")
by_projection.pivot_table(index=["sparsity", "method"], columns="projection", values="fraction_kept")[list(index.kinds)].round(3)

# %% [markdown]
# ## The paper's claims, tested
# (a) *value least important*: statistic min(query, key) − value kept fraction; (b) *key densest at high sparsity*: key − max(query, value). One-sided, against random kept sets of the same size.

# %%
tests = heatmaps.claim_tests(selections, index, permutations, seed)
tests.round(4)

# %% [markdown]
# ## Overlap between methods
# Jaccard index of the kept sets; two random sets of the same size overlap by about the last column.

# %%
overlaps = heatmaps.overlap_table(selections, index.size)
overlaps.pivot_table(index="pair", columns="sparsity", values="jaccard").round(3)

# %%
fractions = {f"{name}@{sparsity}": heatmaps.kept_by_layer_projection(kept, index) for (name, sparsity), kept in selections.items()}
stage.save_result("heatmaps", {"bin_width": bin_width, "sparsities": sparsities, "kept_fractions": fractions,
                               "kept_by_projection": by_projection.to_dict("records"), "tests": tests.to_dict("records"),
                               "multiple_testing": "Holm over all claim tests", "jaccard": overlaps.to_dict("records")})
print(f"{(tests['p_holm'] < 0.05).sum()} of {len(tests)} claim tests significant after Holm correction")
