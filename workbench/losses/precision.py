"""fp32 islands inside mixed precision.

Under ``torch.autocast`` a matrix product runs in bf16/fp16 even when its inputs are fp32, so casting the
embeddings with ``.float()`` is not enough to keep a contrastive loss in fp32: its similarity logits
``z_i . z_k / tau`` would be rounded to 8 bits of mantissa (with tau = 0.1 an error of ~0.04 in every logit)
and ``exp`` of them can overflow fp16. The losses, the similarity scores the diagnostics read and the cluster
assignments run inside :func:`fp32`; the backbone and heads around them keep the autocast speed.
"""
from __future__ import annotations

import contextlib
import functools

import torch

_AUTOCAST_DEVICES = ("cpu", "cuda")


@contextlib.contextmanager
def fp32_region():
    """Autocast off (for every device type it is on) inside the block; free when autocast is not on."""
    active = [d for d in _AUTOCAST_DEVICES if torch.is_autocast_enabled(d)]
    with contextlib.ExitStack() as stack:
        for device in active:
            stack.enter_context(torch.autocast(device, enabled=False))
        yield


def fp32(fn):
    """Decorator: ``fn`` runs with autocast off; its floating-point tensor arguments are cast to fp32."""
    def cast(a):
        return a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with fp32_region():
            return fn(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper
