# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Few labels: naive Bayes against the linear probe, k-means against nearest centroid
#
# Self-supervised features are judged by how well a simple classifier does on top of them. With all labels the
# usual choice is a **linear probe** (logistic regression). With a handful of labels per class two papers say
# other choices do better:
#
# * **Generative beats discriminative with few samples.** Ng & Jordan (NIPS 2001), revisited on pre-trained
#   features by Zheng et al. (ICLR 2023, *Revisiting Discriminative vs. Generative Classifiers*): naive Bayes
#   (here Gaussian, one diagonal covariance shared by the classes) reaches its asymptotic error with
#   $O(\log d)$ samples, logistic regression needs $O(d)$. So naive Bayes is ahead with few labels and the linear
#   probe overtakes it as labels grow.
# * **Transductive few-shot.** Lichtenstein et al. (2020) / *Clustering is All You Need?*: in a few-shot episode
#   (5 classes, 1 or 5 labelled *support* images each, 15 unlabelled *queries* each), running k-means over support
#   and queries together, started at the support means with their labels clamped, beats assigning each query
#   to its nearest support mean.
#
# **The findings, in one sentence each:** *naive Bayes is ahead of the linear probe at 1 label per class and
# behind it with all labels; transductive k-means beats nearest centroid in 1-shot episodes.*
#
# This notebook trains SimCLR on `digits` (live), runs `workbench.evaluate` on it (the probes of `workbench eval`)
# and the same probes on raw pixels, then compares the two few-shot classifiers on the same episodes. About 2
# minutes in full mode on 2 CPU cores; `WORKBENCH_SMOKE=1` runs it in seconds.

# %%
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: idle threads sleep, not spin

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from IPython.display import display
import torch

import workbench
from workbench.data import load_dataset
from workbench.engine.evaluate import evaluate_features, load_representation
from workbench.engine.features import extract_features
from workbench.runs import RunReader
from workbench.ui import charts, probe_charts
from workbench.ui.notebook import draw_curves, smoke_mode, step_status, tutorial_runs_dir, watch
from workbench.ui.tutorial_charts import check_finding, fewshot_methods

SMOKE = smoke_mode()
EPOCHS = 1 if SMOKE else 30
SIZE = dict(subset=300, probe_size=200, batch_size=128) if SMOKE else {}
DRAWS, EPISODES = (2, 50) if SMOKE else (10, 600)  # seeded label draws per budget; few-shot episodes
RUNS_DIR = tutorial_runs_dir("fewlabels", SMOKE)  # smoke: a temporary folder; else runs/, where `workbench app` looks
print(f"workbench {workbench.__version__}; smoke={SMOKE}; {EPOCHS} epochs; {DRAWS} draws; {EPISODES} episodes")

# %% [markdown]
# ## 1. Features to probe: SimCLR on `digits`, watched live
#
# `workbench.ui.notebook.watch` shows a figure and a status line and keeps both up to date while the run trains;
# `refresh(figure, reader)` draws from the run store with the dashboard's chart functions.

# %%
handle = workbench.start_training(method="simclr", dataset="digits", epochs=EPOCHS, tau=0.2, runs_dir=RUNS_DIR,
                                  progress=False, **SIZE)
live = make_subplots(rows=1, cols=2, subplot_titles=("NT-Xent loss", "kNN accuracy (held out)"))
live.add_scatter(x=[], y=[], mode="lines", name="loss", row=1, col=1)
live.add_scatter(x=[], y=[], mode="lines+markers", name="kNN", row=1, col=2)
live.update_layout(height=300, margin=dict(l=40, r=10, t=40, b=30), showlegend=False)


def refresh(fig, reader):
    with fig.batch_update():
        draw_curves(fig, reader.scalars(["loss", "knn_acc"]), {0: "loss", 1: "knn_acc"})
    return step_status(reader)


result = watch(handle, live, refresh)
print(f"{result.status}: kNN accuracy {result.metrics['knn_acc']:.3f}")
with RunReader(handle.run_dir) as reader:  # the final state as a plain figure: it stays drawn where widgets are not
    refresh(live, reader)
live.show()

# %% [markdown]
# ## 2. Accuracy against labels per class
#
# `workbench.evaluate` (the Python side of `workbench eval`) freezes the backbone, extracts the features of the
# training split (the labelled pool) and the held-out split, and fits every probe on 1, 2, 5, 10, 20, 50 labels per
# class (the mean and standard deviation over seeded class-balanced draws) and on all labels. The same probes on
# **raw pixels** (`evaluate_features`, no network at all) are the control: there the classical result should
# show plainly, with 64 dimensions and a weak signal in each.

# %%
t0 = time.time()
learned = workbench.evaluate(handle.run_dir, probes="linear,nb,budgets", draws=DRAWS, progress=False)
bundle = load_dataset("digits")
flat = lambda split: split.images.flatten(1).float().numpy() / 255
pixels = evaluate_features(flat(bundle.train), bundle.train.labels.numpy(), flat(bundle.test),
                           bundle.test.labels.numpy(), probes="linear,nb,budgets", draws=DRAWS, progress=False)
