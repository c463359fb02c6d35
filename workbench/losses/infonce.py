"""InfoNCE with a queue of negatives (MoCo, He et al. 2020) and the Feature Transformation of Zhu et al. (2021),
"Improving Contrastive Learning by Visualizing Feature Transformation".

MoCo: with L2-normalised query ``q``, key ``k`` and queue ``{n_j}``::

    logits = [q.k, q.n_1, ..., q.n_K] / tau,     loss = CE(logits, 0) = -log( e^{q.k/tau} / (e^{q.k/tau} + sum_j e^{q.n_j/tau}) )

Positive extrapolation (harder positives): ``lambda+ = 1 + Beta(a+, a+)`` (one scalar per step, > 1)::

    q' = lambda+ q + (1 - lambda+) k,     k' = lambda+ k + (1 - lambda+) q

which pushes q and k apart along their difference, lowering q'.k'. Negative interpolation (more diverse
negatives): ``lambda- ~ Beta(a-, a-)``, ``pi`` a random permutation of the queue::

    n'_j = lambda- n_j + (1 - lambda-) n_pi(j)

No re-normalisation after mixing (as in the paper); the queue itself keeps the un-mixed keys.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from workbench.losses.precision import fp32


@fp32
def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, tau: float,
             exclude: torch.Tensor | None = None):
    """Returns ``(loss, pos (B,), neg (B, K))``; ``pos``/``neg`` are the raw scores (before dividing by tau).
    ``exclude``, a ``(B, K)`` boolean mask, leaves those negatives out of the loss (e.g. keys of the query's own
    image); ``neg`` still holds their scores."""
    if tau <= 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")
    q, k, negatives = q.float(), k.float(), negatives.float()
    pos = (q * k).sum(1)
    neg = q @ negatives.T
    logits = torch.cat([pos[:, None], neg if exclude is None else neg.masked_fill(exclude, float("-inf"))], dim=1)
    logits = logits / tau
    loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
    return loss, pos, neg


def _beta(alpha: float, generator: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw, reproducible from the torch generator."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator, device=generator.device))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def extrapolate_positives(q: torch.Tensor, k: torch.Tensor, alpha: float, generator: torch.Generator):
    """Positive extrapolation with ``lambda+ = 1 + Beta(alpha, alpha)``; returns ``(q', k', lambda+)``."""
    lam = 1.0 + _beta(alpha, generator)
    return lam * q + (1 - lam) * k, lam * k + (1 - lam) * q, lam


def interpolate_negatives(negatives: torch.Tensor, alpha: float, generator: torch.Generator):
    """Negative interpolation with ``lambda- ~ Beta(alpha, alpha)`` and a random pairing; ``(n', lambda-)``."""
    lam = _beta(alpha, generator)
    perm = torch.randperm(len(negatives), generator=generator, device=generator.device).to(negatives.device)
    return lam * negatives + (1 - lam) * negatives[perm], lam
