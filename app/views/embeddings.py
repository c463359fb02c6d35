"""Embeddings of the fixed probe subset, epoch by epoch, in a layout that stays put."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from workbench.ui import charts
from common import REFRESH, page_applies, snapshots, open_reader, pick_run, runs_dir
from layouts import layout, load_snapshot, upscale, warm_umap_in_background

st.header("Embeddings")
st.caption("Backbone features of a fixed probe subset of the held-out split, saved at every evaluation. PCA is "
           "instant; UMAP runs in the background and is cached (the first one on a machine compiles numba, up to a "
           "minute, kept on disk for later processes; opening this page starts that in the background). Each "
           "layout is aligned to the neighbouring epoch's, so points move only when the embedding does. Select "
           "points (lasso or box) to see their images.")
name = pick_run()
method = st.sidebar.radio("projection", ["PCA", "UMAP"], horizontal=True).lower()
colour_by = st.sidebar.radio("colour by", ["label", "k-means cluster", "kNN correct"])


def colours(snap: dict, classes: list[str]) -> tuple[np.ndarray, list[str]]:
    labels = snap["labels"].astype(int)
    if colour_by == "k-means cluster" and "kmeans" in snap:
        k = int(snap["kmeans"].max()) + 1
        return snap["kmeans"].astype(int), [f"cluster {i}" for i in range(k)]
    if colour_by == "kNN correct" and "knn_pred" in snap:
        return (snap["knn_pred"] != labels).astype(int), ["correct", "wrong"]
    names = classes if classes and labels.max() < len(classes) else [str(i) for i in range(labels.max() + 1)]
    return np.where(labels < 0, 0, labels), names if labels.min() >= 0 else ["unlabelled"]


@st.fragment(run_every=REFRESH)
def show(name: str) -> None:
    found = snapshots(name)
    if found is None:
        return
    snaps, classes = found
    steps = snaps["step"].tolist()
    epochs = [info.get("epoch", "?") for info in snaps["info"]]
    run_path = str(Path(runs_dir()) / name)
    follow = st.session_state.get("emb_follow", True)
    step = steps[-1] if follow or st.session_state.get("emb_step") not in steps else st.session_state["emb_step"]
    snap = load_snapshot(run_path, "embeddings", step)
    xy, state = layout(run_path, method, step)
    info = snaps["info"][steps.index(step)]
    title = f"{method.upper()} at step {step} (epoch {epochs[steps.index(step)]}, {len(snap['features'])} points)"
    if "knn_acc" in info:
        title += f" · kNN acc {info['knn_acc']:.3f}"
    errors = [f"{method.upper()} failed: {state.failed[step]}"] if step in state.failed else []
    if xy is None and method == "umap":
        if state.busy is not None:
            st.info(f"UMAP of step {state.busy} is being computed in the background; PCA is shown meanwhile.")
        xy, fallback = layout(run_path, "pca", step)
        errors += [f"PCA failed: {fallback.failed[step]}"] if step in fallback.failed else []
        title = title.replace("UMAP", "PCA (UMAP pending)" if state.busy is not None else "PCA")
    for error in errors:
        st.warning(error)
    if xy is None:  # PCA failed as well: nothing to draw
        return
    colour, names = colours(snap, classes)
    axis = ("PC 1", "PC 2") if title.startswith("PCA") else ("UMAP 1", "UMAP 2")
    fig = charts.embedding_scatter(xy, colour, names, title, axis)
    event = st.plotly_chart(fig, width="stretch", key="embedding", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    rows = sorted({int(p["customdata"]) for p in (event.selection.points if event else []) if "customdata" in p})
    if rows:
        thumbs = load_snapshot(run_path, "probe_images", 0)
        if thumbs is not None:
            imgs = upscale(thumbs["images"][rows[:48]]).transpose(0, 2, 3, 1)
            caps = [names[colour[r]] for r in rows[:48]]
            st.caption(f"{len(rows)} selected (showing {len(imgs)})")
            st.image([im.squeeze() for im in imgs], caption=caps)


if name and page_applies(name, "embeddings", "embeddings"):
    warm_umap_in_background()
    c1, c2 = st.columns([1, 4])
    c1.toggle("follow the latest epoch", value=True, key="emb_follow")
    if not st.session_state["emb_follow"]:
        reader = open_reader(name)
        if reader is not None:
            with reader:
                steps = reader.artifacts("embeddings")["step"].tolist()
            if steps:
                st.session_state["emb_step"] = c2.select_slider("snapshot at step", steps, value=steps[-1])
    show(name)
