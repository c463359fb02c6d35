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

from workbench.threads import intra_op_threads

RANKME_EPS = 1e-7


def singular_values(z: torch.Tensor) -> torch.Tensor:
    """Singular values of ``z (n, d)``, descending (float32).

    With more rows than columns (the usual n >> d) they are the square roots of the eigenvalues of the d x d Gram
    matrix ``z^T z`` (eigenvalues in float64): cheaper than an SVD of z and what keeps the spectrum at every
    evaluation affordable. Values below ~1e-3 of the largest are not resolved (the Gram matrix is formed in
    float32); they carry no weight in RankMe."""
    z = z.float()
    n, d = z.shape
    # one thread: small decompositions run faster alone than on a pool other work shares (measured on the 2-core
    # machine under load: eigvalsh of 256 x 256 2.2 ms against 23 ms, svdvals of 1437 x 256 11 ms against 95 ms);
    # the evaluation runs between training steps, so borrowing the setting is safe
    with intra_op_threads(1):
        if n <= d:
            return torch.linalg.svdvals(z)
        eig = torch.linalg.eigvalsh((z.T @ z).double()).flip(0).clamp_min(0)
    return eig.sqrt().float()


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
