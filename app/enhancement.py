"""The Images page of low-light enhancement runs: input / enhanced / reference side by side with PSNR/SSIM, a
before/after wipe, the quality curves over training, and enhancing an uploaded image with the run's checkpoint."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from common import REFRESH, open_reader, runs_dir, status_line
from layouts import load_snapshot
from workbench.runs.store import CHECKPOINT
from workbench.ui import charts


def hwc(images: np.ndarray, i: int) -> np.ndarray:
    return np.ascontiguousarray(images[i].transpose(1, 2, 0))


@st.cache_resource(max_entries=4, show_spinner="Loading the run's checkpoint ...")
def enhancer(checkpoint: str, mtime: float):
    from workbench.lowlight.enhance import load_enhancer

    return load_enhancer(Path(checkpoint).parent.parent, "cpu")


def quality_curves(reader) -> None:
    keys = [k for k in ("psnr", "psnr_pm", "psnr_input", "ssim", "ssim_pm", "ssim_input", "lol_psnr",
                        "lol_psnr_input", "lol_ssim", "lol_ssim_input") if k in reader.scalar_keys()]
    df = reader.scalars(keys)
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.curves(df, [k for k in keys if "psnr" in k], "PSNR on held-out pairs", "dB"),
                    width="stretch")
    c2.plotly_chart(charts.curves(df, [k for k in keys if "ssim" in k], "SSIM on held-out pairs"), width="stretch")


@st.fragment(run_every=REFRESH)
def lowlight_results(name: str) -> None:
    reader = open_reader(name)
    if reader is None:
        return
    with reader:
        status_line(reader)
        snaps = reader.artifacts("lowlight")
        if snaps.empty:
            st.info("No evaluation yet: the first is made before training starts.")
            return
        quality_curves(reader)
    steps = snaps["step"].tolist()
    chosen = st.session_state.get("ll_step")
    step = steps[-1] if st.session_state.get("ll_follow", True) or chosen not in steps else chosen
    info = snaps["info"][steps.index(step)]
    snap = load_snapshot(str(Path(runs_dir()) / name), "lowlight", step)
    n = len(snap["input"])
    st.markdown(f"**Step {step}** (epoch {info.get('epoch', '?')}): held-out synthetic pairs, mean PSNR "
                f"{info.get('psnr', float('nan')):.2f} dB (dark input {info.get('psnr_input', float('nan')):.2f}), "
                f"SSIM {info.get('ssim', float('nan')):.3f} (input {info.get('ssim_input', float('nan')):.3f})")
    i = st.session_state.get("ll_image", 0) % n
    cols = st.columns(4 if "first_stage" in snap else 3)
    cols[0].image(hwc(snap["input"], i), caption=f"input · PSNR {snap['psnr_input'][i]:.2f}", width="stretch")
    if "first_stage" in snap:
        cols[1].image(hwc(snap["first_stage"], i), caption=f"{info['stages'][0]} (first stage)", width="stretch")
    cols[-2].image(hwc(snap["enhanced"], i), caption=f"enhanced · PSNR {snap['psnr'][i]:.2f} · SSIM "
                                                     f"{snap['ssim'][i]:.3f}", width="stretch")
    cols[-1].image(hwc(snap["reference"], i), caption="reference (normal light)", width="stretch")
    fraction = st.session_state.get("ll_wipe", 50) / 100
    st.image(charts.before_after(hwc(snap["input"], i), hwc(snap["enhanced"], i), fraction),
             caption="before / after: enhanced left of the line, input right of it", width=480)


def upload_box(name: str) -> None:
    st.subheader("Enhance your own image")
    checkpoint = Path(runs_dir()) / name / CHECKPOINT
    if not checkpoint.exists():
        st.info("This run has no checkpoint yet (one is saved at the end of every epoch).")
        return
    upload = st.file_uploader("a low-light image", type=["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"])
    if upload is None:
        return
    result = enhance_upload(str(checkpoint), checkpoint.stat().st_mtime, upload.name, upload.getvalue())
    if isinstance(result, str):
        st.error(result)
        return
    before, after, png = result
    wipe = st.slider("before / after", 0, 100, 50, key="upload_wipe") / 100
    st.image(charts.before_after(before, after, wipe), caption=f"{upload.name}: enhanced left, input right",
             width="stretch")
    st.download_button("Download the enhanced image", png, f"{Path(upload.name).stem}_enhanced.png", "image/png")


@st.cache_data(max_entries=4, show_spinner="Enhancing ...")
def enhance_upload(checkpoint: str, mtime: float, name: str, data: bytes):
    """``(input, enhanced, enhanced as PNG bytes)`` (uint8 (H, W, 3) arrays) for an uploaded file, or the error to
    show. Cached by checkpoint and file contents: moving the wipe slider does not run the network again."""
    from workbench.data.imageio import ImageReadError, read_image, save_image
    from workbench.lowlight.enhance import enhance_array

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        try:
            image = read_image(path)
        except ImageReadError as e:
            return str(e).replace(str(path), name)
        try:
            out = enhance_array(enhancer(checkpoint, mtime), image)
        except Exception as e:  # a bad checkpoint or an image too large for memory: say so, keep the page
            return f"Could not enhance {name}: {type(e).__name__}: {e}"
        png = save_image(Path(tmp) / "enhanced.png", out).read_bytes()
    to8 = lambda a: (np.clip(a, 0, 1) * 255).round().astype(np.uint8)  # noqa: E731  (as save_image rounds)
    return to8(image), to8(out), png


def show(name: str, training_images) -> None:
    """The page for low-light run ``name``; ``training_images(reader)`` draws the pairs it trains on."""
    reader = open_reader(name)
    if reader is None:
        return
    with reader:
        steps = reader.artifacts("lowlight")["step"].tolist()
    c1, c2, c3 = st.columns([1, 2, 2])
    c1.toggle("follow the latest", value=True, key="ll_follow")
    if steps and not st.session_state["ll_follow"]:
        st.session_state["ll_step"] = c2.select_slider("evaluation at step", steps, value=steps[-1])
    c3.number_input("image", 0, 99, 0, key="ll_image")
    st.slider("before / after wipe (%)", 0, 100, 50, key="ll_wipe")
    lowlight_results(name)
    upload_box(name)
    with st.expander("Training pairs"):
        r = open_reader(name)
        if r is not None:
            with r:
                training_images(r)
