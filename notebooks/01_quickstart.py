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
# # Quick start: SimCLR on `digits`, watched live
#
# **SimCLR** (Chen et al., 2020) learns image representations without labels. Every image $x$ in a batch of $N$
# is augmented twice, $\tilde x_i = t(x)$ and $\tilde x_j = t'(x)$ with $t, t' \sim \mathcal T$ (random crop,
# flip, colour jitter, ...). A backbone $f$ gives the representation $h = f(\tilde x)$ and a small MLP head the
# projection $z = g(h)$. The two views of the same image form a **positive pair**; every other view in the batch
# is a **negative**. With cosine similarity $s_{ik} = z_i^\top z_k / (\lVert z_i\rVert \lVert z_k\rVert)$ the
# **NT-Xent** loss (normalised temperature-scaled cross-entropy) of view $i$, whose partner is $j(i)$, is
#
# $$
# \ell_i \;=\; -\log \frac{\exp\!\big(s_{i,j(i)} / \tau\big)}{\sum_{k=1,\,k\neq i}^{2N} \exp\!\big(s_{ik} / \tau\big)},
# \qquad
# \mathcal L \;=\; \frac{1}{2N} \sum_{i=1}^{2N} \ell_i .
# $$
#
# It is a $(2N-1)$-way classification: "which of the other views is my partner?". The **temperature** $\tau$
# sets how sharply the softmax concentrates on the most similar (hardest) negatives. If every embedding were the
# same point, all $s_{ik}$ would be equal and $\mathcal L = \ln(2N-1)$ (about 6.24 for $N = 256$): that is the
# "chance" level to compare the loss curve with.
#
# This notebook:
#
# 1. shows what the augmented views of the embedded `digits` dataset (scikit-learn's 1,797 8x8 handwritten
#    digits, always available offline) look like;
# 2. starts SimCLR training **in a background thread** with `workbench.start_training` and follows it live from
#    the run store: the loss, the distributions of positive and negative cosine similarities, and kNN accuracy;
# 3. explains how to read the positive/negative histogram;
# 4. projects the learned embeddings (PCA and UMAP) and compares kNN accuracy at random initialisation with the
#    end of training;
# 5. runs a small temperature experiment ($\tau \in \{0.05, 0.2, 1.0\}$).
#
# Training the full version takes about a minute on a laptop CPU. Set `WORKBENCH_SMOKE=1` for a seconds-long
# smoke run (what the test suite does).

# %%
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: idle threads sleep, not spin

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from IPython.display import display

import workbench
from workbench.data import ContrastiveViews, ViewConfig, load_dataset, views_grid
from workbench.diagnostics.projection import pca_2d
from workbench.ui.notebook import smoke_mode, tutorial_runs_dir, watch
from workbench.runs import RunReader
from workbench.ui.charts import NEG_COLOR, POS_COLOR  # the dashboard's colours
from workbench.ui.tutorial_charts import check_finding

# Smoke mode: the test suite (and CI) runs this notebook in seconds with tiny settings.
SMOKE = smoke_mode()
EPOCHS = 2 if SMOKE else 40
TAU = 0.2
LOG_EVERY = 5  # steps between pos/neg histograms; digits has 5 steps per epoch at batch size 256
RUNS_DIR = tutorial_runs_dir("quickstart", SMOKE)  # smoke: a temporary folder; else runs/, where `workbench app` looks
print(f"workbench {workbench.__version__}; smoke={SMOKE}; epochs={EPOCHS}; runs in {Path(RUNS_DIR).resolve()}")

# %% [markdown]
# ## 1. What the network sees: pairs of augmented views
#
# SimCLR's views come from random resized crops, horizontal flips and colour jitter (for grey images, brightness
# and contrast only). For `digits` the workbench uses a milder crop (scale 0.4 to 1 of the image instead of 0.08
# to 1): an 8x8 digit cropped to 8% of its area is a few pixels of nothing. The top row shows originals, the
# rows below two independent random views of each, exactly as the training loop makes them. Note that flips turn
# some digits into mirror images: the network is asked to call a digit and its mirror "the same".

