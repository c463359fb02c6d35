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
# # Debugging collapse: provoke it, read it, fix it
#
# A self-supervised run can "succeed" (the loss goes down, nothing crashes) and learn nothing useful because the
# representation **collapsed**:
#
# * **complete collapse**: every image maps to (nearly) the same point. Positive pairs are trivially aligned,
#   nothing is told apart;
# * **dimensional collapse** (Jing et al., ICLR 2022, *Understanding Dimensional Collapse in Contrastive
#   Self-supervised Learning*): the embeddings do not shrink to a point but to a low-dimensional subspace; a few
#   singular values carry everything and the rest fall towards zero.
#
# The workbench logs four instruments for this, and this notebook provokes three failures and reads each one:
#
# | instrument | what it measures | healthy | collapsed |
# |---|---|---|---|
# | `collapse_std` (lightly's) | std over the batch of each dimension of the L2-normalised projection $z$, averaged | about $1/\sqrt d$ (`collapse_ref`) | towards 0 |
# | `uniform` (Wang & Isola) | $\log \mathbb E\, e^{-2\lVert z_i - z_j \rVert^2}$ | -3.9 for $d = 128$ | towards 0 |
# | spectrum, **RankMe** (Garrido et al., 2023) | singular values of the backbone features $h$ of the training set; RankMe $= \exp(-\sum_k p_k \log p_k)$, $p_k = \sigma_k / \sum \sigma$ | spread, RankMe near $d$ | a few large values, RankMe near 1 |
# | pos/neg histograms | cosine similarities of positive pairs and of negatives | positives near 1, negatives spread around 0 | both piled up together |
#
# **The finding, in one sentence:** *each failure leaves a distinct fingerprint: without negatives the projection
# collapses (`collapse_std` far below $1/\sqrt d$, positives and negatives piled together) while the backbone
# keeps its rank; a huge learning rate or strong weight decay collapses the backbone's spectrum (RankMe drops),
# sometimes while $z$ still looks healthy; putting the knob back fixes each.*
#
# Five short runs on `digits`, about 2 minutes in full mode on 2 CPU cores; `WORKBENCH_SMOKE=1` runs in seconds.

# %%
import math
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: idle threads sleep, not spin

import pandas as pd
import plotly.graph_objects as go
import ipywidgets as widgets
from IPython.display import display

import workbench
from workbench.runs import RunReader
from workbench.ui import charts, probe_charts
from workbench.ui.notebook import (comparison_figure, draw_curves, draw_histograms, follow, redraw_on_change,
                                   smoke_mode, step_status, tutorial_runs_dir)
from workbench.ui.tutorial_charts import check_finding

SMOKE = smoke_mode()
EPOCHS = 1 if SMOKE else 8
SIZE = dict(subset=300, probe_size=200, batch_size=128) if SMOKE else {}
RUNS_DIR = tutorial_runs_dir("collapse", SMOKE)  # smoke: a temporary folder; else runs/, where `workbench app` looks
print(f"workbench {workbench.__version__}; smoke={SMOKE}; {EPOCHS} epochs a run; runs in {Path(RUNS_DIR).resolve()}")

# %% [markdown]
# ## 1. The experiments
#
# | run | what changes | expected failure |
# |---|---|---|
# | `healthy` | SimCLR with the workbench's defaults (AdamW, lr 1e-3, weight decay 1e-4) | none: the reference |
# | `no negatives` | MoCo with a queue of **one** key: each query has a single negative | complete collapse of $z$ |
# | `huge lr` | SimCLR at lr 10 (10,000 times the default) | the backbone's spectrum collapses |
# | `strong weight decay` | SimCLR with decoupled weight decay 1.0 at lr 1e-2: weights shrink by 1 % every step | dimensional collapse of the backbone |
# | `negatives back` | MoCo with its default queue (capped at half the training set) | the fix of `no negatives` |
#
# The fixes of `huge lr` and `strong weight decay` are the `healthy` run itself (the default lr and decay).

