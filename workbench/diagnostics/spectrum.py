"""The singular-value spectrum of an embedding and RankMe (Garrido et al., ICML 2023): dimensional collapse.

A representation that uses only a few directions of its space has a spectrum that drops to ~0 after a few
singular values, even when no sample collapses to one point. RankMe is the exponential of the entropy of the
normalised singular values::

    p_k = s_k / sum_k s_k + eps,   RankMe = exp(-sum_k p_k log p_k)

between 1 (every embedding on one direction) and ``min(n, d)``; across hyper-parameters of one method it tracks
downstream accuracy without labels. It needs ``n >> d`` embeddings to mean anything: callers report the ``n`` used.
"""
from __future__ import annotations

import numpy as np
import torch

RANKME_EPS = 1e-7


def singular_values(z: torch.Tensor) -> torch.Tensor:
    """Singular values of ``z (n, d)``, descending."""
    return torch.linalg.svdvals(z.float())


def rankme(z: torch.Tensor, eps: float = RANKME_EPS) -> float:
    """RankMe of the embedding matrix ``z (n, d)`` as given (the paper does not centre it)."""
    s = singular_values(z)
    p = s / s.sum().clamp_min(1e-12) + eps
    return torch.exp(-(p * p.log()).sum()).item()


def spectrum(z: torch.Tensor) -> np.ndarray:
    """The spectrum drawn by the app: singular values of the L2-normalised, centred embeddings, divided by
    ``sqrt(n)`` so runs with different probe sizes compare (their squares sum to the total variance, <= 1)."""
    z = torch.nn.functional.normalize(z.float(), dim=1)
    z = z - z.mean(0, keepdim=True)
    return (singular_values(z) / max(1, len(z)) ** 0.5).cpu().numpy()