# %%
bundle = load_dataset("digits")
print(f"{bundle.source}: train {len(bundle.train)}, test {len(bundle.test)}, images "
      f"{tuple(bundle.train.images.shape[1:])}, classes {bundle.classes}")

views = ContrastiveViews(ViewConfig(size=bundle.image_size, crop_scale=bundle.crop_scale), bundle.mean, bundle.std)
grid = views_grid(bundle.train.images, views, n_images=12, n_views=3, seed=0)  # uint8 (3, H, W)
fig = px.imshow(grid.permute(1, 2, 0).numpy(), title="row 0: originals; rows 1-3: random views")
fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)
fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10))
fig.show()

# %% [markdown]
# ## 2. Train in the background and watch
#
# `workbench.start_training` takes the same keywords as `workbench.train` (any `TrainConfig` field), builds the
# model and loads the data in this thread, so configuration errors appear here, and then trains in a
# background thread. `handle.run_dir` is known at once. Everything the loop logs (scalars every step, pos/neg
# histograms every `log_every` steps, kNN accuracy and an embedding snapshot every epoch) goes to
# `handle.run_dir/run.db`, which any number of readers can follow while it is written: this notebook, the
# dashboard (`workbench app`), or a `RunReader` in another process.

# %%
handle = workbench.start_training(method="simclr", dataset="digits", epochs=EPOCHS, tau=TAU,
                                  runs_dir=RUNS_DIR, log_every=LOG_EVERY, progress=False)
print("training in the background; run directory:", handle.run_dir)


# %% [markdown]
# The next cell polls the run store twice a second and updates the figure in place until training ends. To stop
# early, interrupt the kernel (the loop then calls `handle.stop()`, which ends training after the current step
# and keeps the last checkpoint); `handle.stop()` also works from any other cell.

# %%
def live_figure():
    base = make_subplots(rows=1, cols=3, specs=[[{}, {}, {"secondary_y": True}]], horizontal_spacing=0.08,
                         subplot_titles=("NT-Xent loss", "pos/neg cosine similarity", "score statistics"))
    base.add_scatter(x=[], y=[], mode="lines", name="loss", line_color="black", row=1, col=1)
    base.add_bar(x=[], y=[], name="positive", marker_color=POS_COLOR, opacity=0.6, row=1, col=2)
    base.add_bar(x=[], y=[], name="negative", marker_color=NEG_COLOR, opacity=0.6, row=1, col=2)
    base.add_scatter(x=[], y=[], mode="lines+markers", name="pos_mean", line_color=POS_COLOR, row=1, col=3)
    base.add_scatter(x=[], y=[], mode="lines+markers", name="neg_mean", line_color=NEG_COLOR, row=1, col=3)
    base.add_scatter(x=[], y=[], mode="lines+markers", name="neg_var (right axis)",
                     line=dict(color=NEG_COLOR, dash="dot"), row=1, col=3, secondary_y=True)
    base.update_layout(height=360, barmode="overlay", bargap=0, margin=dict(l=40, r=40, t=40, b=40),
                       legend=dict(orientation="h", y=-0.2))
    base.update_xaxes(title_text="step", row=1, col=1).update_xaxes(title_text="cosine similarity", range=[-1, 1],
                                                                     row=1, col=2)
    base.update_xaxes(title_text="step", row=1, col=3)
    base.update_yaxes(title_text="density", row=1, col=2)
    base.update_yaxes(title_text="neg_var", row=1, col=3, secondary_y=True)
    return base


