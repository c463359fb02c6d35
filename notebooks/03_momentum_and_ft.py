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
# # Momentum and feature transformation: reading MoCo through its scores
#
# MoCo (He et al., CVPR 2020) compares each query $q$ with a key $k$ of the other view of the same image (the
# positive) and with a queue of keys of earlier batches (the negatives). The keys come from a **momentum
# encoder**, a slowly moving copy of the query encoder:
#
# $$\theta_k \leftarrow m\,\theta_k + (1 - m)\,\theta_q .$$
#
# *Improving Contrastive Learning by Visualizing Feature Transformation* (Zhu et al., ICCV 2021) reads training
# through three numbers the workbench logs at every step: the mean positive score `pos_mean` $= \overline{q\cdot
# k^+}$, the mean negative score `neg_mean` and the variance of each query's negative scores `neg_var`. With them
# it explains the momentum and designs a **feature transformation** (FT) of the embeddings the loss sees:
#
# * **positive extrapolation**: $\hat q = \lambda^+ q + (1-\lambda^+) k$, $\hat k = \lambda^+ k + (1-\lambda^+) q$
#   with $\lambda^+ = 1 + \mathrm{Beta}(\alpha^+, \alpha^+) > 1$: the two views are pushed apart, the positive
#   becomes harder;
# * **negative interpolation**: each negative is mixed with another of the queue, $\hat n_i = \lambda^- n_i +
#   (1-\lambda^-) n_{\pi(i)}$, $\lambda^- \sim \mathrm{Beta}(\alpha^-, \alpha^-)$, not re-normalised: new
#   negatives between the old ones, each query's score with them the same mix of two old scores.
#
# **The finding, in one sentence:** *the momentum sets how hard the positives are: a fast key encoder ($m = 0.9$)
# makes them easy from the first steps (a high `pos_mean`), a frozen one ($m = 1$) keeps them hard and its keys
# alike (`pos_mean` lowest, `neg_var` near 0); and the transformation hands the loss harder positives (`pos_ft`
# below `pos`) and negatives whose scores are pulled together (`neg_var_ft` below `neg_var`).*
#
# Five short MoCo runs on `digits`, about 2 minutes in full mode on 2 CPU cores; `WORKBENCH_SMOKE=1` runs in seconds.

# %%
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: idle threads sleep, not spin

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import ipywidgets as widgets
from IPython.display import display

import workbench
from workbench.runs import RunReader
from workbench.ui import charts
from workbench.ui.notebook import (comparison_figure, draw_curves, draw_histograms, follow, smoke_mode,
                                   step_status, tutorial_runs_dir)
from workbench.ui.tutorial_charts import check_finding

SMOKE = smoke_mode()
MOMENTA = [0.9, 0.99, 0.999, 1.0]
EPOCHS = 1 if SMOKE else 30  # digits: 5 steps an epoch at batch 256
SIZE = dict(subset=300, probe_size=200, batch_size=128) if SMOKE else {}
RUNS_DIR = tutorial_runs_dir("momentum", SMOKE)  # smoke: a temporary folder; else runs/, where `workbench app` looks
print(f"workbench {workbench.__version__}; smoke={SMOKE}; m in {MOMENTA}; {EPOCHS} epochs each; runs in "
      f"{Path(RUNS_DIR).resolve()}")

# %% [markdown]
# ## 1. Four momenta, watched live
#
# The same MoCo run four times (the workbench's MoCo v2 defaults: queue, split-BN, symmetric loss, $\tau = 0.1$),
# only $m$ changed. Left: the current run's positive and negative scores. Middle: `pos_mean` of every run so far.
# Right: `neg_var`.

# %%
fig = comparison_figure(("pos/neg cosine similarity (current run)", "pos_mean (positive score)",
                         "neg_var (variance of the negatives)"), [f"m={m}" for m in MOMENTA])
fig.update_xaxes(title_text="step", row=1, col=2).update_xaxes(title_text="step", row=1, col=3)
status = widgets.HTML()
display(status, fig)


def refresh(reader, i, m):
    df = reader.scalars(["pos_mean", "neg_var"])
    with fig.batch_update():
        draw_histograms(fig, reader)
        draw_curves(fig, df, {2 + 2 * i: "pos_mean", 3 + 2 * i: "neg_var"})
    status.value = step_status(reader, f"m = {m}")


