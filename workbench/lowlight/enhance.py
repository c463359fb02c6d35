"""Enhance user images with a trained low-light run (``workbench enhance``, the app's upload box).

A run's checkpoint holds its configuration and weights; :func:`load_enhancer` rebuilds the method from them without
the training data. Each image is read with :func:`workbench.data.imageio.read_image` (grayscale, RGBA, 16-bit and
palette images converted; decompression bombs, truncated and non-image files refused with the file's name) and
enhanced at its own size (the networks pad internally to their stride and crop back).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from workbench.config import ConfigError
from workbench.data.imageio import DEFAULT_MAX_PIXELS, iter_images, list_images, save_image
from workbench.engine.config import TrainConfig
from workbench.engine.device import resolve_device
from workbench.lowlight.methods import LowLightMethod
from workbench.methods import METHODS
from workbench.runs.store import CHECKPOINT


def load_enhancer(run_dir: str | os.PathLike, device: str = "cpu"):
    """The low-light method of a run, with its last checkpoint's weights, in eval mode on ``device``."""
    path = Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise ConfigError(f"no run at {run_dir} (`workbench runs --runs-dir DIR` lists the runs)")
    if not path.exists():
        raise ConfigError(f"run {run_dir}: no checkpoint at {path} (a run saves one at the end of each epoch)")
    dev = resolve_device(device)
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
        if not isinstance(state, dict) or not {"config", "model"} <= set(state):
            raise ValueError("it has no config and model")
        cfg = TrainConfig.from_dict(state["config"])
    except Exception as e:  # a truncated, empty or foreign file, or a folder in its place
        why = str(e).splitlines()[0].split(". ")[0][:160] if str(e) else type(e).__name__
        raise ConfigError(f"run {run_dir}: {path} is not a readable checkpoint ({why})") from e
    if not issubclass(METHODS[cfg.method], LowLightMethod):
        low = sorted(n for n, cls in METHODS.items() if issubclass(cls, LowLightMethod))
        raise ConfigError(f"run {run_dir} trained {cfg.method!r}, which does not enhance images; choose a run of "
                          f"{' or '.join(low)}")
    method = METHODS[cfg.method].from_config(cfg, None)
    try:
        method.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ConfigError(f"run {run_dir}: the checkpoint does not fit this version's {cfg.method} model "
                          f"({str(e).splitlines()[0]})") from e
    return method.to(dev).eval()


TILE, OVERLAP = 512, 64  # pixels: memory is bounded by one tile whatever the image size


def _starts(size: int, tile: int, step: int) -> list[int]:
    """Tile origins along one axis: every ``step`` pixels, the last one flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """Blending weights along one axis of a tile: rising over the overlap (except at the image's edge), flat inside."""
    w = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        ramp = (np.arange(n, dtype=np.float32) + 0.5) / n
        if not first:
            w[:n] = ramp
        if not last:
            w[-n:] = ramp[::-1]
    return w


@torch.no_grad()
def enhance_array(method, image: np.ndarray, tile: int = TILE, overlap: int = OVERLAP) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> the enhanced (H, W, 3) float32 in [0, 1].

    Images larger than ``tile`` x ``tile`` are enhanced in overlapping tiles blended with linear ramps over the
    ``overlap``, so memory stays that of one tile (a 4000 x 4000 image took 6.6 GB in one piece). Zero-DCE is
    local and its tiles agree with the whole-image result up to the border effects the overlap hides; TML's
    global dynamic convolution sees each tile's own context, so tiles differ slightly from one whole pass
    (measured in tests/test_run_claims.py: PSNR against the whole image)."""
    device = next(method.parameters()).device
    h, w = image.shape[:2]

    def run(part: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
        return method.enhance(x)[0].permute(1, 2, 0).float().cpu().numpy()

    if h <= tile and w <= tile:
        return run(image)
    step = max(1, tile - overlap)
    out = np.zeros((h, w, 3), dtype=np.float32)
    weight = np.zeros((h, w, 1), dtype=np.float32)
    ys, xs = _starts(h, tile, step), _starts(w, tile, step)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            part = image[y: y + tile, x: x + tile]
            ph, pw = part.shape[:2]
            wgt = np.outer(_ramp(ph, overlap, i == 0, i == len(ys) - 1),
                           _ramp(pw, overlap, j == 0, j == len(xs) - 1))[..., None]
            out[y: y + ph, x: x + pw] += run(part) * wgt
            weight[y: y + ph, x: x + pw] += wgt
    return out / np.maximum(weight, 1e-8)


def enhance_files(method, source: str | os.PathLike, out_dir: str | os.PathLike,
                  max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True):
    """Enhance one image or every image of a folder into ``out_dir`` as ``<stem>_enhanced.png``.

    Never stops at a bad file: returns ``(written, failed)`` with ``failed`` a list of ``(path, reason)``. Two
    sources with one stem (``a.png``, ``a.jpg``) keep their suffix in the name (``a.jpg_enhanced.png``)."""
    from tqdm import tqdm

    paths = list_images(source)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a folder for the enhanced images")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    written, failed = [], []
    images = iter_images(paths, max_pixels)  # reads one file at a time and reports, never raises, a bad one
    for path, image, reason in tqdm(images, total=len(paths), unit="image", disable=not progress or len(paths) < 2,
                                    desc="enhance"):
        if image is None:
            failed.append((path, reason))
            continue
        try:
            out = enhance_array(method, image)
        except (RuntimeError, MemoryError) as e:  # e.g. out of memory on a huge image: the next file still runs
            failed.append((path, f"{path}: could not be enhanced ({type(e).__name__}: {e})"))
            continue
        target = Path(out_dir) / f"{path.stem}_enhanced.png"
        if target in written:
            target = Path(out_dir) / f"{path.name}_enhanced.png"
        written.append(save_image(target, out))
    return written, failed
