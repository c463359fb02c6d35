"""Workbench dashboard: runs, live loss, pos/neg score distributions, kNN accuracy and embeddings.

Started by ``workbench app`` / ``make run``; reads the run store only (never trains in this process).
"""
from __future__ import annotations

import argparse
import sys

import streamlit as st

from workbench.diagnostics.projection import pca_2d
from workbench.runs import RunReader, RunStoreError, list_runs

import charts

st.set_page_config(page_title="Contrastive-learning workbench", layout="wide")


def runs_dir_from_argv() -> str:
    p = argparse.ArgumentParser()
    p.add_argument("--runs-dir", default="runs")
    args, _ = p.parse_known_args(sys.argv[1:])
    return args.runs_dir


RUNS_DIR = st.session_state.setdefault("runs_dir", runs_dir_from_argv())

st.title("Contrastive-learning workbench")


@st.fragment(run_every="2s")
def runs_table():
    runs = list_runs(RUNS_DIR)
    if runs.empty:
        st.info(f"No runs under `{RUNS_DIR}/` yet. Start one with `workbench train` (or `make run`).")
        return
    view = runs[["name", "method", "dataset", "status", "epoch", "epochs", "step", "loss", "knn_acc"]].copy()
    st.dataframe(view, hide_index=True, width="stretch")
    for _, r in runs[runs["problem"].astype(bool)].iterrows():
        st.warning(f"`{r['name']}` cannot be read: {r['problem']}")


runs_table()
names = list_runs(RUNS_DIR)
names = names[names["status"] != "unreadable"]["name"].tolist()
if not names:
    st.stop()
choice = st.selectbox("Run", names[::-1], key="run")


@st.fragment(run_every="2s")
def live_run(name: str):
    try:
        reader = RunReader(f"{RUNS_DIR}/{name}")
    except RunStoreError as e:
        st.error(f"Cannot open run `{name}`: {e}")
        return
    with reader:
        status = reader.status()
        meta = reader.meta
        total = meta.get("total_steps") or 0
        st.caption(f"**{status.state}** · step {status.step}/{total} · epoch {meta.get('epoch', 0)}/"
                   f"{(meta.get('config') or {}).get('epochs', '?')} · {meta.get('method')} on {meta.get('dataset')}"
                   f" · tau {(meta.get('config') or {}).get('tau')} · device {meta.get('device')}")
        if total:
            st.progress(min(1.0, status.step / total))
        if status.state == "failed":
            st.error(f"The run failed: {status.error}")
        elif status.state == "stale":
            st.warning(f"The training process stopped answering {status.heartbeat_age:.0f} s ago "
                       "(killed or crashed); what it logged is below.")
        df = reader.scalars()
        if df.empty:
            st.info("The run has started; waiting for its first logged step…")
            return
        pos, neg = reader.histograms("pos"), reader.histograms("neg")
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.curves(df, ["loss"], "loss"), width="stretch", key="loss")
        hist_step = int(pos.steps[-1]) if len(pos.steps) else None
        c2.plotly_chart(charts.pos_neg_histogram(pos, neg, hist_step), width="stretch", key="posneg")
        c3, c4 = st.columns(2)
        c3.plotly_chart(charts.curves(df, ["pos_mean", "neg_mean", "neg_var"], "score statistics"),
                        width="stretch", key="scores")
        c4.plotly_chart(charts.curves(df, ["knn_acc"], "kNN accuracy (held-out)"), width="stretch",
                        key="knn")
        snap = reader.snapshot("embeddings")
        if snap is not None:
            xy = pca_2d(snap["features"])
            st.plotly_chart(charts.embedding_scatter(xy, snap["labels"], meta.get("classes") or [],
                                                     f"embeddings (PCA) at step {snap.step}"),
                            width="stretch", key="emb")


live_run(choice)