# %%
EXPERIMENTS = {
    "healthy": dict(method="simclr"),
    "no negatives": dict(method="moco", queue_size=1),
    "huge lr": dict(method="simclr", lr=10.0),
    "strong weight decay": dict(method="simclr", weight_decay=1.0, lr=1e-2),
    "negatives back": dict(method="moco"),
}

fig = comparison_figure(("pos/neg cosine similarity (current run)", "collapse_std / (1/sqrt d)",
                         "RankMe of the backbone features"), list(EXPERIMENTS))
fig.add_hline(y=1, line_dash="dash", line_color="grey", row=1, col=2)
fig.update_xaxes(title_text="step", row=1, col=2).update_xaxes(title_text="step", row=1, col=3)
fig.update_yaxes(type="log", row=1, col=3)
status = widgets.HTML()
display(status, fig)


def refresh(reader, i, name):
    df = reader.scalars(["collapse_std", "collapse_ref", "rankme"])
    if "collapse_std" in df:
        df["std / ref"] = df["collapse_std"] / df["collapse_ref"]
    with fig.batch_update():
        draw_histograms(fig, reader)
        draw_curves(fig, df, {2 + 2 * i: "std / ref", 3 + 2 * i: "rankme"})
    status.value = step_status(reader, name)


runs, t0 = {}, time.time()
for i, (name, kw) in enumerate(EXPERIMENTS.items()):
    handle = workbench.start_training(dataset="digits", epochs=EPOCHS, runs_dir=RUNS_DIR, log_every=5,
                                      progress=False, **kw, **SIZE)
    result = follow(handle, lambda reader: refresh(reader, i, name))
    runs[name] = handle.run_dir
    print(f"{name}: {result.status} ({time.time() - t0:.0f} s so far)")

# %% [markdown]
# The live figure, as a plain figure (it stays drawn where widgets are not), and every run's last values:

# %%
go.Figure(fig).show()
readers = {name: RunReader(d) for name, d in runs.items()}
table = pd.DataFrame({name: {k: r.last_scalars().get(k, math.nan) for k in (
    "loss", "pos_mean", "neg_mean", "neg_var", "collapse_std", "collapse_ref", "uniform", "effective_rank", "rankme",
    "knn_acc")} for name, r in readers.items()}).T
table["std / ref"] = table["collapse_std"] / table["collapse_ref"]
display(table.round(3))

# %% [markdown]
# ## 2. Reading each failure
#
# **The histograms.** Below, `no negatives`; pick another run to compare. Healthy training pushes the positives (blue) towards 1 and keeps the negatives
# (red) spread around 0. Without negatives, both pile up together with almost no spread (`neg_var` near 0):
# the embedding has become a narrow cone in which positives and negatives look alike.

# %%
def histogram(name):
    r = readers[name]
    f = charts.pos_neg_histogram(r.histograms("pos"), r.histograms("neg"))
    return f.update_layout(title=f"{name}: " + f.layout.title.text)


pick = widgets.ToggleButtons(options=list(runs), value="no negatives", description="compare")
redraw_on_change(lambda: histogram(pick.value), [pick])  # another run picked: its histogram below

# %% [markdown]
# **The projection's spread** (`collapse_std` over $1/\sqrt d$, dashed line = what points spread over the sphere
# would give) and **uniformity**. A run far below the line has collapsed *in $z$*. Note that `huge lr` and
# `strong weight decay` stay near the line: judged by $z$ alone they look fine.

# %%
frames = {name: r.scalars(["collapse_std", "collapse_ref", "uniform", "rankme", "knn_acc"]) for name, r in readers.items()}
for df in frames.values():
    df["std / ref"] = df["collapse_std"] / df["collapse_ref"]
charts.overlay(frames, "std / ref", "collapse_std relative to 1/sqrt(d) (1 = spread like random directions)",
               reference={"1/sqrt(d)": 1.0}).show()
