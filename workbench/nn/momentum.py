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
    """``theta_k <- m theta_k + (1 - m) theta_q`` for every parameter; buffers (BN statistics) are copied.

    Two multi-tensor (foreach) kernels for all parameters and one for all buffers, instead of a kernel pair per
    tensor (what ``moco/builder.py``'s loop launches)."""
    k_params, q_params = list(target.parameters()), [p.detach() for p in online.parameters()]
    if k_params:
        torch._foreach_mul_(k_params, m)
        torch._foreach_add_(k_params, q_params, alpha=1 - m)
    k_buffers, q_buffers = list(target.buffers()), list(online.buffers())
    if k_buffers:
        torch._foreach_copy_(k_buffers, q_buffers)


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
        self.register_buffer("frozen", torch.empty_like(init), persistent=False)  # see snapshot()

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

    @torch.no_grad()
    def snapshot(self) -> torch.Tensor:
        """The filled part of the queue as the loss must see it: a copy that the step's own ``enqueue`` cannot
        change before the backward pass reads it (``moco/builder.py``: ``queue.clone().detach()``). The copy goes
        into a buffer preallocated once, so no queue-sized tensor is allocated per step; the previous step's
        backward has finished by the time the next step overwrites it."""
        n = int(self.filled)
        self.frozen[:n].copy_(self.keys[:n])
        return self.frozen[:n]

    def features(self) -> torch.Tensor:
        return self.keys[: int(self.filled)] if int(self.filled) < self.size else self.keys

    def sources(self) -> torch.Tensor:
        return self.source[: int(self.filled)] if int(self.filled) < self.size else self.source