runs, t0 = {}, time.time()
for i, m in enumerate(MOMENTA):
    handle = workbench.start_training(method="moco", dataset="digits", moco_momentum=m, epochs=EPOCHS,
                                      runs_dir=RUNS_DIR, log_every=2, progress=False, **SIZE)
    result = follow(handle, lambda reader: refresh(reader, i, m))
    runs[m] = handle.run_dir
    print(f"m={m}: {result.status} ({time.time() - t0:.0f} s so far)")

# %% [markdown]
# The live figure as a plain figure (it stays drawn where widgets are not), then the three curves of the paper
# overlaid, as the app's Pos/neg page draws them:

# %%
go.Figure(fig).show()
readers = {m: RunReader(d) for m, d in runs.items()}
frames = {f"m={m}": r.scalars(["pos_mean", "neg_mean", "neg_var", "knn_acc"]) for m, r in readers.items()}
for key, title in (("pos_mean", "mean positive score q.k+"), ("neg_mean", "mean negative score q.k-"),
                   ("neg_var", "variance of each query's negative scores")):
    charts.overlay(frames, key, title).show()

# %% [markdown]
# **What to look for.**
#
# * $m = 0.9$: the key encoder follows the query encoder within a few steps, so $q$ and $k^+$ come from nearly
#   the same network: the positives are easy from the start (`pos_mean` high early) and teach little.
# * $m = 1$: the key encoder never moves from its random initialisation. Its keys are all alike (a random
#   network maps every image to nearly the same direction: `neg_var` near 0) and the query encoder can only
#   partly align with them (`pos_mean` lowest).
# * $m = 0.99$ and $0.999$ lie between: the positives get easier slowly while the negatives stay varied, the
#   regime in which MoCo learns (compare the kNN accuracy in the table below).

# %%
def early(series, share=0.2):
    """Mean over the first ``share`` of the logged steps."""
    s = series.dropna()
    return float(s.iloc[: max(1, int(len(s) * share))].mean())


table = pd.DataFrame({m: {"pos_mean (first 20%)": early(frames[f"m={m}"]["pos_mean"]),
                          **{k: r.last_scalars().get(k) for k in ("pos_mean", "neg_mean", "neg_var", "knn_acc")}}
                      for m, r in readers.items()}).T.rename_axis("m")
display(table.round(4))

# %% [markdown]
# ## 2. Feature transformation: the scores the loss saw
#
# The same MoCo ($m = 0.99$) with positive extrapolation and negative interpolation switched on (`ft_pos`,
# `ft_neg`, the paper's $\alpha^+ = 2$, $\alpha^- = 1.6$). The run logs both the raw scores (`pos`, `neg`: what
# the encoders produce) and the transformed ones (`pos_ft`, `neg_ft`: what InfoNCE was given). Left: raw. Right:
# transformed.

# %%
ft = go.FigureWidget(make_subplots(rows=1, cols=2, subplot_titles=("raw scores (pos, neg)",
                                                                   "after FT (pos_ft, neg_ft)")))
for col in (1, 2):
    ft.add_bar(x=[], y=[], name="positive", marker_color=charts.POS_COLOR, opacity=0.6, showlegend=col == 1,
               row=1, col=col)
    ft.add_bar(x=[], y=[], name="negative", marker_color=charts.NEG_COLOR, opacity=0.6, showlegend=col == 1,
               row=1, col=col)
ft.update_layout(height=330, barmode="overlay", bargap=0, margin=dict(l=40, r=10, t=40, b=40))
ft.update_xaxes(range=[-1, 1], title_text="cosine similarity")
ft_status = widgets.HTML()
display(ft_status, ft)


def refresh_ft(reader):
    with ft.batch_update():
        draw_histograms(ft, reader, (0, 1))
        draw_histograms(ft, reader, (2, 3), keys=("pos_ft", "neg_ft"))
    ft_status.value = step_status(reader, "MoCo + FT")


handle = workbench.start_training(method="moco", dataset="digits", moco_momentum=0.99, ft_pos=True, ft_neg=True,
                                  epochs=EPOCHS, runs_dir=RUNS_DIR, log_every=2, progress=False, **SIZE)
result = follow(handle, refresh_ft)
runs["FT"] = handle.run_dir
print(f"FT: {result.status} ({time.time() - t0:.0f} s so far)")
go.Figure(ft).show()

