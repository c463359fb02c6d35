"""Images: the views a run trains on; each task with images of its own has its view here (low-light runs:
input / enhanced / reference, a before/after wipe, PSNR/SSIM over training and enhancing an upload)."""
from __future__ import annotations

import streamlit as st

import enhancement
from common import open_reader, pick_run, run_task

st.header("Images")
name = pick_run()

VIEWS = {"lowlight": enhancement.show}  # task -> its Images view; other tasks show the views they train on


def training_images(reader) -> None:
    views = reader.artifacts("views")
    if views.empty:
        st.info("This run has logged no images yet.")
    for _, row in views.iterrows():
        rows = row["info"].get("rows", [])
        st.image(row["path"], caption=f"step {row['step']}: rows are " + ", ".join(rows), width="stretch")


if name:
    task = run_task(name)
    if task is not None and task.name in VIEWS:
        VIEWS[task.name](name, training_images)
    elif task is not None:
        st.caption("The augmented views this run trains on. Low-light enhancement runs (`tml`, `zerodce`) show "
                   "input / enhanced / reference here.")
        reader = open_reader(name)
        if reader is not None:
            with reader:
                training_images(reader)