def refresh(fig, reader):
    # Read the whole (small) history each time; RunReader sees every step committed so far.
    df = reader.scalars(["loss", "pos_mean", "neg_mean", "neg_var", "knn_acc"])
    pos, neg = reader.histograms("pos"), reader.histograms("neg")
    with fig.batch_update():
        for trace, key in ((0, "loss"), (3, "pos_mean"), (4, "neg_mean"), (5, "neg_var")):
            if key in df:
                s = df[key].dropna()
                fig.data[trace].x, fig.data[trace].y = s.index.to_numpy(), s.to_numpy()
        for trace, series, name in ((1, pos, "positive"), (2, neg, "negative")):
            if len(series.steps):
                fig.data[trace].x, fig.data[trace].y = series.centers, series.density()[-1]
                fig.data[trace].width = float(np.diff(series.edges)[0])
                fig.data[trace].name = f"{name} (mean {series.mean[-1]:.2f})"
        if len(pos.steps):
            fig.layout.annotations[1].text = f"pos/neg cosine similarity, step {pos.steps[-1]}"
    meta, st = reader.meta, reader.status()
    knn = df["knn_acc"].dropna() if "knn_acc" in df else pd.Series(dtype=float)
    knn_text = f"{knn.iloc[-1]:.3f} (at init {knn.iloc[0]:.3f})" if len(knn) else "n/a"
    return (f"<b>status</b> {st.state} &nbsp; <b>step</b> {st.step}/{meta.get('total_steps', '?')} &nbsp; "
            f"<b>epoch</b> {meta.get('epoch', 0)}/{meta.get('config', {}).get('epochs', '?')} &nbsp; "
            f"<b>kNN accuracy</b> {knn_text}")


t0 = time.time()
# polls the run store twice a second until training ends, updating the figure in place; interrupt to stop the run
result = watch(handle, live_figure(), refresh, every=0.5)
print(f"{result.status} after {result.step} steps ({result.epochs_done} epochs) in {time.time() - t0:.1f} s; "
      f"final loss {result.metrics['loss']:.3f}, kNN accuracy {result.metrics['knn_acc']:.3f}")

# %% [markdown]
# ## 3. How to read the positive/negative histogram
#
# The middle panel shows, at the latest logged step, the cosine similarities $s$ of the batch's **positive
# pairs** (blue: two views of one image, $N$ values) and of its **negatives** (red: every other pair,
# $2N(2N-2)$ values). The right panel tracks their means and the mean per-anchor variance of the negatives over
# time, the view of Zhu et al. (2021), "Improving Contrastive Learning by Visualizing Feature Transformation".
#
# * **Healthy training.** Positives move to the right, towards 1 (the two views agree), while negatives spread
#   out around 0. `pos_mean - neg_mean` grows and the loss falls well below the chance level $\ln(2N-1)$.
#   Positives do not need to reach 1: views of an 8x8 digit cropped and flipped really do differ.
# * **Negatives are not uniform, and that is good.** Random directions on the unit sphere in $d$ dimensions have
#   cosine mean 0 and variance $1/d$ (0.008 for the 128-d projection). A `neg_var` several times larger, and a
#   red shoulder reaching towards the blue bump, mean some "negatives" sit close to the anchor: mostly images of
#   the same digit (*false negatives*). This is the class structure the kNN probe relies on.
# * **Collapse.** Both distributions pile up at 1: every image maps to (nearly) the same point, positives are
#   trivially aligned and nothing is told apart. The loss then sits at $\ln(2N-1)$. NT-Xent resists complete
#   collapse because the negatives push apart, but watch for it with very small batches, high learning rates or
#   other methods (BYOL/SimSiam have no negatives at all).
# * **Partial (dimensional) collapse.** Negatives bunch at a clearly positive mean with a small variance:
#   the embeddings occupy a narrow cone or a few dimensions. It can happen early in training at a very small
#   $\tau$ (see section 5) and shows as a rising `neg_mean`.
# * **Too-easy positives.** Positives jump to about 1 within a few steps and stay there with almost no spread:
#   the augmentations are too weak, the pretext task is solved by low-level cues and the representation learns
#   little. Strengthen the views (smaller crops, stronger jitter).
# * **Too-hard positives.** Positives stay near the negatives for a long time: the views rarely share content
#   (crops too small, for `digits` the reason for the 0.4 minimum crop scale).

# %% [markdown]
# ## 4. The embeddings: before and after
#
# Every epoch the run stores a snapshot of the backbone features $h$ (not the projection $z$: the probes use
# $h$, as in the SimCLR paper) of a fixed subset of the held-out split, with labels and kNN predictions.
# Below: PCA of the snapshot at random initialisation (step 0) and at the end, and (full run only) UMAP of the
# final one. Colour is the true digit, which training never saw.

