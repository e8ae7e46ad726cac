# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · The positive control: do the methods find the knowledge we planted?
#
# **Question.** On a task whose answer we know, do the study's methods recover it? Notebook 01 (with `synthetic`)
# built five classes each defined by one planted motif and a sixth defined by composition alone; notebooks 02–07 ran
# unchanged on it. This notebook sets their outputs against the planted truth, each against a null:
# 1. do IG-kept submodels keep more accuracy than random ones (beyond 2 sd of the random seeds) and than
#    activation-kept ones;
# 2. are a class's top IG neurons the neurons that fire on its planted motif (precision at k against the
#    motif-responsive neurons, beside the same under shuffled labels);
# 3. does notebook 07's motif test find each class's motif among that class's neurons (power), and how often does it
#    "find" one where there is none: for the composition class, and for classes made of shuffled labels;
# 4. does suppressing a class's neurons hurt that class most.
#
# It runs only for profiles that name it (`profiles/control.yaml`): other runs have no planted truth.

# %% tags=["parameters"]
profile = "control"
family = "qkv"             # the units notebooks 03-07 scored (a common setting)
seed = 0
keep_fractions = [0.5, 0.25, 0.1, 0.01]   # the sizes of notebook 05's Table 1
top_k = 10                 # a class's top neurons by mean signed IG (precision at k)
responsive_share = 0.1     # the share of neurons taken as motif-responsive for a class (the top by motif response)
permutations = 1000        # shuffled-label draws
windows_per_neuron = 50    # as notebook 07's motif test
half_width = 4
motif_permutations = 2000

# %%
import numpy as np
import pandas as pd
from IPython.display import display
from kn_utils import class_neurons, control, motifs, synthetic
from kn_utils.stage import open_stage

stage = open_stage("08_planted_truth", globals())
truth, index, classes = stage.planted_truth(), stage.index, stage.class_names
planted = stage.result("data")["planted_motifs"]
display(stage.banner())
print(f"{len(stage.sequences)} test sequences, {index.size} neurons; test accuracy {stage.result('finetune')['accuracy']:.4f}")

# %% [markdown]
# ## 1 · Submodels: IG against random and activation
# Notebook 05's plain zero-ablation sweep: IG signed (high), activation and the random sets (mean and sd over seeds).

# %%
verdicts = control.sweep_verdicts(pd.DataFrame(stage.result("ablation")["submodels"]), keep_fractions)
verdicts.round(4)

# %% [markdown]
# A selection keeps planted knowledge where it stands more than 2 random sd above the random sets; at the smallest kept
# shares every selection falls toward chance, where methods cannot be told apart.

# %% [markdown]
# ## 2 · Are the top IG neurons of a class the ones that fire on its motif?
# A neuron's motif response: over the test sequences of a motif class, its mean |activation| on the planted motif's
# residues minus that on the sequence's other residues. A class's motif-responsive neurons are the top
# `responsive_share` by that response; precision at k is the share of the class's top-k IG neurons among them.
# Null: the same with the test labels shuffled (class means of IG over random groups of examples).

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing)
spans = control.motif_spans(truth, stage.test_set["id"].tolist(), stage.max_residues)
motif_labels = {classes.index(name): name for name in planted}
responses = {label: control.motif_response(stage.model, stage.sequences, [s if y == label else None for s, y in
                                           zip(spans, stage.labels)], stage.max_residues) for label in motif_labels}
attributions = stage.arrays("integrated_gradients")["attributions"]
precision_k = control.precision_table(attributions, stage.labels, responses, classes, top_k,
                                    round(responsive_share * index.size), permutations, seed,
                                    {"activation": stage.arrays("activations")["per_class"]})

# %%
precision_k.round(4)

# %% [markdown]
# Activation's ranking (mean |activation| over a class's examples) is set beside IG's: a neuron can fire on a motif
# and still not be what the class's prediction rests on, and the reverse.

