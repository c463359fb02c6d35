"""Positive and negative similarity scores: the view of "Improving Contrastive Learning by Visualizing Feature
Transformation", with the whole distributions over time that the paper could not show."""
from __future__ import annotations

import streamlit as st

from workbench.ui import charts
from common import (REFRESH, page_applies, follower, open_reader, pick_overlays, pick_run, scalar_follower,
                    status_line)
from workbench.diagnostics.scores import interpret_scores

st.header("Positive / negative scores")
st.caption("Positive score: cosine similarity of the two views of one image. Negative score: similarity of an "
           "anchor with every other sample it is contrasted with (the rest of the batch, or a method's queue). "
           "Every logged step counts: nothing is sampled away (on a long run a point or a column sums consecutive "
           "steps, as the chart says).")
name = pick_run()
SCORE_KEYS = ("pos_mean", "neg_mean", "neg_var")


@st.fragment(run_every=REFRESH)
def show(name: str, compare: list[str]) -> None:
    reader = open_reader(name)
    f = follower(name)
    if reader is None or f is None:
        return
    with reader:
        status_line(reader)
        meta = reader.meta
        config = meta.get("config") or {}
        tau, momentum, total_steps = config.get("tau"), config.get("moco_momentum"), meta.get("total_steps")
        first = reader.first_value("pos_mean")
    pos, neg = f.histograms("pos"), f.histograms("neg")
    if not len(pos.steps):
        st.info("No score histogram logged yet: the first comes at step 1, then every `log_every` steps.")
        return
    follow = st.session_state.get("follow_latest", True)
    index = len(pos.steps) - 1 if follow else min(st.session_state.get("score_index", 0), len(pos.steps) - 1)
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(charts.pos_neg_histogram(pos, neg, index), width="stretch", key="posneg")
    frames = {n: sf for n in dict.fromkeys([name] + compare) if (sf := scalar_follower(n, SCORE_KEYS)) is not None}
    last = frames[name].last_row(list(SCORE_KEYS)) if name in frames else None
    with c2:
        st.markdown("**Reading the shapes**")
        if last is not None:
            for level, msg in interpret_scores(last["pos_mean"], last["neg_mean"], last["neg_var"], tau, first,
                                               momentum, total_steps):
                getattr(st, level)(msg)
    h1, h2 = st.columns(2)
    h1.plotly_chart(charts.score_heatmap(pos, "positive scores over time", "Blues"), width="stretch", key="hpos")
    h2.plotly_chart(charts.score_heatmap(neg, "negative scores over time", "Reds"), width="stretch", key="hneg")
    k1, k2, k3 = st.columns(3)
    k1.plotly_chart(charts.overlay(frames, "pos_mean", "pos_mean"), width="stretch", key="pm")
    k2.plotly_chart(charts.overlay(frames, "neg_mean", "neg_mean"), width="stretch", key="nm")
    k3.plotly_chart(charts.overlay(frames, "neg_var", "neg_var (per-query variance)"), width="stretch", key="nv")


if name and page_applies(name, "scores", "positive / negative scores"):
    c1, c2 = st.columns([1, 4])
    c1.toggle("follow the latest step", value=True, key="follow_latest")
    if not st.session_state["follow_latest"]:
        f = follower(name)
        steps = f.histograms("pos").steps.tolist() if f else []
        if steps:
            chosen = c2.select_slider("histogram at step", steps, value=steps[-1])
            st.session_state["score_index"] = steps.index(chosen)
    show(name, pick_overlays(name, "scores_compare", "overlay the score curves of"))
