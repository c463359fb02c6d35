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
# # Pretext tasks: RotNet, and which layer to read
#
# **The paper.** Gidaris, Singh & Komodakis (ICLR 2018), *Unsupervised Representation Learning by Predicting
# Image Rotations*. Every image is shown in its four rotations (0, 90, 180, 270 degrees) and a network learns to
# say which one it sees: a 4-way classification that needs no labels. To recognise that a digit or a cat is upside
# down the network must learn what digits or cats look like, so its features become useful for other tasks.
#
# **The finding reproduced here, in one sentence:** *the middle blocks of a RotNet transfer best; the last block
# specialises in the pretext task (rotations) and is worse.* The paper's CIFAR-10 numbers, a non-linear classifier
# on each frozen block of a 4-block network:
#
# | block | 1 | 2 | 3 | 4 |
# |---|---|---|---|---|
# | accuracy (paper, CIFAR-10) | 85.07 | **89.06** | 86.21 | 61.73 |
#
# This notebook trains RotNet on `digits` (live: the rotation accuracy and the kNN accuracy of every block) and
# puts a linear probe on each block (`workbench.evaluate(..., probes="blocks")`), with the paper's table beside it.
# The paper also compares 2, 4 and 8 rotations (87.46 / 89.06 / 88.51): section 3 trains the other two
# (`rotations=2` and `rotations=8`) and probes them the same way. About 1 minute in full mode on 2 CPU cores;
# `WORKBENCH_SMOKE=1` runs it in seconds.

# %%
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: idle threads sleep, not spin

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from IPython.display import display

import workbench
from workbench.runs import RunReader
from workbench.ui import charts, probe_charts
from workbench.ui.notebook import draw_curves, smoke_mode, step_status, tutorial_runs_dir, watch
from workbench.ui.tutorial_charts import check_finding

SMOKE = smoke_mode()
EPOCHS = 1 if SMOKE else 30
SIZE = dict(subset=300, probe_size=200, batch_size=128) if SMOKE else {}
RUNS_DIR = tutorial_runs_dir("rotnet", SMOKE)  # smoke: a temporary folder; else runs/, where `workbench app` looks
PAPER = {1: 85.07, 2: 89.06, 3: 86.21, 4: 61.73}
PAPER_ROTATIONS = {2: 87.46, 4: 89.06, 8: 88.51}  # Table 2: rotations (0/180; 0/90/180/270; every 45 degrees)
print(f"workbench {workbench.__version__}; smoke={SMOKE}; {EPOCHS} epochs")

# %% [markdown]
# ## 1. Train RotNet and watch every block
#
# At every evaluation the run measures the weighted kNN accuracy of the pooled output of each of the backbone's
# four blocks (`knn_acc_block1..4`) next to the rotation accuracy the network is trained for.

# %%
handle = workbench.start_training(method="rotnet", dataset="digits", epochs=EPOCHS, runs_dir=RUNS_DIR,
                                  progress=False, **SIZE)
live = make_subplots(rows=1, cols=2, subplot_titles=("loss (4-way rotation)", "kNN accuracy of each block"))
live.add_scatter(x=[], y=[], mode="lines", name="loss", line_color="black", row=1, col=1)
for b in range(1, 5):
    live.add_scatter(x=[], y=[], mode="lines+markers", name=f"block {b}", line_color=charts.PALETTE[b - 1], row=1, col=2)
live.update_layout(height=320, margin=dict(l=40, r=10, t=40, b=30), legend=dict(orientation="h", y=-0.2))
KEYS = ["loss"] + [f"knn_acc_block{b}" for b in range(1, 5)]


def refresh(fig, reader):
    df = reader.scalars(KEYS)
    with fig.batch_update():
        draw_curves(fig, df, dict(enumerate(KEYS)))
    return step_status(reader)


result = watch(handle, live, refresh)
with RunReader(handle.run_dir) as reader:  # the final state as a plain figure: it stays drawn where widgets are not
    refresh(live, reader)
live.show()

# %% [markdown]
# ## 2. A linear probe on each block, beside the paper
#
# `workbench.evaluate` freezes the network, pools each block's output to a vector and fits the same linear probe
# (logistic regression, its regularisation chosen on a validation split) on all training labels.