# %%
reader = RunReader(handle.run_dir)
first, last = reader.snapshot("embeddings", step=0), reader.snapshot("embeddings")
panels = [("random init (step 0), PCA", pca_2d(first["features"])),
          (f"after training (step {last.step}), PCA", pca_2d(last["features"]))]
if not SMOKE:
    import umap  # umap-learn; the first call compiles with numba (about 10-20 s)

    feats = last["features"].astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True).clip(min=1e-8)
    panels.append((f"after training (step {last.step}), UMAP",
                   umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0, n_jobs=1).fit_transform(feats)))

palette = px.colors.qualitative.D3
fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels])
for col, ((_, xy), snap) in enumerate(zip(panels, [first, last, last]), start=1):
    for c, name in enumerate(bundle.classes):
        m = snap["labels"] == c
        fig.add_scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, legendgroup=name,
                        showlegend=col == 1, marker=dict(size=5, color=palette[c % len(palette)]),
                        row=1, col=col)
fig.update_layout(height=420, legend_title_text="digit", margin=dict(l=30, r=10, t=40, b=30))
fig.show()

knn = reader.scalar("knn_acc")
print(f"kNN accuracy (k={int(reader.scalar('knn_k').iloc[-1])}, held-out split): "
      f"random init {knn.iloc[0]:.3f} -> after {EPOCHS} epochs {knn.iloc[-1]:.3f}")
print("per epoch:", " ".join(f"{v:.3f}" for v in knn.to_numpy()))

# %% [markdown]
# A word of caution for teaching: `digits` is easy. The features of an untrained (randomly initialised)
# convolutional network already separate the classes fairly well, which is why the step-0 kNN accuracy is high,
# and a kNN classifier on the raw 64 pixels does at least as well as the learned features (computed below).
# On this toy dataset SimCLR is for watching the mechanics (the rising kNN curve, the tighter clusters, the
# score distributions), not for beating pixels; on harder data such as `fashion-mnist` or `cifar10` raw pixels
# fall far behind. The baseline:

# %%
from sklearn.neighbors import KNeighborsClassifier

flat = lambda s: s.images.flatten(1).float().numpy() / 255
raw = KNeighborsClassifier(n_neighbors=5).fit(flat(bundle.train), bundle.train.labels.numpy())
print(f"kNN on raw pixels (k=5): {raw.score(flat(bundle.test), bundle.test.labels.numpy()):.3f}")

# %% [markdown]
# ## 5. A temperature experiment
#
# Wang & Liu (2021), "Understanding the Behaviour of Contrastive Loss", show that NT-Xent is **hardness-aware**:
# the gradient pushes each negative $k$ away from anchor $i$ with weight
# $\exp(s_{ik}/\tau) / \sum_{k'} \exp(s_{ik'}/\tau)$, a softmax over the negatives. A **small** $\tau$
# concentrates that weight on the hardest (most similar) negatives, which spreads the embedding out: more
# **uniformity**, but the hardest negatives are often images of the same class, so semantically similar samples
# are pushed apart too (less **tolerance**). A **large** $\tau$ weights all negatives almost equally: the loss is
# more tolerant of similar samples staying close, at the price of a less uniform, less discriminative embedding.
# They call this the *uniformity-tolerance dilemma*; a moderate $\tau$ (0.1 to 0.5) usually works best.
#
# The workbench logs both quantities: `uniform` is Wang & Isola's
# $\log \mathbb E\, e^{-2\lVert z_i - z_j\rVert^2}$ on the projections of each batch (lower = more uniform; about
# -3.9 for uniform points in 128 dimensions, 0 for collapse) and `tolerance` is the mean cosine similarity of
# same-class pairs of backbone features on the held-out probe set. The cell below trains three short runs, one
# per $\tau$ (full version: 20 epochs each, about half a minute in all; smoke: 1 epoch each).

