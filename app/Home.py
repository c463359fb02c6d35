"""Workbench dashboard: one page per view, reading the run store only (training runs in its own process).

Started by ``workbench app`` / ``make run``: ``streamlit run app/Home.py -- --runs-dir runs``.
"""
from __future__ import annotations

import streamlit as st

from common import PAGE_TITLES, runs_dir

st.set_page_config(page_title="Contrastive-learning workbench", layout="wide")

PAGES = [st.Page(f"views/{key}.py", title=title, default=key == "runs") for key, title in PAGE_TITLES.items()]
page = st.navigation(PAGES)
st.sidebar.caption(f"runs folder: `{runs_dir()}`")
page.run()
