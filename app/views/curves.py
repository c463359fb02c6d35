"""Training curves of one or several runs overlaid (a temperature or momentum sweep side by side)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import streamlit as st

from workbench.ui import charts
from common import REFRESH, pick_runs, runs_dir, scalar_follower
from workbench.diagnostics.geometry import uniformity_reference
from workbench.runs.store import RunReader, RunStoreError

st.header("Training curves")
names = pick_runs()
smoothing = st.sidebar.slider("smoothing (EMA)", 0.0, 0.99, 0.0, 0.01)

GROUPS = [
    ("loss", "loss", None),
    ("knn_acc", "kNN accuracy (held-out)", None),
    ("lr", "learning rate", None),
    ("img_per_s", "throughput (images/s)", None),
    ("align", "alignment  E||z1 - z2||²  (lower: views agree)", None),
    ("uniform", "uniformity  log E exp(-2||zi - zj||²)  (lower: more uniform)", "uniform_ref"),
    ("collapse_std", "std of normalised embeddings (collapse → 0)", "collapse_ref"),
    ("effective_rank", "effective rank of the embedding batch", None),
    ("tolerance", "tolerance (same-class similarity, probe set)", None),
    ("kmeans_nmi", "k-means NMI on the probe set", None),
    # shown only for the methods that log them
    ("rotation_acc", "RotNet: rotation accuracy (the pretext task)", None),
    ("queue_self_frac", "MoCo: queries that met a key of their own image", None),
    ("queue_same_label_frac", "MoCo: queue entries of the query's class (false negatives)", None),
    ("epoch_coverage", "G-SimCLR: fraction of the images an epoch shows", None),
    # DEPICT's early stops: each stage ends once its held-out score has stalled for its patience
    ("pretrain_val_reconstruction", "DEPICT: held-out reconstruction, pre-training", None),
    ("init_val_nmi", "DEPICT: held-out NMI to the first clustering", None),
    ("target_change", "DEPICT: change of the epoch's target (MSE; stops below 1e-7)", {"stop: 1e-7": 1e-7}),
    ("moved_from_init", "DEPICT: images the clustering stage moved off the first clustering", None),
]
SHARES = {"queue_self_frac", "queue_same_label_frac", "epoch_coverage", "moved_from_init"}  # axes from 0, in %
LOG_AXES = {"target_change"}  # spans orders of magnitude down to its threshold: linear, all but the first read as 0


@st.fragment(run_every=REFRESH)
def show(names: list[str]) -> None:
    runs = {}  # run -> ScalarFollower: a long run's older steps come summarised per bucket of steps
    for n in names:
        f = scalar_follower(n, curve_keys(n))
        if f is not None:
            runs[n] = f
    if all(f.empty() for f in runs.values()):
        st.info("No logged steps yet.")
        return
    cols = st.columns(2)
    for i, (key, title, ref) in enumerate(GROUPS):
        if not any(key in f for f in runs.values()):
            continue
        reference = ref
        if isinstance(ref, str):  # a reference level that depends on the embedding size d of the runs shown
            dims = {embedding_dim(n) for n in runs} - {None}
            reference = None
            if len(dims) == 1:
                d = dims.pop()
                if d >= 2:
                    reference = ({f"1/sqrt({d})": d ** -0.5} if ref == "collapse_ref"
                                 else {f"uniform on the sphere, d={d}": uniformity_reference(d)})
                else:
                    cols[i % 2].caption(f"No reference line for {key}: the run's embedding size d={d} is below 2.")
        fig = charts.overlay(runs, key, title, smoothing if key in ("loss", "img_per_s") else 0.0, reference,
                             log_y=key in LOG_AXES)
        if key in SHARES:  # a share of images: from 0, so that 0.5% does not fill the chart as if it were much
            fig.update_yaxes(rangemode="tozero", tickformat=".1%")
        cols[i % 2].plotly_chart(fig, width="stretch", key=f"curve-{key}")
    blocks = {}  # RotNet: the middle blocks transfer best
    for n, f in runs.items():
        for c in f.keys:
            if c.startswith("knn_acc_block"):
                blocks[f"{n} · block {c[len('knn_acc_block'):]}"] = f.series(c)
    if blocks:
        st.plotly_chart(charts.overlay({n: _One(s) for n, s in blocks.items()}, "knn_block",
                                       "kNN accuracy of each backbone block"), width="stretch", key="curve-blocks")


class _One:
    """One series standing for a run in :func:`charts.overlay` (under any key)."""

    def __init__(self, series):
        self._s = series

    def series(self, key):
        return self._s


def curve_keys(name: str) -> tuple[str, ...]:
    """The keys this page draws (only these are read): the groups' keys and RotNet's per-block kNN accuracies."""
    try:
        with RunReader(Path(runs_dir()) / name) as reader:
            blocks = [k for k in reader.scalar_keys() if k.startswith("knn_acc_block")]
    except (RunStoreError, sqlite3.Error):
        blocks = []
    return tuple(k for k, _, _ in GROUPS) + tuple(blocks)


def embedding_dim(name: str) -> int | None:
    """The size d of the embedding the geometry is measured on: the run's ``proj_dim`` where it has one, else the
    size implied by the last logged ``collapse_ref`` (= 1/sqrt(d)); ``None`` when neither is usable. Never raises."""
    collapse_ref = None
    try:
        with RunReader(Path(runs_dir()) / name) as reader:
            collapse_ref = reader.last_scalars().get("collapse_ref")
            config = reader.config
    except (RunStoreError, sqlite3.Error):
        config = {}
    d = config.get("proj_dim")
    if isinstance(d, int) and not isinstance(d, bool):
        return d
    if collapse_ref is not None:
        ref = float(collapse_ref)
        if np.isfinite(ref) and ref > 0:
            return int(round(ref ** -2))
    return None


if names:
    show(names)