# %%
TAUS = [0.05, 0.2, 1.0]
TAU_EPOCHS = 1 if SMOKE else 20
tau_runs = {}
for tau in TAUS:
    t0 = time.time()
    res = workbench.train(method="simclr", dataset="digits", epochs=TAU_EPOCHS, tau=tau, runs_dir=RUNS_DIR,
                          log_every=LOG_EVERY, progress=False)
    tau_runs[tau] = RunReader(res.run_dir)
    print(f"tau={tau}: {res.status}, {TAU_EPOCHS} epoch(s) in {time.time() - t0:.1f} s")

rows = []
for tau, r in tau_runs.items():
    last_vals = r.last_scalars()
    rows.append({"tau": tau, "kNN at init": r.scalar("knn_acc").iloc[0], "kNN final": last_vals["knn_acc"],
                 "loss": last_vals["loss"], "pos_mean": last_vals["pos_mean"], "neg_mean": last_vals["neg_mean"],
                 "neg_var": last_vals["neg_var"], "uniform": last_vals["uniform"],
                 "tolerance": last_vals["tolerance"]})
display(pd.DataFrame(rows).set_index("tau").round(3))

fig = make_subplots(rows=1, cols=3, subplot_titles=("neg_var (per-anchor variance of negatives)",
                                                    "neg_mean", "kNN accuracy"))
for i, (tau, r) in enumerate(tau_runs.items()):
    color = px.colors.qualitative.Plotly[i]
    df = r.scalars(["neg_var", "neg_mean", "knn_acc"])
    for col, key in enumerate(("neg_var", "neg_mean", "knn_acc"), start=1):
        s = df[key].dropna()
        fig.add_scatter(x=s.index, y=s.values, mode="lines+markers", name=f"tau={tau}", legendgroup=str(tau),
                        showlegend=col == 1, line_color=color, row=1, col=col)
fig.update_xaxes(title_text="step")
fig.update_layout(height=360, margin=dict(l=40, r=10, t=40, b=40), legend=dict(orientation="h", y=-0.25))
fig.show()

# %% [markdown]
# **What to look for.** With a large $\tau$ (1.0) every negative is pushed about equally, so the negatives spread
# widely in both directions (the largest `neg_var`) while same-class pairs stay close: high tolerance, and a loss
# that stays far above the others because the softmax is flat. With a small $\tau$ (0.05) the loss only cares
# about the few hardest negatives. In short runs like this one that can first squeeze the embedding into a narrow
# cone (`neg_mean` rises and `uniform` gets worse) before it spreads out again: hardness-awareness makes the
# objective sharper but also harder to optimise, one practical reason why very small temperatures need care
# (longer training, lower learning rate). In between (0.2) training is both fast and stable. Short CPU runs on
# `digits` are noisy, so compare the curves, not the third decimal; try `epochs=100` or another `seed` to see
# what is robust.
#
# Next steps: follow the same runs in the dashboard (`workbench app --runs-dir runs`), or open
# `handle.run_dir` with `RunReader` from another notebook while a run is still training.

# %% [markdown]
# ## 6. The check
#
# What this notebook shows, checked in numbers: the main run's kNN accuracy ends above the random backbone's (the
# evaluation at step 0), and its positives end further ahead of its negatives (`pos_neg_gap` = `pos_mean` -
# `neg_mean`) than at the first logged step.

# %%
knn, gap = reader.scalar("knn_acc"), reader.scalar("pos_neg_gap")
numbers = {"kNN at init": knn.iloc[0], "kNN final": knn.iloc[-1], "pos-neg gap, first step": gap.iloc[0],
           "pos-neg gap, last step": gap.iloc[-1]}
check_finding("01_quickstart", "SimCLR lifts kNN accuracy above the random backbone's and separates the positives "
              "from the negatives", numbers, holds=knn.iloc[-1] > knn.iloc[0] and gap.iloc[-1] > gap.iloc[0],
              smoke=SMOKE)

# %%
for r in [reader, *tau_runs.values()]:
    r.close()
if SMOKE:  # smoke runs live in a temporary folder: remove it
    shutil.rmtree(RUNS_DIR, ignore_errors=True)
