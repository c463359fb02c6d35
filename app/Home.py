"""Workbench dashboard: one page per view, reading the run store only (training runs in its own process).

Started by ``workbench app`` / ``make run``: ``streamlit run app/Home.py -- --runs-dir runs``.
"""
from __future__ import annotations

import streamlit as st

from common import runs_dir

st.set_page_config(page_title="Contrastive-learning workbench", layout="wide")

PAGES = [
    st.Page("views/runs.py", title="Runs", default=True),
    st.Page("views/curves.py", title="Training curves"),
    st.Page("views/scores.py", title="Pos/neg scores"),
    st.Page("views/embeddings.py", title="Embeddings"),
    st.Page("views/clusters.py", title="Clusters"),
    st.Page("views/images.py", title="Images"),
]
page = st.navigation(PAGES)
st.sidebar.caption(f"runs folder: `{runs_dir()}`")
page.run()
