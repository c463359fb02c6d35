"""Geometry of the embedding: alignment and uniformity (Wang & Isola, 2020), tolerance (Wang & Liu, 2021) and
dimensional-collapse measures. All take L2-normalised embeddings ``(N, d)``.
"""
from __future__ import annotations

import math

import torch

from workbench.diagnostics.spectrum import rankme


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    """``L_align = E ||z1 - z2||^alpha`` over positive pairs (0 = views map to the same point)."""
    return (z1.float() - z2.float()).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """``L_uniform = log E_{i<j} exp(-t ||z_i - z_j||^2)``. Uniform on the sphere: -3.94 at d=128; collapse: 0."""
    z = z.float()
    if len(z) < 2:
        return float("nan")
    sq = torch.pdist(z, p=2).pow(2)
    return (torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())).item()


def uniformity_reference(d: int, t: float = 2.0) -> float:
    """``L_uniform`` of points spread uniformly on the unit sphere S^(d-1) (the best value a run can reach).

    With ``||x - y||^2 = 2 - 2s`` and ``s = x.y = 2u - 1``, ``u ~ Beta(a, a)``, ``a = (d - 1) / 2``:
    ``log E exp(-2t + 2ts) = -4t + log 1F1(a; 2a; 4t)``, Kummer's function being the moment generating function
    of ``Beta(a, a)`` (scipy.special.hyp1f1). d=2: -1.58, d=16: -3.51, d=128: -3.94.
    """
    from scipy.special import hyp1f1

    if d < 2:
        raise ValueError(f"the uniformity reference needs d >= 2, got {d}")
    a = (d - 1) / 2
    return -4 * t + math.log(hyp1f1(a, 2 * a, 4 * t))


def collapse_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised ``z``.

    For embeddings spread over the sphere it approaches ``1/sqrt(d)``; near 0 means every sample maps to
    (nearly) the same point (complete collapse).
    """
    return z.float().std(dim=0).mean().item()


def effective_rank(z: torch.Tensor, eps: float = 1e-12) -> float:
    """Effective rank (Roy & Vetterli, 2007): RankMe (:func:`workbench.diagnostics.spectrum.rankme`) with a
    negligible ``eps``. Ranges from 1 (everything on one direction) to ``min(N, d)``; the live diagnostics compute
    it on each logged batch of embeddings z, the evaluation on the whole probe set's features."""
    return rankme(z, eps)


def tolerance(z: torch.Tensor, labels: torch.Tensor) -> float:
    """Tolerance (Wang & Liu, 2021): the mean similarity ``z_x . z_y`` over pairs of distinct samples of the same
    class (the paper writes it as ``E[z_x . z_y 1(l(x) = l(y))]``; we normalise by the number of same-class pairs,
    so the value does not depend on how many classes there are)."""
    z = z.float()
    sim = z @ z.T
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    return sim[same].mean().item() if same.any() else float("nan")