print(f"probes fitted in {time.time() - t0:.0f} s")
tables = {"SimCLR features": learned.table.to_dict("records"), "raw pixels": pixels.table.to_dict("records")}
probe_charts.label_budget_curves(tables).show()


def budget_table(table):
    t = table[table.probe.isin(["linear", "nb"]) & table.block.isna()].copy()
    t["labels"] = t.labels_per_class.map(lambda n: "all" if pd.isna(n) else int(n))
    return t.pivot(index="labels", columns="probe", values="accuracy").reindex([1, 2, 5, 10, 20, 50, "all"]).dropna()


budgets = pd.concat({"SimCLR features": budget_table(learned.table), "raw pixels": budget_table(pixels.table)}, axis=1)
display(budgets.round(3))

# %% [markdown]
# **What to look for.** On raw pixels the two curves cross: naive Bayes is ahead with 1 label per class and falls
# behind as labels grow (its shared-diagonal Gaussian is a wrong model of pixels, which costs it at the end;
# its few parameters are what make it good at the start). On the SimCLR features of this small run the picture is
# weaker: at 1 label per class the two probes are level within the spread of the draws (in the full run that
# measured this notebook, naive Bayes 0.656 against linear 0.648, while draws differ by a few hundredths;
# an earlier 40-epoch run had the linear probe ahead, 0.70 against 0.68) and the linear probe leads from 2 labels
# on. The paper's advantage of naive Bayes on learned features comes from large pre-trained networks; with this
# small convnet on `digits` it is not clearly seen, so the check below tests the classical setting (pixels) and
# prints the SimCLR-feature numbers beside it instead of claiming them.
#
# ## 3. Few-shot episodes: nearest centroid against transductive k-means
#
# The same 5-way episodes (classes, support and queries drawn with one seed), classified twice. Features are
# centred on the training mean and L2-normalised first (the paper's step 0).

# %%
cfg, method, data, _ = load_representation(handle.run_dir)
with torch.no_grad():
    test_feat = extract_features(method, data.test.images, torch.device("cpu")).numpy()
    base_mean = extract_features(method, data.memory.images, torch.device("cpu")).numpy().mean(0)
fewshot = fewshot_methods(test_feat, data.test.labels.numpy(), base_mean, episodes=EPISODES)
display(fewshot.round(3))
fig = go.Figure()
for i, (name, rows) in enumerate(fewshot.groupby("method", sort=False)):
    fig.add_bar(x=[f"5-way {s}-shot" for s in rows.shots], y=rows.accuracy, name=name,
                marker_color=charts.PALETTE[i], error_y=dict(type="data", array=rows.ci95),
                text=[f"{a:.3f}" for a in rows.accuracy], textposition="inside")
fig.update_layout(barmode="group", title=f"few-shot accuracy on the held-out digits ({EPISODES} episodes, 95% "
                  "intervals)", height=340, yaxis_range=[0, 1], margin=dict(l=40, r=10, t=40, b=30))
fig.show()

# %% [markdown]
# Transductive k-means uses the 75 unlabelled queries too: they move each centroid from a single (1-shot) support
# image towards the middle of its class. With 5 labelled images the support mean is already a good centroid and
# the gain shrinks.
#
# **Questions to try.**
# 1. Evaluate a run at random initialisation (`epochs=1`): which probe wins with few labels now?
# 2. Use `dataset="fashion-mnist", subset=5000` (784 raw dimensions): is naive Bayes further ahead on pixels?
# 3. In `fewshot_methods`, draw 10-way episodes (`n_way=10`): does the transductive gain grow?
#
# ## 4. The check
#
# Naive Bayes is ahead at 1 label per class and behind with all labels (raw pixels, the classical setting), and
# transductive k-means beats nearest centroid in 1-shot episodes by more than the 95% interval. The SimCLR-feature
# numbers are printed beside them.

# %%
px_, sf = budgets["raw pixels"], budgets["SimCLR features"]
nc = fewshot.set_index(["shots", "method"])
gain = nc.loc[(1, "transductive k-means"), "accuracy"] - nc.loc[(1, "nearest centroid"), "accuracy"]
numbers = {"pixels: nb@1": px_.loc[1, "nb"], "pixels: linear@1": px_.loc[1, "linear"],
           "pixels: nb all": px_.loc["all", "nb"], "pixels: linear all": px_.loc["all", "linear"],
           "SimCLR: nb@1": sf.loc[1, "nb"], "SimCLR: linear@1": sf.loc[1, "linear"],
           "1-shot k-means": nc.loc[(1, "transductive k-means"), "accuracy"],
           "1-shot nearest centroid": nc.loc[(1, "nearest centroid"), "accuracy"],
           "1-shot gain": gain, "1-shot ci95": nc.loc[(1, "transductive k-means"), "ci95"]}
holds = (px_.loc[1, "nb"] > px_.loc[1, "linear"] and px_.loc["all", "nb"] < px_.loc["all", "linear"]
         and gain > nc.loc[(1, "transductive k-means"), "ci95"])
check_finding("06_few_labels", "naive Bayes ahead at 1 label, behind with all (raw pixels); transductive k-means "
              "beats nearest centroid at 1 shot", numbers, holds=holds, smoke=SMOKE)
if SMOKE:
    shutil.rmtree(RUNS_DIR, ignore_errors=True)
