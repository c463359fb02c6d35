"""Torch's intra-op thread count for one block of work, put back after it: the one home of that save / set /
restore for a training run (``--threads`` while it trains), the spectrum (small decompositions on one thread) and
the benchmarks (each contender's own setting). A leaf: it imports only torch, so every layer may use it."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    """``torch.set_num_threads(n)`` inside the block (``None`` or 0: the setting is left as it is), the caller's
    count restored after it, also when the block raises. The count is process-wide: code running in other threads
    meanwhile runs with it too."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)
