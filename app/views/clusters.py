"""Clusters: assignments matched to labels (Hungarian), ACC / NMI / ARI over time, occupancy, examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from workbench.ui import charts
from common import REFRESH, page_applies, snapshots, open_reader, pick_run, runs_dir, scalar_follower
from layouts import load_array, load_snapshot, upscale
from workbench.data import image_grid
from workbench.diagnostics.clustering import cluster_scores, matched_confusion, occupancy

st.header("Clusters")
st.caption("Methods with clusters of their own (SwAV codes, DEPICT) log their assignments; for the others the "
           "workbench runs k-means (k = number of classes; 10 for images without labels) on the probe features at "
           "every evaluation. Clusters are matched one-to-one to classes by the Hungarian algorithm; NMI uses "
           "scikit-learn's arithmetic normalisation.")
name = pick_run()

SOURCES = {"codes": "the method's own assignments", "kmeans": "k-means on the features"}


@st.fragment(run_every=REFRESH)
def show(name: str) -> None:
    found = snapshots(name)
    if found is None:
        return
    snaps, classes = found
    run_path = str(Path(runs_dir()) / name)
    steps = snaps["step"].tolist()
    latest = load_snapshot(run_path, "embeddings", steps[-1])
    sources = [s for s in SOURCES if s in latest]
    if not sources:
        st.info("This run's snapshots carry no cluster assignments.")
        return
    source = st.session_state.get("cluster_source", sources[0])
    source = source if source in sources else sources[0]
    prefix = "kmeans_" if source == "kmeans" else "cluster_"
    keys = [f"{prefix}{m}" for m in ("acc", "nmi", "ari")]
    f = scalar_follower(name, tuple(keys))  # only these keys, at chart resolution
    c1, c2 = st.columns(2)
    if f is not None and any(k in f for k in keys):
        c1.plotly_chart(charts.curves(f, keys, "clustering quality over time"), width="stretch", key="cq")
    # occupancy: cluster sizes (largest first) per snapshot; a collapse puts everything into one cluster. A method's
    # own assignments may start late (DEPICT's after its first clustering, AC-PIC or k-means): only snapshots that
    # carry them
    found = [(s, load_array(run_path, "embeddings", s, source)) for s in steps]
    found = [(s, a) for s, a in found if a is not None]
    if len(found) < len(steps):
        st.caption(f"{SOURCES[source].capitalize()} start at step {found[0][0]}: the {len(steps) - len(found)} "
                   "earlier snapshots have none (e.g. DEPICT's, before the first clustering, by AC-PIC or k-means, "
                   "that ends its pre-training).")
    steps = [s for s, _ in found]
    occ = []
    for _, a in found:
        k = int(max(a.max() + 1, latest[source].max() + 1))
        occ.append(np.sort(occupancy(a, k))[::-1])
    width = max(len(o) for o in occ)
    occ = np.stack([np.pad(o, (0, width - len(o))) for o in occ])
    c2.plotly_chart(charts.heatmap(np.round(occ.T, 3), steps, [f"#{i + 1}" for i in range(width)],
                                   "cluster sizes (fraction, largest first)", "step", "cluster rank", text=False),
                    width="stretch", key="occ")
    step = st.session_state.get("cluster_step", steps[-1])
    step = step if step in steps else steps[-1]
    snap = load_snapshot(run_path, "embeddings", step)
    labels, assign = snap["labels"].astype(int), snap[source].astype(int)
    if (labels >= 0).all():
        counts, class_ids, order = matched_confusion(labels, assign)
        s = cluster_scores(labels, assign)
        ylabels = [classes[c] if c < len(classes) else str(c) for c in class_ids]
        st.plotly_chart(charts.heatmap(counts, [f"c{c}" for c in order], ylabels,
                                       f"matched confusion at step {step}: ACC {s.acc:.3f} · NMI {s.nmi:.3f} · "
                                       f"ARI {s.ari:.3f}", "cluster (matched order)", "class"),
                        width="stretch", key="conf")
    else:
        order = [int(c) for c in np.unique(assign)]
    thumbs = load_snapshot(run_path, "probe_images", 0)
    if thumbs is not None:
        st.markdown(f"**Examples per cluster at step {step}** (up to 12 each, in matched order)")
        per = 12
        tiles = []
        blank = np.full_like(thumbs["images"][:1], 255)
        for c in order:
            rows = np.flatnonzero(assign == c)[:per]
            picked = thumbs["images"][rows] if len(rows) else blank[:0]
            tiles.append(np.concatenate([picked, np.repeat(blank, per - len(picked), 0)]))
        grid = image_grid(upscale(np.concatenate(tiles)), nrow=per, pad=2)
        st.image(grid.permute(1, 2, 0).numpy(), caption=" · ".join(f"row {i + 1}: cluster {c} "
                                                                   f"({int((assign == c).sum())})"
                                                                   for i, c in enumerate(order)))


if name and page_applies(name, "clusters", "clusters"):
    reader = open_reader(name)
    if reader is not None:
        with reader:
            steps = reader.artifacts("embeddings")["step"].tolist()
        if steps:
            c1, c2 = st.columns([1, 3])
            latest = load_snapshot(str(Path(runs_dir()) / name), "embeddings", steps[-1])
            c1.radio("assignments", [s for s in SOURCES if s in latest], format_func=SOURCES.get,
                     key="cluster_source")
            st.session_state["cluster_step"] = c2.select_slider("snapshot at step", steps, value=steps[-1])
    show(name)
