"""Features and labels arrive as torch tensors (the engine) or numpy arrays (notebooks): one conversion for all
probes."""
from __future__ import annotations

import numpy as np


def as_numpy(a, dtype=None) -> np.ndarray:
    """``a`` (a tensor on any device, or array-like) as a numpy array, of ``dtype`` when given."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def features_and_labels(x, y) -> tuple[np.ndarray, np.ndarray]:
    """``(N, d)`` float64 features and ``(N,)`` int64 labels, checked to match."""
    x, y = as_numpy(x, np.float64), as_numpy(y).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, d) with N labels, got {x.shape} and {y.shape}")
    return x, y
