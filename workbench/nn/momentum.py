"""Pieces MoCo-style methods share: the momentum (EMA) encoder update and the ring-buffer queue of keys."""
from __future__ import annotations

import copy

import torch
from torch import nn


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen copy of ``online`` to be updated by :func:`momentum_update` (MoCo's key encoder)."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float) -> None:
    """``theta_k <- m theta_k + (1 - m) theta_q`` for every parameter; buffers (BN statistics) are copied."""
    for q, k in zip(online.parameters(), target.parameters()):
        k.mul_(m).add_(q.detach(), alpha=1 - m)
    for bq, bk in zip(online.buffers(), target.buffers()):
        bk.copy_(bq)


class FeatureQueue(nn.Module):
    """A ring buffer of the ``size`` most recent keys (MoCo's dictionary), stored as a buffer so it is saved in
    checkpoints. ``enqueue`` overwrites the oldest entries; ``features`` returns the filled part. ``source`` holds,
    for every entry, the index of the training image its key came from (-1: a random initial entry), so a method
    can tell which negatives are really views of the query's own image."""

    def __init__(self, dim: int, size: int, random_init: bool = True):
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        self.size = size
        # MoCo starts from random unit vectors, so there are negatives from the first step
        init = nn.functional.normalize(torch.randn(size, dim), dim=1) if random_init else torch.zeros(size, dim)
        self.register_buffer("keys", init)
        self.register_buffer("source", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.tensor(size if random_init else 0, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, source: torch.Tensor | None = None) -> None:
        keys = keys.detach().to(self.keys.dtype)
        source = torch.full((len(keys),), -1, dtype=torch.long, device=keys.device) if source is None else source
        n = len(keys)
        if n > self.size:
            keys, source, n = keys[-self.size:], source[-self.size:], self.size
        idx = (self.ptr + torch.arange(n, device=keys.device)) % self.size
        self.keys[idx] = keys
        self.source[idx] = source.to(self.source.device)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def features(self) -> torch.Tensor:
        return self.keys[: int(self.filled)] if int(self.filled) < self.size else self.keys

    def sources(self) -> torch.Tensor:
        return self.source[: int(self.filled)] if int(self.filled) < self.size else self.source