# %%
ev = workbench.evaluate(handle.run_dir, probes="blocks", progress=False)
blocks = ev.table[ev.table.block.notna()].set_index("block")["accuracy"]
blocks.index = blocks.index.astype(int)
probe_charts.block_bars({"RotNet on digits (linear probe)": ev.table.to_dict("records")}).show()
display(pd.DataFrame({"measured (digits, linear)": blocks.round(3),
                      "paper (CIFAR-10, non-linear), %": pd.Series(PAPER)}))

# %% [markdown]
# **What to look for.** The accuracy rises from block 1 and falls again at the last block: the deepest layer has
# become a rotation detector. `digits` is tiny (8x8 images), so the differences are much smaller than on CIFAR-10
# (in the full run that measured this notebook: 0.925, 0.967, 0.978, 0.958; the last block 0.02 below the best,
# against 27 points in the paper), and the early blocks are already strong on such simple images: an untrained
# network's block 1 reaches 0.92 to 0.95, depending on its random weights (the three runs of section 3 all give
# it 0.925). The kNN curves above also put block 3 first, but read block 1 far lower than the linear probe does.
#
# ## 3. Two, four or eight rotations
#
# Two rotations (0 and 180 degrees) make an easier task, eight (every 45 degrees) a harder one, whose in-between
# angles must be interpolated and leave black corners (a shortcut the network can read). The paper (Table 2,
# CIFAR-10, the block-2 classifier) finds four best: 87.46 / **89.06** / 88.51. The next cell trains the other two
# with the same settings and puts the same linear probe on each block.

# %%
tables = {"4 rotations": ev.table.to_dict("records")}
per_block = {4: blocks}
for k in (2, 8):
    run = workbench.train(method="rotnet", dataset="digits", epochs=EPOCHS, rotations=k, runs_dir=RUNS_DIR,
                          progress=False, **SIZE)
    table = workbench.evaluate(run.run_dir, probes="blocks", progress=False).table
    tables[f"{k} rotations"] = table.to_dict("records")
    acc = table[table.block.notna()].set_index("block")["accuracy"]
    acc.index = acc.index.astype(int)
    per_block[k] = acc
    print(f"{k} rotations: rotation accuracy {run.metrics['rotation_acc']:.3f} (chance {1 / k:.3f})")
probe_charts.block_bars({name: tables[name] for name in ("2 rotations", "4 rotations", "8 rotations")}).show()
rotations = pd.DataFrame({f"block {b}": {k: round(per_block[k][b], 3) for k in (2, 4, 8)} for b in blocks.index})
rotations["best block"] = [round(per_block[k].max(), 3) for k in rotations.index]
rotations["last - best"] = [round(per_block[k].iloc[-1] - per_block[k].max(), 3) for k in rotations.index]
rotations["paper (CIFAR-10, block 2), %"] = pd.Series(PAPER_ROTATIONS)
rotations.index.name = "rotations"
display(rotations)

# %% [markdown]
# **What to look for.** On digits the best block scores about the same for two and four rotations and a little
# less for eight (in the full run that measured this notebook: 0.978 / 0.978 / 0.972): the paper's ordering
# (four best) does not show at this scale, where the probes sit near their ceiling. What does show is how the
# task shapes the last block: the more rotations it must tell apart, the further the last block falls behind the
# best one (-0.003 / -0.020 / -0.036), the specialisation of section 2 growing with the pretext task.
#
# **Questions to try.**
# 1. Train longer (`epochs=100`): does the last block fall further behind as it specialises?
# 2. Read the probes from block 2 during training (`feature_block=2`): the kNN accuracy the run logs then follows it.
# 3. With eight rotations, how much of the rotation accuracy comes from the black corners? Compare the rotation
#    accuracy of the 45-degree and the 90-degree images (the run's `rotation_acc` mixes them).
# 4. On digits 6 and 9 are rotations of each other: which rotations does the network confuse?
#
# ## 4. The check
#
# The best block is a middle one (2 or 3), and the last block is below it. The rotation counts are reported with
# it, not checked: their ordering did not reproduce at this scale.

# %%
best = int(blocks.idxmax())
numbers = {f"block {b}": blocks[b] for b in blocks.index}
numbers.update({"best block": best, "best - last": blocks.max() - blocks[blocks.index.max()]})
numbers.update({f"{k} rotations, best block": per_block[k].max() for k in (2, 4, 8)})
check_finding("05_pretext_tasks", "a middle block of RotNet transfers best, the last block is worse", numbers,
              holds=best in (2, 3) and blocks[blocks.index.max()] < blocks.max(), smoke=SMOKE)
if SMOKE:
    shutil.rmtree(RUNS_DIR, ignore_errors=True)
