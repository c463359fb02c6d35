"""Process-group facts for methods and losses: is a group active, this process's rank, the world size, and the
gathers that make a loss see the global batch. A leaf: it imports only torch, so methods and losses ask these
questions without importing the engine (:mod:`workbench.engine.distributed` sets the group up under ``torchrun``).

NT-Xent gathers the embeddings of every process with a gather that passes gradients back
(``torch.distributed.nn.functional.all_gather``; a plain ``all_gather`` would silently drop the gradient of the other
processes' negatives); MoCo enqueues the keys of every process (:func:`gather`, no gradient); SwAV's Sinkhorn sums
over the global batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenation over processes (rank order) of ``x``; gradients flow back to every process's ``x``."""
    if not active():
        return x
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # its deprecation points to a private API; this one is public and correct
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x.contiguous()))


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenation over processes of ``x``, without gradient (MoCo's keys for the queue)."""
    if not active():
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)
