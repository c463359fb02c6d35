"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020).

For a batch of N images, two views each, ``z`` the 2N L2-normalised projections and ``s_ik = z_i . z_k``::

    l_i  = -log( exp(s_{i,j(i)} / tau) / sum_{k != i} exp(s_ik / tau) )
    loss = (1 / 2N) sum_i l_i

with ``j(i)`` the other view of the same image. We report the mean over all 2N views (some codebases report
``mean(l_a + l_b)`` over N, exactly twice this). The logits are computed as a cross-entropy, which subtracts the
row maximum before exponentiating, so a tiny tau does not overflow.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.5, normalize: bool = True) -> torch.Tensor:
    """NT-Xent of two views ``z1, z2`` of shape ``(N, d)``; N may be 1 (then the only candidate is the positive)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (N, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if tau <= 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")
    n = z1.shape[0]
    z = torch.cat([z1, z2]).float()  # fp32 logits: exp(s / tau) with tau = 0.01 does not fit fp16
    if normalize:
        z = F.normalize(z, dim=1, eps=1e-6)
    self_pair = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / tau).masked_fill(self_pair, float("-inf"))  # the sum runs over k != i
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent` with a fixed temperature ``tau``."""

    def __init__(self, tau: float = 0.5):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"temperature tau must be > 0, got {tau}")
        self.tau = tau

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent(z1, z2, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"
