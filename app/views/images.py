"""Images: the augmented views a run trains on (and, for low-light runs, input / enhanced / reference)."""
from __future__ import annotations

import streamlit as st

from common import open_reader, pick_run

st.header("Images")
name = pick_run()
if name:
    reader = open_reader(name)
    if reader is not None:
        with reader:
            views = reader.artifacts("views")
            triplets = reader.artifacts("enhanced")
        if views.empty and triplets.empty:
            st.info("This run has logged no images yet.")
        for _, row in views.iterrows():
            rows = row["info"].get("rows", [])
            st.image(row["path"], caption=f"step {row['step']}: rows are " + ", ".join(rows), width="stretch")
        if triplets.empty:
            st.caption("Low-light enhancement runs show input / enhanced / reference side by side here.")
        for _, row in triplets.iterrows():
            st.image(row["path"], caption=f"step {row['step']}: input / enhanced / reference", width="stretch")
