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

from workbench import process_group as dist
from workbench.losses.precision import fp32


@fp32
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.5, normalize: bool = True) -> torch.Tensor:
    """NT-Xent of two views ``z1, z2`` of shape ``(N, d)``; N may be 1 (then the only candidate is the positive).

    Under ``torchrun`` the other processes' views are gathered (with gradients) and serve as negatives too: the
    loss of this process's 2N anchors against the 2NW views of the global batch. Averaged over processes (as DDP
    averages gradients) it equals the single-process loss of the global batch.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (N, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if tau <= 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")
    z1, z2 = z1.float(), z2.float()  # fp32 logits: exp(s / tau) with tau = 0.01 does not fit fp16
    if normalize:
        z1, z2 = F.normalize(z1, dim=1, eps=1e-6), F.normalize(z2, dim=1, eps=1e-6)
    n = z1.shape[0]
    g1, g2 = dist.gather_with_grad(z1), dist.gather_with_grad(z2)  # (NW, d); this process's rows at offset
    total, offset = g1.shape[0], dist.rank() * n
    anchors = torch.cat([z1, z2])  # (2N, d)
    candidates = torch.cat([g1, g2])  # (2NW, d)
    local = torch.arange(n, device=z1.device) + offset
    own = torch.cat([local, local + total])  # where each anchor sits among the candidates
    partner = torch.cat([local + total, local])
    logits = anchors @ candidates.T / tau
    logits[torch.arange(2 * n, device=z1.device), own] = float("-inf")  # the sum runs over k != i
    return F.cross_entropy(logits, partner)


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
