"""Paired restoration losses: a differentiable SSIM (Wang et al., 2004) and an L1 (or MSE) + SSIM loss.

For each channel, with ``G`` a normalised Gaussian window (``window_size`` taps, std ``sigma``), ``mu_x = G * x``,
``sigma_x^2 = G * x^2 - mu_x^2`` and ``sigma_xy = G * (xy) - mu_x mu_y`` (population, i.e. biased, moments),
``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, ``K1 = 0.01``, ``K2 = 0.03``, ``L`` the data range::

    SSIM(x, y)[p] = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

    ssim = mean over images, channels and valid positions p of SSIM[p]
    restoration_loss = mean |pred - target| + ssim_weight (1 - ssim(pred, target))          (pixel "l1")
                       mean (pred - target)^2 + ssim_weight (1 - ssim(pred, target))        (pixel "mse")

"Valid" positions are those where the whole window lies inside the image. This is what scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)``
computes: it filters with mode 'reflect' and then crops ``(win_size - 1) // 2`` pixels from every border before
averaging; the crop equals the filter radius, so no padded value reaches a kept pixel, and an unpadded ("valid")
convolution gives the same numbers (to float32 rounding). The match holds when
``window_size == 2 * int(3.5 * sigma + 0.5) + 1`` (11 for sigma 1.5), scikit-image's window for a given sigma.

Images smaller than the window do not raise (scikit-image does): the window shrinks to the largest odd size
``<= min(H, W)`` (sigma unchanged), so a 1-pixel-wide image compares pixel values only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

K1, K2 = 0.01, 0.03


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (odd), as scipy.ndimage.gaussian_filter1d builds it."""
    r = (size - 1) / 2
    t = torch.arange(size, dtype=torch.float64, device=device) - r
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of every channel of ``x`` (N, C, H, W), valid positions only."""
    c, k = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (a 0-d tensor, differentiable) of two ``(N, C, H, W)`` batches, averaged over images, channels
    and valid pixels. 1 for identical images; computed in float32 at least (float64 stays float64), also under
    autocast."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"x and y must both be (N, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
    if window_size < 1 or sigma <= 0:
        raise ValueError(f"need window_size >= 1 and sigma > 0, got {window_size}, {sigma}")
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    size = min(window_size, x.shape[-2], x.shape[-1])
    if size % 2 == 0:
        size -= 1
    g = _gaussian_window(size, sigma, dtype, x.device)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    # E[x^2] - E[x]^2 cancels badly in half precision: keep autocast from running the convolutions in fp16/bf16
    with torch.autocast(device_type=x.device.type, enabled=False):
        mu_x, mu_y = _filter(x, g), _filter(y, g)
        var_x = _filter(x * x, g) - mu_x * mu_x
        var_y = _filter(y * y, g) - mu_y * mu_y
        cov = _filter(x * y, g) - mu_x * mu_y
    s = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return s.mean()


def ssim_loss(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
              data_range: float = 1.0) -> torch.Tensor:
    """``1 - ssim(x, y)``: 0 for identical images, at most 2."""
    return 1 - ssim(x, y, window_size, sigma, data_range)


PIXEL_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def restoration_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.0,
                     pixel: str = "l1") -> torch.Tensor:
    """``mean |pred - target| + ssim_weight * (1 - ssim(pred, target))``, or the mean squared error with
    ``pixel="mse"``; the SSIM term is skipped when ``ssim_weight == 0``.

    Not torch's smooth L1: with its default beta 1, on images in [0, 1] every difference is below beta, so it is
    exactly half the MSE everywhere (what TML trained on before this was chosen on purpose).
    """
    if pixel not in PIXEL_LOSSES:
        raise ValueError(f"pixel loss {pixel!r} is not one of {', '.join(PIXEL_LOSSES)}")
    loss = PIXEL_LOSSES[pixel](pred, target)
    if ssim_weight:
        loss = loss + ssim_weight * ssim_loss(pred, target)
    return loss
