"""Multi-GPU (or multi-process CPU) training with PyTorch DistributedDataParallel, launched by ``torchrun``.

    torchrun --nproc_per_node 4 -m workbench train --method simclr --dataset cifar10 --batch-size 512

``--batch-size`` is the global batch; each of the W processes takes every W-th image of it. This module sets the
group up; what methods and losses ask of it (rank, gathers) is in the leaf :mod:`workbench.process_group`.
Only rank 0 writes the run store, checkpoints and progress bar.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from workbench.process_group import active


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (a no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def broadcast_object(obj, src: int = 0):
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on any (so all stop together on a NaN)."""
    if not active():
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def shutdown(clean: bool = True) -> None:
    """Leave the process group; after a barrier when every rank got here normally (so no collective is still in
    flight), without one after an error (a barrier would wait forever for a rank that died)."""
    if dist.is_available() and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()