charts.overlay(frames, "uniform", "uniformity of the batch (lower = more uniform)",
               reference={"collapse": 0.0}).show()

# %% [markdown]
# **The backbone's spectrum.** At every evaluation the run stores the singular values of the backbone features
# of the whole training set. Healthy features use many directions; after a huge learning rate or strong weight
# decay a handful of singular values carry everything, RankMe falls and so does kNN accuracy: that is the
# collapse the projection hid.

# %%
spectra = {name: r.snapshot("spectrum")["singular_values"] for name, r in readers.items()}
probe_charts.spectrum_lines({f"{n} (RankMe {table.loc[n, 'rankme']:.1f})": s for n, s in spectra.items()}).show()
charts.overlay(frames, "knn_acc", "kNN accuracy on the held-out split").show()

# %% [markdown]
# **Why each happens and how it is fixed.**
#
# * *No negatives.* The loss only asks the two views to agree; with one negative per query there is almost
#   nothing pushing images apart, and the cheapest solution is to map everything close together. The backbone
#   still has a high rank here (the collapse is absorbed by the projection head), but the contrastive signal is
#   gone. **Fix**: negatives (`negatives back`: the MoCo queue), or the architectural tricks of negative-free
#   methods (BYOL's predictor and momentum encoder, SimSiam's stop-gradient, Barlow Twins' decorrelation).
# * *Huge learning rate.* Steps far too large kill most ReLUs and leave a few directions alive: RankMe falls to a
#   few units. **Fix**: the default learning rate (with warm-up); for SGD/LARS, the linear scaling rule.
# * *Strong weight decay.* Every step shrinks all weights towards 0; only the directions the loss keeps
#   re-growing survive: a lower-rank backbone. **Fix**: the default weight decay (1e-4 for AdamW here).
#
# **Questions to try.**
# 1. MoCo with `queue_size=8`: how many negatives are enough to avoid the collapse of $z$?
# 2. `proj_dim=2`: the projection is two-dimensional, so `collapse_std` has nothing to say; does the backbone
#    (RankMe, kNN) suffer? (Here it does not: Jing et al. show that the projector protects the backbone.)
# 3. Train `huge lr` with `grad_clip=1.0`: does clipping help AdamW? (Its step size does not depend on the
#    gradient's scale.)
#
# ## 3. The check
#
# Each failure must show its fingerprint and its fix must remove it: `no negatives` has `collapse_std` below half of
# $1/\sqrt d$ and `negatives back` above 0.8 of it; `huge lr` has RankMe below a fifth of `healthy`'s (measured: a
# tenth, 9.9 to 11.3 against 111 over full runs, so a tenth itself is too close to call);
# `strong weight decay` has RankMe below 0.6 of `healthy`'s and a lower kNN accuracy.

# %%
ratio = table["std / ref"]
rank = table["rankme"]
numbers = {
    "no negatives: collapse_std / ref": ratio["no negatives"], "negatives back: collapse_std / ref": ratio["negatives back"],
    "healthy RankMe": rank["healthy"], "huge lr RankMe": rank["huge lr"],
    "strong weight decay RankMe": rank["strong weight decay"],
    "healthy kNN": table.loc["healthy", "knn_acc"], "strong weight decay kNN": table.loc["strong weight decay", "knn_acc"],
}
holds = (ratio["no negatives"] < 0.5 and ratio["negatives back"] > 0.8 and rank["huge lr"] < 0.2 * rank["healthy"]
         and rank["strong weight decay"] < 0.6 * rank["healthy"]
         and table.loc["strong weight decay", "knn_acc"] < table.loc["healthy", "knn_acc"])
check_finding("07_debugging_collapse", "each provoked failure shows its collapse fingerprint and its fix removes it",
              numbers, holds=holds, smoke=SMOKE)
for r in readers.values():
    r.close()
if SMOKE:
    shutil.rmtree(RUNS_DIR, ignore_errors=True)