# %% [markdown]
# ## 3 · Does the motif test find the planted motifs, and only them?
# Notebook 07 probed each class's `respond_top` top IG neurons with the planted motifs (Benjamini-Hochberg over all
# neuron × motif tests). **Power**: a motif class's own motif found at q < 0.05 among its neurons. **False positives**:
# the same neurons tested with the planted patterns read backwards, which were never planted; and the probe repeated
# with each class's neurons chosen from class means over shuffled labels, where finding "the class's" motif is chance.
# The composition class has no motif: a call for one of its neurons names another class's motif (which may be true of
# that neuron: telling composition from motifs needs neurons that see motifs).

# %%
found = stage.result("class_neurons")
probed = pd.DataFrame(found["probed_neurons"])
class_motifs = {name: name if name in planted else None for name in classes}
power = control.motif_power(pd.DataFrame(found["motif_tests"]), probed, class_motifs)
power

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timing)
ids = np.unique(probed["neuron"])
peaks = motifs.activation_peaks(stage.model, stage.sequences, ids, stage.max_residues)
never_planted, _ = motifs.probe_neurons(stage.sequences, ids, *peaks, stage.max_residues, windows_per_neuron, half_width,
                                        motif_permutations, seed, synthetic.motif_regexes(control.reversed_patterns(planted)))
shuffled_probe = control.shuffled_probe(attributions, stage.labels, classes, len(probed) // len(classes), seed)
ids = np.unique(shuffled_probe["neuron"])
peaks = motifs.activation_peaks(stage.model, stage.sequences, ids, stage.max_residues)
shuffled_tests, _ = motifs.probe_neurons(stage.sequences, ids, *peaks, stage.max_residues, windows_per_neuron, half_width,
                                         motif_permutations, seed, synthetic.motif_regexes(planted))
shuffled_power = control.motif_power(shuffled_tests, shuffled_probe, class_motifs)

# %%
print(f"never-planted patterns: {(never_planted['q_value'] < 0.05).sum()} of {len(never_planted)} tests at q < 0.05")
shuffled_power

# %% [markdown]
# Read the two power tables together: a class's own motif found about as often among neurons picked with shuffled
# labels as among its own says the test sees motifs but not which class they serve; calls of never-planted patterns
# are the test's false positives.

# %% [markdown]
# ## 4 · Does suppressing a class's neurons hurt that class?
# Notebook 07's suppression (×0) of each class's top IG neurons, against random sets of the same make-up.

# %%
specificity = pd.DataFrame(found["specificity"]).query("factor == 'x0'").set_index("neurons of class")
suppression = specificity[["own_class", "other_classes", "random_own_mean", "random_own_sd", "z_vs_random", "own_rank"]]
suppression.assign(supported=class_neurons.supported_rows(specificity)).round(4)

# %% [markdown]
# A class is `supported` when suppressing its neurons hurts its own examples more than the others' on average and
# more than 2 random-control sd below the matched random sets.

# %% [markdown]
# ## What the control licenses
# One row per question: the answer on this planted task.

# %%
summary = control.summary(verdicts, precision_k, power, shuffled_power, never_planted, specificity)
summary

# %% [markdown]
# One seed's answers: docs/experiments.md ("Positive control") sets them beside a second training seed, and README
# ("What the positive control licenses") says which held on both.

# %% tags=["nbval-ignore-output"]
# NBVAL_IGNORE_OUTPUT  (timings)
stage.save_result("planted_truth", {
    "accuracy": stage.result("finetune")["accuracy"], "sweep": verdicts.reset_index().to_dict("records"),
    "precision_at_k": precision_k.reset_index().to_dict("records"), "top_k": top_k,
    "responsive_count": round(responsive_share * index.size), "motif_power": power.reset_index().to_dict("records"),
    "shuffled_label_motif_power": shuffled_power.reset_index().to_dict("records"),
    "never_planted_calls": int((never_planted["q_value"] < 0.05).sum()), "never_planted_tests": len(never_planted),
    "suppression": suppression.reset_index().to_dict("records"), "summary": summary.reset_index().to_dict("records")})
