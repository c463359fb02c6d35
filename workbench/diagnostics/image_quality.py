"""Image-quality metrics for enhancement / restoration, under one stated protocol (``PROTOCOL``).

Full-reference, via scikit-image (``skimage.metrics``), every image scored on its own, then averaged::

    PSNR = 10 log10(1 / MSE)          MSE over all pixels and channels, data range 1, capped at PSNR_CAP dB
    SSIM = mean over channels of the mean Gaussian-window SSIM (Wang et al., 2004)

No-reference, on the luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601; the channel itself for
one-channel images)::

    mean_brightness = mean Y
    exposure_error  = (1 / M) sum_k |mean of Y over patch k - level|     (M non-overlapping patches)

Inputs: a torch tensor ``(N, C, H, W)`` (or ``(C, H, W)``) or a numpy array ``(N, H, W, C)``, ``(H, W, C)`` or
``(H, W)``, float in [0, 1]. Values are clipped to [0, 1] before scoring (an enhancer's output saved as an image
would be). LPIPS and NIQE need pretrained weights that are not shipped here: they are used only when already on
disk (``perceptual_metrics_available``); nothing is ever downloaded.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Union

import numpy as np
import torch

PSNR_CAP = 100.0  # dB; the PSNR of identical images (MSE = 0) is reported as this instead of inf
WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03

PROTOCOL = (
    "RGB images in [0, 1] (clipped), data_range 1; PSNR = 10 log10(1 / MSE) with the MSE over all pixels and "
    f"channels, capped at {PSNR_CAP:g} dB; SSIM with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, "
    "population covariance, computed per channel on the pixels whose window fits in the image and then averaged "
    "over channels (Wang et al. 2004, via scikit-image structural_similarity); every image is scored separately "
    "and the scores are then averaged over images."
)

ArrayLike = Union[torch.Tensor, np.ndarray]

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def _as_nhwc(x: ArrayLike) -> np.ndarray:
    """A float64 ``(N, H, W, C)`` array in [0, 1] from a torch ``(N, C, H, W)``/``(C, H, W)`` tensor or a numpy
    ``(N, H, W, C)``/``(H, W, C)``/``(H, W)`` array."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float64)
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4:
            raise ValueError(f"torch images must be (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
        a = t.permute(0, 2, 3, 1).numpy()
    else:
        a = np.asarray(x, dtype=np.float64)
        if a.ndim == 2:
            a = a[None, :, :, None]
        elif a.ndim == 3:
            a = a[None]
        if a.ndim != 4:
            raise ValueError(f"numpy images must be (N, H, W, C), (H, W, C) or (H, W), got {a.shape}")
    return np.clip(a, 0.0, 1.0)


def _pair(pred: ArrayLike, ref: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, r = _as_nhwc(pred), _as_nhwc(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref differ in shape: {p.shape} vs {r.shape} (as N, H, W, C)")
    return p, r


def psnr(pred: ArrayLike, ref: ArrayLike) -> np.ndarray:
    """PSNR in dB of every image, ``(N,)``: ``10 log10(1 / MSE)``, capped at ``PSNR_CAP`` (identical images)."""
    from skimage.metrics import peak_signal_noise_ratio

    p, r = _pair(pred, ref)
    with np.errstate(divide="ignore"):  # MSE = 0 -> inf, capped below
        out = np.array([peak_signal_noise_ratio(ri, pi, data_range=1.0) for pi, ri in zip(p, r)], dtype=np.float64)
    return np.minimum(out, PSNR_CAP)


def ssim(pred: ArrayLike, ref: ArrayLike) -> np.ndarray:
    """SSIM of every image, ``(N,)``, per ``PROTOCOL``. Needs H, W >= 11 (the window); raises otherwise."""
    from skimage.metrics import structural_similarity

    p, r = _pair(pred, ref)
    if min(p.shape[1:3]) < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW}x{WINDOW} pixels, got {p.shape[1]}x{p.shape[2]}")
    return np.array([structural_similarity(pi, ri, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                           sigma=SIGMA, use_sample_covariance=False, K1=K1, K2=K2)
                     for pi, ri in zip(p, r)], dtype=np.float64)


def quality(pred: ArrayLike, ref: ArrayLike) -> dict[str, float]:
    """``{"psnr": mean PSNR (dB), "ssim": mean SSIM, "n": number of images}`` over the batch, per ``PROTOCOL``."""
    ps, ss = psnr(pred, ref), ssim(pred, ref)
    return {"psnr": float(ps.mean()), "ssim": float(ss.mean()), "n": int(len(ps))}


def _luminance(x: ArrayLike) -> np.ndarray:
    """``(N, H, W)`` BT.601 luminance (RGB) or the single channel (grayscale)."""
    a = _as_nhwc(x)
    if a.shape[-1] == 1:
        return a[..., 0]
    if a.shape[-1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {a.shape[-1]}")
    return a @ _LUMA


def mean_brightness(x: ArrayLike) -> np.ndarray:
    """Mean luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` of every image, ``(N,)``, in [0, 1]."""
    return _luminance(x).mean(axis=(1, 2))


def exposure_error(x: ArrayLike, level: float = 0.5, patch: int = 16) -> np.ndarray:
    """Exposure error of every image, ``(N,)``: the mean over non-overlapping ``patch x patch`` regions of
    ``|mean luminance of the region - level|`` (0 = every region at ``level``; at most ``max(level, 1 - level)``).

    A no-reference counterpart of Zero-DCE's exposure loss (absolute rather than squared deviation, on luminance
    rather than the channel mean). Rows/columns beyond the last whole patch are ignored; ``patch`` shrinks to
    ``min(patch, H, W)`` for small images.
    """
    y = _luminance(x)
    n, h, w = y.shape
    k = max(1, min(patch, h, w))
    hh, ww = h // k, w // k
    means = y[:, :hh * k, :ww * k].reshape(n, hh, k, ww, k).mean(axis=(2, 4))
    return np.abs(means - level).mean(axis=(1, 2))


# --- perceptual metrics: only when their weights are already on disk --------------------------------------------

_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, LPIPS's default backbone
_NIQE_FILE = "niqe_modelparameters.mat"  # pyiqa's published NIQE model


def _lpips_reason() -> str | None:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.origin:
        return "the 'lpips' package is not installed"
    linear = os.path.join(os.path.dirname(spec.origin), "weights", "v0.1", "alex.pth")
    if not os.path.isfile(linear):
        return f"LPIPS linear-layer weights not found at {linear}"
    backbone = os.path.join(torch.hub.get_dir(), "checkpoints", _ALEXNET_FILE)
    if not os.path.isfile(backbone):
        return f"AlexNet backbone weights not found at {backbone} (would need a download)"
    return None


def _niqe_reason() -> str | None:
    if importlib.util.find_spec("pyiqa") is None:
        return "the 'pyiqa' package is not installed"
    model = os.path.join(torch.hub.get_dir(), "pyiqa", _NIQE_FILE)
    if not os.path.isfile(model):
        return f"NIQE model parameters not found at {model} (would need a download)"
    return None


def perceptual_metrics_available() -> dict[str, str | None]:
    """``{"lpips": reason or None, "niqe": reason or None}``: None when the metric can run offline, otherwise why
    not. Only looks at installed packages and files on disk (nothing is imported that could download)."""
    return {"lpips": _lpips_reason(), "niqe": _niqe_reason()}


_LPIPS_MODEL = None


def lpips(pred: ArrayLike, ref: ArrayLike) -> np.ndarray | None:
    """LPIPS (AlexNet, v0.1) of every image, ``(N,)``, lower = more similar; None when it cannot run offline
    (see ``perceptual_metrics_available``). RGB only; inputs in [0, 1] are rescaled to [-1, 1] by lpips."""
    global _LPIPS_MODEL
    if _lpips_reason() is not None:
        return None
    p, r = _pair(pred, ref)
    if p.shape[-1] != 3:
        raise ValueError(f"LPIPS needs RGB images, got {p.shape[-1]} channels")
    if _LPIPS_MODEL is None:
        import lpips as lpips_pkg

        _LPIPS_MODEL = lpips_pkg.LPIPS(net="alex", version="0.1", verbose=False).eval()
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()  # noqa: E731
    with torch.no_grad():
        d = _LPIPS_MODEL(to_t(p), to_t(r), normalize=True)
    return d.flatten().double().numpy()
