"""Embedding layouts for the app: PCA at once, UMAP in a background thread, both cached per process.

Each layout is aligned to the nearest already computed snapshot of the same run (Procrustes + UMAP initialised
from it, see ``workbench.diagnostics.projection``), so sliding over epochs keeps points where they were.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from workbench.diagnostics.projection import pca_2d, umap_2d, warm_umap
from workbench.runs import RunReader


def run_created(run_path: str) -> float:
    """When the run was created: part of every cache key, so a deleted and re-made run of the same name is new."""
    try:
        with RunReader(run_path) as r:
            return float(r.meta.get("created") or 0)
    except Exception:
        return 0.0


def load_snapshot(run_path: str, kind: str, step: int) -> dict[str, np.ndarray] | None:
    return _load_snapshot(run_path, run_created(run_path), kind, step)


@st.cache_data(max_entries=64, show_spinner=False)
def _load_snapshot(run_path: str, created: float, kind: str, step: int) -> dict[str, np.ndarray] | None:
    """Snapshot side files never change once written: cache them by (run, creation time, kind, step)."""
    with RunReader(run_path) as r:
        snap = r.snapshot(kind, step)
    return None if snap is None else dict(snap.arrays)


def load_array(run_path: str, kind: str, step: int, key: str) -> np.ndarray | None:
    """One array of a snapshot (``.npz`` members load lazily: the features are not read for the assignments)."""
    return _load_array(run_path, run_created(run_path), kind, step, key)


@st.cache_data(max_entries=1024, show_spinner=False)
def _load_array(run_path: str, created: float, kind: str, step: int, key: str) -> np.ndarray | None:
    with RunReader(run_path) as r:
        df = r.artifacts(kind)
    df = df[df["step"] == step]
    if df.empty:
        return None
    with np.load(df.iloc[-1]["path"]) as z:
        return z[key] if key in z.files else None


def upscale(images: np.ndarray, min_side: int = 48) -> np.ndarray:
    """Nearest-neighbour enlargement of tiny thumbnails ``(N, C, H, W)`` so the browser does not blur them."""
    k = max(1, min_side // images.shape[-1])
    return images.repeat(k, axis=-2).repeat(k, axis=-1)


@dataclass
class LayoutState:
    layouts: dict[int, np.ndarray] = field(default_factory=dict)
    busy: int | None = None  # the step being computed in the background
    seconds: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # step -> why its layout failed (not retried)
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource
def _states() -> dict[tuple[str, str], LayoutState]:
    return {}


def _nearest(layouts: dict[int, np.ndarray], step: int) -> np.ndarray | None:
    if not layouts:
        return None
    return layouts[min(layouts, key=lambda s: (abs(s - step), -s))]


@st.cache_resource(show_spinner=False)
def warm_umap_in_background() -> threading.Thread:
    """Once per process, when the Embeddings page first shows: compile UMAP's numba functions (or load them from
    numba's on-disk cache, see ``projection.cache_umap_compilation``) in a background thread, on random data, so
    that a UMAP asked for a little later does not wait for the compiler."""
    def warm() -> None:
        try:
            warm_umap()
        except Exception:  # noqa: BLE001  (a failed warm-up only means the first real layout compiles)
            pass

    thread = threading.Thread(target=warm, daemon=True, name="umap-warm-up")
    thread.start()
    return thread


def _work(state: LayoutState, method: str, step: int, features: np.ndarray, previous: np.ndarray | None) -> None:
    t0 = time.perf_counter()
    try:
        xy = pca_2d(features, previous) if method == "pca" else umap_2d(features, previous)
        with state.lock:
            state.layouts[step] = xy
            state.seconds[step] = time.perf_counter() - t0
    except Exception as e:  # shown on the page; the PCA view stays usable; the same features would fail again
        with state.lock:
            state.failed[step] = f"{type(e).__name__}: {e}"
    finally:
        with state.lock:
            state.busy = None


def layout(run_path: str, method: str, step: int, background: bool = True) -> tuple[np.ndarray | None, LayoutState]:
    """The layout of snapshot ``step``; for UMAP in the background, ``None`` until the thread has finished."""
    state = _states().setdefault((run_path, run_created(run_path), method), LayoutState())
    in_background = method == "umap" and background
    with state.lock:
        if step in state.layouts:
            return state.layouts[step], state
        if step in state.failed or (in_background and state.busy is not None):
            return None, state
    features = load_array(run_path, "embeddings", step, "features").astype(np.float32)  # may raise: before busy
    with state.lock:
        previous = _nearest(state.layouts, step)
        if in_background:
            if state.busy is not None:
                return None, state
            state.busy = step
    if in_background:
        threading.Thread(target=_work, args=(state, method, step, features, previous), daemon=True,
                         name=f"umap-{step}").start()
        return None, state
    _work(state, method, step, features, previous)
    return state.layouts.get(step), state