# %% [markdown]
# Raw against transformed over the whole run, and the plain run ($m = 0.99$ above) beside it:

# %%
ft_reader = RunReader(runs["FT"])
ft_frame = ft_reader.scalars(["pos_mean", "pos_mean_ft", "neg_var", "neg_var_ft", "knn_acc"])
charts.curves(ft_frame, ["pos_mean", "pos_mean_ft"], "MoCo + FT: positive score, raw and as the loss saw it").show()
charts.curves(ft_frame, ["neg_var", "neg_var_ft"], "MoCo + FT: variance of the negatives, raw and as the loss "
              "saw it").show()
last = ft_reader.last_scalars()
display(pd.DataFrame({"MoCo m=0.99": table.loc[0.99, ["pos_mean", "neg_var", "knn_acc"]],
                      "MoCo m=0.99 + FT (raw)": pd.Series({k: last.get(k) for k in ("pos_mean", "neg_var",
                                                                                     "knn_acc")}),
                      "MoCo m=0.99 + FT (as the loss saw it)": pd.Series({"pos_mean": last.get("pos_mean_ft"),
                                                                          "neg_var": last.get("neg_var_ft")})}
                     ).T.round(4))

# %% [markdown]
# **What to look for.** Extrapolation moves $q$ and $k$ apart, so every positive the loss sees is harder than the
# raw one (`pos_ft` left of `pos`). Interpolation gives each query the score $\lambda s_i + (1-\lambda)
# s_{\pi(i)}$ with a mixed negative: a weighted mean of two of its scores, so their spread shrinks by about
# $\lambda^2 + (1-\lambda)^2$ (`neg_var_ft` below `neg_var`): negatives the model has not seen, in between the
# ones it has, rather than harder ones.
#
# Trained against harder positives, the encoders align the two views more: the *raw* `pos_mean` of the FT run ends
# well above the plain run's (0.93 against 0.73 in the full run that measured this notebook). The paper gains about
# 2 points of ImageNet linear accuracy with FT after 200 epochs; here, after 30 epochs on `digits`, the FT run's
# kNN accuracy is *lower* (0.933 against 0.969): the mechanism shows at this scale, the gain does not.
#
# **Questions to try.**
# 1. Set $m = 0.999$ with a longer run (`EPOCHS = 100`): does it catch up with 0.99?
# 2. Switch on only `ft_pos`, then only `ft_neg`: which one moves which curve?
# 3. Raise `ft_alpha_pos` to 10: $\lambda^+$ concentrates near 1.5. What happens to `pos_ft`, and to the loss?
# 4. Turn `exclude_self_keys` off (the official code): how often does a query meet its own image's key in the
#    queue (`queue_self_frac`), and does `neg_mean` change?
#
# ## 3. The check
#
# Over the four momenta: $m = 0.9$ has the highest early `pos_mean`; $m = 1$ the lowest final `pos_mean` and the
# lowest `neg_var`. With FT: the mean positive score the loss saw is below the raw one, and so is the variance of
# the negatives' scores.

# %%
numbers = {f"pos_mean first 20% m={m}": table.loc[m, "pos_mean (first 20%)"] for m in MOMENTA}
numbers.update({f"pos_mean m={m}": table.loc[m, "pos_mean"] for m in MOMENTA})
numbers.update({f"neg_var m={m}": table.loc[m, "neg_var"] for m in MOMENTA})
numbers.update({"FT pos_mean": last["pos_mean"], "FT pos_mean_ft": last["pos_mean_ft"],
                "FT neg_var": last["neg_var"], "FT neg_var_ft": last["neg_var_ft"]})
holds = (table["pos_mean (first 20%)"].idxmax() == 0.9 and table["pos_mean"].idxmin() == 1.0
         and table["neg_var"].idxmin() == 1.0 and last["pos_mean_ft"] < last["pos_mean"]
         and last["neg_var_ft"] < last["neg_var"])
check_finding("03_momentum_and_ft", "m=0.9 makes positives easy early, m=1 keeps them hard with alike keys; FT hands "
              "the loss harder positives and negatives with pulled-together scores", numbers, holds=holds, smoke=SMOKE)
for r in (*readers.values(), ft_reader):
    r.close()
if SMOKE:
    shutil.rmtree(RUNS_DIR, ignore_errors=True)
