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
# # Clustering without labels: SwAV, DEPICT and G-SimCLR against k-means
#
# Three papers of the workbench group images without any label, each in its own way:
#
# * **SwAV** (Caron et al., NeurIPS 2020) scores each embedding against $K$ learnable prototypes and trains the
#   two views of an image to predict each other's **codes**. The codes come from Sinkhorn-Knopp: the batch is
#   spread *equally* over the prototypes, with an entropy weight $\varepsilon$,
#   $Q = \mathrm{diag}(u)\,\exp(C^\top Z / \varepsilon)\,\mathrm{diag}(v)$. The equal partition is what stops
#   every image from landing on one prototype.
# * **DEPICT** (Ghasedi Dizaji et al., ICCV 2017) trains an autoencoder, clusters its embedding, and then trains
#   a softmax head towards a *balanced* target $q_{ik} \propto p_{ik}^2 / \sum_i p_{ik}$ (relative entropy
#   minimisation), reconstruction alongside.
# * **G-SimCLR** (Chakraborty et al., 2020) clusters an autoencoder's embedding with k-means and builds SimCLR's
#   batches so that no two images of one pseudo-cluster meet as negatives. It learns a representation; its
#   clusters are k-means on that representation.
#
# The yardstick is k-means on the raw pixels. Scores: ACC (clusters matched one-to-one to classes by the
# Hungarian algorithm), NMI and ARI.
#
# **The finding, in one sentence:** *DEPICT's clusters beat k-means on raw pixels by a wide margin; SwAV keeps all
# its prototypes in use thanks to the equal partition, and with a too-large $\varepsilon$ its codes become uniform,
# the loss sits at $\ln K$ and the run warns: collapse.*
#
# Four short runs on `digits`, about 2 minutes in full mode on 2 CPU cores; `WORKBENCH_SMOKE=1` runs in seconds.

# %%
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: idle threads sleep, not spin

import numpy as np
import pandas as pd
from plotly.subplots import make_subplots
from IPython.display import display

import workbench
from workbench.data import load_dataset
from workbench.diagnostics.clustering import cluster_scores, kmeans, matched_confusion
from workbench.runs import RunReader
from workbench.ui import charts
from workbench.ui.notebook import draw_curves, smoke_mode, step_status, tutorial_runs_dir, watch
from workbench.ui.tutorial_charts import check_finding, image_rows

SMOKE = smoke_mode()
SIZE = dict(subset=300, probe_size=200, batch_size=128) if SMOKE else {}
EPOCHS = dict(swav=1, depict=2, gsimclr=2) if SMOKE else dict(swav=30, depict=120, gsimclr=30)
RUNS_DIR = tutorial_runs_dir("clustering", SMOKE)  # smoke: a temporary folder; else runs/, where `workbench app` looks
print(f"workbench {workbench.__version__}; smoke={SMOKE}; epochs {EPOCHS}; runs in {Path(RUNS_DIR).resolve()}")

# %% [markdown]
# ## 1. SwAV, watched live: the loss against $\ln K$ and the prototypes in use
#
# $\ln K$ is the loss of a prediction that gives every prototype the same probability. A healthy run falls below
# it; `prototype_usage` is the share of the $K$ prototypes that are some image's best match in the batch.

# %%
def live_figure(title):
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{title}: loss", "prototype_usage"))
    fig.add_scatter(x=[], y=[], mode="lines", name="loss", line_color="black", row=1, col=1)
    fig.add_scatter(x=[], y=[], mode="lines", name="ln K", line_color="grey", line_dash="dash", row=1, col=1)
    fig.add_scatter(x=[], y=[], mode="lines", name="prototype_usage", line_color=charts.PALETTE[0], row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    return fig.update_layout(height=300, margin=dict(l=40, r=10, t=40, b=30), legend=dict(orientation="h", y=-0.2))


def refresh(fig, reader):
    with fig.batch_update():
        draw_curves(fig, reader.scalars(["loss", "ln_k", "prototype_usage"]),
                    {0: "loss", 1: "ln_k", 2: "prototype_usage"})
    return step_status(reader)


runs, t0 = {}, time.time()
handle = workbench.start_training(method="swav", dataset="digits", epochs=EPOCHS["swav"], runs_dir=RUNS_DIR,
                                  log_every=2, progress=False, **SIZE)
swav_fig = live_figure("SwAV, eps 0.05")
result = watch(handle, swav_fig, refresh)
runs["SwAV"] = handle.run_dir
print(f"SwAV: {result.status} ({time.time() - t0:.0f} s so far)")

# %% [markdown]
# ## 2. Provoke the collapse: a too-large $\varepsilon$
#
# With $\varepsilon = 10$ the exponent $C^\top Z / \varepsilon$ is nearly 0 for every prototype: Sinkhorn returns
# uniform codes, every view is trained to predict "all prototypes equally", and the loss sits at $\ln K$. The
# run's event log says so after 50 such steps.

# %%
handle = workbench.start_training(method="swav", dataset="digits", swav_eps=10.0, epochs=EPOCHS["swav"],
                                  runs_dir=RUNS_DIR, log_every=2, progress=False, **SIZE)
bad_fig = live_figure("SwAV, eps 10")
result = watch(handle, bad_fig, refresh)
runs["SwAV eps 10"] = handle.run_dir
with RunReader(runs["SwAV eps 10"]) as r:
    events = r.events()
    bad_last = r.last_scalars()
warned = events[events["level"] == "warning"] if "level" in events else events.iloc[:0]
for message in warned["message"]:
    print("warning:", message)
print(f"last loss {bad_last['loss']:.4f}, ln K = {bad_last['ln_k']:.4f}")

# %% [markdown]
# The two SwAV runs side by side, as plain figures (they stay drawn where the live widgets are not):

# %%
swav_frames = {}
for name in ("SwAV", "SwAV eps 10"):
    with RunReader(runs[name]) as r:
        swav_frames[name] = r.scalars(["loss", "ln_k", "prototype_usage"])
charts.overlay(swav_frames, "loss", "SwAV loss: eps 0.05 against eps 10",
               reference={"ln K": float(bad_last["ln_k"])}).show()
charts.overlay(swav_frames, "prototype_usage", "share of the prototypes that are some image's best match").show()

# %% [markdown]
# ## 3. DEPICT and G-SimCLR
#
# Both start with an autoencoder (reconstruction only), then cluster its embedding: DEPICT initialises its head
# from that clustering and moves on to its balanced targets; G-SimCLR uses it to build its batches and trains
# SimCLR. Each run's `stage` curve shows where it is.

# %%
def stage_figure(title):
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{title}: loss", "stage (the lowest: the autoencoder)"))
    fig.add_scatter(x=[], y=[], mode="lines", name="loss", line_color="black", row=1, col=1)
    fig.add_scatter(x=[], y=[], mode="lines", name="stage", line_color=charts.PALETTE[1], row=1, col=2)
    return fig.update_layout(height=280, margin=dict(l=40, r=10, t=40, b=30), showlegend=False)


def refresh_stage(fig, reader):
    with fig.batch_update():
        draw_curves(fig, reader.scalars(["loss", "stage"]), {0: "loss", 1: "stage"})
    return step_status(reader)


for name, method in (("DEPICT", "depict"), ("G-SimCLR", "gsimclr")):
    handle = workbench.start_training(method=method, dataset="digits", epochs=EPOCHS[method], runs_dir=RUNS_DIR,
                                      log_every=2, progress=False, **SIZE)
    result = watch(handle, stage_figure(name), refresh_stage)
    runs[name] = handle.run_dir
    print(f"{name}: {result.status} ({time.time() - t0:.0f} s so far)")
    with RunReader(handle.run_dir) as r:  # the finished run as a plain figure
        charts.curves(r.scalars(["loss", "stage"]), ["loss", "stage"], f"{name}: loss and stage").show()

# %% [markdown]
# ## 4. Against k-means on the raw pixels
#
# Every run's last evaluation clusters the same held-out images (the probe set): SwAV and DEPICT by their own
# assignments (the best prototype, the head's argmax), and every run also by k-means (10 clusters) on its
# backbone features, the only clusters G-SimCLR has. The raw-pixel baseline clusters those same images.

# %%
bundle = load_dataset("digits")
readers = {name: RunReader(d) for name, d in runs.items()}
snaps = {name: r.snapshot("embeddings") for name, r in readers.items()}
first = next(iter(snaps.values()))
labels, index = first["labels"].astype(int), first["index"]
raw = bundle.test.images[index].flatten(1).float().numpy() / 255
assignments = {"k-means on raw pixels": kmeans(raw, 10, normalize=False)}
for name, snap in snaps.items():
    if "codes" in snap.arrays:
        assignments[f"{name} (its own)"] = snap["codes"]
    assignments[f"{name} (k-means on features)"] = snap["kmeans"]
scores = pd.DataFrame({name: cluster_scores(labels, a).as_dict("") for name, a in assignments.items()}).T
scores["clusters used"] = [len(np.unique(a)) for a in assignments.values()]
display(scores.round(3))

# %% [markdown]
# **Matched confusion matrices.** Rows are classes, columns clusters, reordered so that each cluster sits on the
# diagonal under the class it was matched to: what is off the diagonal is what the clustering confused
# (typically 1 / 7, 3 / 8 / 9, 4 / 9 on digits).

# %%
shown = ["k-means on raw pixels", "SwAV (its own)", "DEPICT (its own)", "G-SimCLR (k-means on features)"]
for name in shown:
    counts, class_ids, order = matched_confusion(labels, assignments[name])
    s = scores.loc[name]
    charts.heatmap(counts, [f"c{c}" for c in order], [str(c) for c in class_ids],
                   f"{name}: ACC {s['acc']:.3f} · NMI {s['nmi']:.3f} · ARI {s['ari']:.3f}",
                   "cluster (matched order)", "class").update_layout(height=360).show()

# %% [markdown]
# **Cluster examples.** Eight images of each DEPICT cluster, in matched order (row i: the cluster matched to
# class i).

# %%
images = bundle.test.images[index].numpy()
_, class_ids, order = matched_confusion(labels, assignments["DEPICT (its own)"])
rows = {f"class {k}: c{c}": images[assignments["DEPICT (its own)"] == c][:8] for k, c in zip(class_ids, order)}
image_rows(rows, "DEPICT: eight images of each cluster", per_row=8).update_layout(height=560, width=640).show()

# %% [markdown]
# **How much did DEPICT's clustering stage change?** Every epoch of that stage logs `moved_from_init`: the share of
# the training images whose assignment is no longer the label the first clustering (AC-PIC on the autoencoder's
# embedding) gave them.

# %%
moved = readers["DEPICT"].scalar("moved_from_init")
if len(moved):
    print(f"DEPICT moved {moved.iloc[-1]:.1%} of the training images off its first clustering "
          f"(the largest share during that stage: {moved.max():.1%})")
else:  # a run too short to reach the targets (the smoke test's two epochs)
    print("DEPICT's run ended before its clustering stage built a target: nothing to compare yet")

# %% [markdown]
# **What to look for.** SwAV's loss falls below $\ln K$ while its prototypes stay in use; with $\varepsilon = 10$
# it never leaves $\ln K$ and the run warns. DEPICT, built to cluster, is far ahead of raw k-means (in the full run
# that measured this notebook: ACC 0.850 against 0.658). SwAV's own assignments are not, at this scale: it has
# $K = 30$ prototypes for 10 classes, so several prototypes share a digit and ACC, which matches only ten of them,
# counts the rest as errors (0.39; NMI 0.60 against raw k-means' 0.64), while k-means with 10 clusters on its
# features is ahead of the pixels (0.725); so is k-means on G-SimCLR's features after 30 epochs (0.817), though
# behind DEPICT's own head. DEPICT's ACC is limited by the first clustering of its autoencoder embedding: its
# balanced targets sharpen the clusters and move few images to another one (`moved_from_init` above: 2.6% in the
# full run). k-means on DEPICT's backbone features (0.914 in that run) is ahead of its own head, which clusters the
# 10-unit tanh embedding the paper puts on top of them.
#
# **Questions to try.**
# 1. SwAV with `prototypes=10`: does ACC rise? What happens to `prototype_usage`?
# 2. Find the largest $\varepsilon$ that still learns (try 0.5, 1, 2). What do the codes look like at the edge?
# 3. DEPICT with `pretrain_epochs=20, epochs=60`: how much does a shorter-trained autoencoder cost the first
#    clustering? Compare the runs' `clustering begins` events and the final ACC.
# 4. Which digits does each method confuse, and are they the ones raw k-means confuses?
#
# ## 5. The check
#
# With $\varepsilon = 10$ the last loss is within 1 % of $\ln K$ and the run warned; the healthy SwAV ends more
# than 10 % below $\ln K$ with at least half of its prototypes in use; DEPICT beats k-means on raw pixels in ACC
# and NMI. (SwAV's and G-SimCLR's scores are printed beside, not checked.)

# %%
swav_last = readers["SwAV"].last_scalars()
numbers = {"SwAV loss": swav_last["loss"], "ln K": swav_last["ln_k"],
           "SwAV prototype_usage": swav_last["prototype_usage"], "eps 10 loss": bad_last["loss"],
           "eps 10 warnings": len(warned)}
numbers.update({f"{name} {k}": scores.loc[name, k] for name in shown for k in ("acc", "nmi")})
raw_scores = scores.loc["k-means on raw pixels"]
holds = (abs(bad_last["loss"] - bad_last["ln_k"]) < 0.01 * bad_last["ln_k"] and len(warned) > 0
         and swav_last["loss"] < 0.9 * swav_last["ln_k"] and swav_last["prototype_usage"] >= 0.5
         and scores.loc["DEPICT (its own)", "nmi"] > raw_scores["nmi"]
         and scores.loc["DEPICT (its own)", "acc"] > raw_scores["acc"])
check_finding("04_clustering", "DEPICT beats raw k-means; SwAV uses its prototypes, and a too-large Sinkhorn eps "
              "collapses it to ln K and the run warns", numbers, holds=holds, smoke=SMOKE)
for r in readers.values():
    r.close()
if SMOKE:
    shutil.rmtree(RUNS_DIR, ignore_errors=True)
