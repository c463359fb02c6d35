"""The four non-reference losses of Zero-DCE (Guo et al., CVPR 2020), as defined in the official ``Myloss.py``.

Images are ``(N, 3, H, W)`` in [0, 1]; ``I`` the input (low-light) image, ``Y`` the enhanced one, ``A`` the
curve-parameter maps ``(N, 3n, H, W)``.

* Spatial consistency. With ``bar I`` the channel mean, 4x4 average-pooled (``K`` regions), and ``Omega(i)`` the
  4 neighbours of region ``i`` (left, right, up, down; the official code uses a 3x3 conv with zero padding, so
  a missing neighbour counts as 0)::

      L_spa = (1 / K) sum_i sum_{j in Omega(i)} ( (bar Y_i - bar Y_j) - (bar I_i - bar I_j) )^2

  (the mean runs over the batch and the ``K`` regions; the 4 directions are summed, not averaged).
* Exposure control, with ``bar Y_k`` the mean of the channel mean over the ``k``-th of ``M`` non-overlapping
  ``patch x patch`` regions and ``E`` the well-exposedness level (0.6)::

      L_exp = (1 / M) sum_k (bar Y_k - E)^2

* Colour constancy, with ``m_p`` the mean of channel ``p`` over the image and ``D_pq = (m_p - m_q)^2``::

      L_col = sqrt(D_rg^2 + D_rb^2 + D_gb^2)          (mean over the batch)

* Illumination smoothness (the official squared TV, not the paper's ``(|grad_x A| + |grad_y A|)^2``)::

      L_tv = 2 ( sum (A[h+1] - A[h])^2 / ((H-1) W) + sum (A[w+1] - A[w])^2 / (H (W-1)) ) / N

  the sums running over the batch, the channels and the positions.

Total, with the official weights: ``L = L_spa + 10 L_exp + 5 L_col + 200 L_tv``.

Average pooling drops the right/bottom remainder when ``H`` or ``W`` is not a multiple of the pool size (as
``nn.AvgPool2d`` does); the pool size shrinks to ``min(size, H, W)`` for images smaller than it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ZERO_DCE_WEIGHTS: tuple[float, float, float, float] = (1.0, 10.0, 5.0, 200.0)  # (spa, exp, col, tv)


def _check_images(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, C, H, W), got {tuple(x.shape)}")


def _pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Non-overlapping ``size x size`` average pooling, ``size`` shrunk to fit the image."""
    size = max(1, min(size, x.shape[-2], x.shape[-1]))
    return F.avg_pool2d(x, size)


def _neighbour_differences(x: torch.Tensor) -> list[torch.Tensor]:
    """``x_i - x_j`` for the left, right, up and down neighbour ``j`` of every position, zero padded."""
    p = F.pad(x, (1, 1, 1, 1))
    c = p[..., 1:-1, 1:-1]
    return [c - p[..., 1:-1, :-2], c - p[..., 1:-1, 2:], c - p[..., :-2, 1:-1], c - p[..., 2:, 1:-1]]


def spatial_consistency_loss(enhanced: torch.Tensor, original: torch.Tensor, pool: int = 4) -> torch.Tensor:
    """``L_spa``: keep the differences between neighbouring 4x4 regions of the input in the enhanced image."""
    _check_images(enhanced, "enhanced")
    if enhanced.shape != original.shape:
        raise ValueError(f"shapes differ: {tuple(enhanced.shape)} vs {tuple(original.shape)}")
    enh = _pool(enhanced.mean(dim=1, keepdim=True), pool)
    org = _pool(original.mean(dim=1, keepdim=True), pool)
    e = sum((do - de).pow(2) for do, de in zip(_neighbour_differences(org), _neighbour_differences(enh)))
    return e.mean()


def exposure_loss(enhanced: torch.Tensor, patch: int = 16, level: float = 0.6) -> torch.Tensor:
    """``L_exp``: mean squared distance of the ``patch x patch`` mean intensities from ``level``."""
    _check_images(enhanced, "enhanced")
    return (_pool(enhanced.mean(dim=1, keepdim=True), patch) - level).pow(2).mean()


def color_constancy_loss(enhanced: torch.Tensor) -> torch.Tensor:
    """``L_col`` (gray-world): ``sqrt(D_rg^2 + D_rb^2 + D_gb^2)`` per image, averaged over the batch."""
    _check_images(enhanced, "enhanced")
    if enhanced.shape[1] != 3:
        raise ValueError(f"color_constancy_loss needs 3 channels, got {enhanced.shape[1]}")
    m = enhanced.mean(dim=(2, 3))  # (N, 3)
    d_rg = (m[:, 0] - m[:, 1]).pow(2)
    d_rb = (m[:, 0] - m[:, 2]).pow(2)
    d_gb = (m[:, 1] - m[:, 2]).pow(2)
    # The official code takes pow(., 0.5) without an epsilon; sqrt(0) has an infinite derivative, so a grey image
    # (all D = 0) would give NaN gradients. The epsilon changes the value by at most 1e-6.
    return (d_rg.pow(2) + d_rb.pow(2) + d_gb.pow(2) + 1e-12).sqrt().mean()


def illumination_smoothness_loss(curves: torch.Tensor) -> torch.Tensor:
    """``L_tv`` of the curve maps ``(N, C, H, W)``: the official squared total variation (needs H, W >= 2)."""
    _check_images(curves, "curves")
    n, _, h, w = curves.shape
    if h < 2 or w < 2:
        raise ValueError(f"illumination_smoothness_loss needs H, W >= 2, got {h}x{w}")
    h_tv = (curves[:, :, 1:, :] - curves[:, :, :-1, :]).pow(2).sum()
    w_tv = (curves[:, :, :, 1:] - curves[:, :, :, :-1]).pow(2).sum()
    return 2 * (h_tv / ((h - 1) * w) + w_tv / (h * (w - 1))) / n


def zero_dce_loss(original: torch.Tensor, enhanced: torch.Tensor, curves: torch.Tensor,
                  weights: tuple[float, float, float, float] = ZERO_DCE_WEIGHTS,
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """``w_spa L_spa + w_exp L_exp + w_col L_col + w_tv L_tv`` and the unweighted parts (floats, for logging).

    ``weights`` is ``(w_spa, w_exp, w_col, w_tv)``, default the official ``(1, 10, 5, 200)``; the exposure loss
    uses the official 16x16 patches and level 0.6.
    """
    w_spa, w_exp, w_col, w_tv = weights
    parts = {
        "spa": spatial_consistency_loss(enhanced, original),
        "exp": exposure_loss(enhanced),
        "col": color_constancy_loss(enhanced),
        "tv": illumination_smoothness_loss(curves),
    }
    total = w_spa * parts["spa"] + w_exp * parts["exp"] + w_col * parts["col"] + w_tv * parts["tv"]
    return total, {k: v.item() for k, v in parts.items()}
