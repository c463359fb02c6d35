"""2-D projections of embedding snapshots for the views (PCA now; UMAP is computed by readers that want it)."""
from __future__ import annotations

import numpy as np


def pca_2d(features: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """PCA to 2-D of L2-normalised features (scikit-learn). With ``reference``, the axes are fitted there."""
    from sklearn.decomposition import PCA

    x = _l2(features)
    pca = PCA(n_components=2, random_state=0).fit(_l2(reference) if reference is not None else x)
    return pca.transform(x)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
