"""2-D layouts of embedding snapshots: PCA (instant) and UMAP (seconds), kept stable from epoch to epoch.

The probe subset is the same points in every snapshot, so consecutive layouts can be aligned: each new layout is
mapped onto the previous one by the orthogonal Procrustes rotation/reflection plus scale and shift that best
superimposes the same points (scipy). UMAP is also initialised from the previous layout, so its neighbourhoods
move continuously instead of being re-drawn from scratch (the idea of AlignedUMAP at the cost of one fit).
"""
from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def align_to(xy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``xy`` rotated/reflected, scaled and shifted to best match ``reference`` (same points, same order)."""
    from scipy.linalg import orthogonal_procrustes

    a = xy - xy.mean(0)
    b = reference - reference.mean(0)
    r, s = orthogonal_procrustes(a, b)
    scale = s / max(float((a ** 2).sum()), 1e-12)
    return a @ r * scale + reference.mean(0)


def pca_2d(features: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """PCA (scikit-learn) of the L2-normalised features; aligned to ``previous`` when given."""
    from sklearn.decomposition import PCA

    xy = PCA(n_components=2, random_state=0).fit_transform(l2_normalize(features))
    return align_to(xy, previous) if previous is not None else xy


def umap_2d(features: np.ndarray, previous: np.ndarray | None = None, n_neighbors: int = 15,
            min_dist: float = 0.1, seed: int | None = None) -> np.ndarray:
    """UMAP (umap-learn, cosine metric); initialised from and aligned to ``previous`` when given.

    The first call in a process pays numba's compilation (seconds to a minute): call it in the background.
    """
    import umap

    x = l2_normalize(features)
    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    init = "spectral"
    if previous is not None:
        p = previous - previous.mean(0)
        init = (p / max(np.abs(p).max(), 1e-8) * 10).astype(np.float32)  # UMAP's layouts span about +-10
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine", init=init,
                        random_state=seed, n_jobs=1 if seed is not None else -1)
    xy = reducer.fit_transform(x)
    return align_to(xy, previous) if previous is not None else xy
