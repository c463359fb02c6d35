"""2-D layouts of embedding snapshots: PCA (instant) and UMAP (seconds), kept stable from epoch to epoch.

The probe subset is the same points in every snapshot, so consecutive layouts can be aligned: each new layout is
mapped onto the previous one by the orthogonal Procrustes rotation/reflection plus scale and shift that best
superimposes the same points (scipy). UMAP is also initialised from the previous layout, so its neighbourhoods
move continuously instead of being re-drawn from scratch (the idea of AlignedUMAP at the cost of one fit).
"""
from __future__ import annotations

import numpy as np


UMAP_MIN_POINTS = 4  # umap-learn's spectral initialisation fails on 3 points or fewer


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
    """PCA (scikit-learn) of the L2-normalised features; aligned to ``previous`` when given. Fewer than 3 points
    or feature dimensions than 2 leave the missing axes at 0 (one point sits at the origin)."""
    from sklearn.decomposition import PCA

    x = l2_normalize(features)
    xy = np.zeros((len(x), 2), dtype=np.float32)
    k = min(2, len(x) - 1, x.shape[1])
    if k > 0:
        with np.errstate(divide="ignore", invalid="ignore"):  # identical points: a 0/0 explained-variance ratio
            xy[:, :k] = PCA(n_components=k, random_state=0).fit_transform(x)
    return align_to(xy, previous) if previous is not None else xy


def umap_2d(features: np.ndarray, previous: np.ndarray | None = None, n_neighbors: int = 15,
            min_dist: float = 0.1, seed: int | None = None) -> np.ndarray:
    """UMAP (umap-learn, cosine metric); initialised from and aligned to ``previous`` when given.

    The first call on a machine pays numba's compilation (half a minute or more); :func:`cache_umap_compilation`
    keeps it on disk, so a later process loads it instead (see :func:`warm_umap` to do that in the background).
    """
    x = l2_normalize(features)
    if len(x) < UMAP_MIN_POINTS:
        raise ValueError(f"UMAP needs at least {UMAP_MIN_POINTS} points and this snapshot has {len(x)}: use PCA")
    cache_umap_compilation()
    import umap

    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    init = "spectral"
    if previous is not None:
        p = previous - previous.mean(0)
        init = (p / max(np.abs(p).max(), 1e-8) * 10).astype(np.float32)  # UMAP's layouts span about +-10
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine", init=init,
                        random_state=seed, n_jobs=1 if seed is not None else -1)
    xy = reducer.fit_transform(x)
    return align_to(xy, previous) if previous is not None else xy


_CACHING_ON = False


def cache_umap_compilation() -> int:
    """Turn numba's on-disk cache on for every jitted function of umap-learn and pynndescent (umap-learn asks for
    it on one of its ~100; pynndescent on most but not all), before they compile: the first UMAP on a machine still
    compiles them, and writes the machine code beside their sources (or under ``NUMBA_CACHE_DIR``); every later
    process loads it. A function numba cannot cache is compiled as before. Returns how many were switched on."""
    global _CACHING_ON
    import os
    import sys

    if _CACHING_ON or os.environ.get("WORKBENCH_NUMBA_CACHE", "1") == "0":  # 0: as umap-learn ships (benchmarks)
        return 0

    import umap  # noqa: F401  (imports pynndescent and every module with jitted functions)
    from numba.core.dispatcher import Dispatcher
    from numba.core.caching import NullCache

    switched = 0
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("umap", "pynndescent") or module is None:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                try:
                    obj.enable_caching()
                    switched += 1
                except Exception:  # noqa: BLE001  (e.g. a function without a source file: left uncached)
                    pass
    _CACHING_ON = True
    return switched


def warm_umap(points: int = 4200, seed: int = 0) -> float:
    """Compile (or load from numba's cache) what a UMAP of the app's size needs, on random data: as many points as
    take UMAP's approximate-neighbours path (4,096 or more), few epochs. Returns the seconds it took. Meant for a
    background thread at app start, so that the first real layout does not wait for the compiler."""
    import time

    t0 = time.perf_counter()
    import umap

    cache_umap_compilation()
    rng = np.random.default_rng(seed)
    x = l2_normalize(rng.normal(size=(points, 16)))
    umap.UMAP(n_components=2, n_neighbors=15, metric="cosine", n_epochs=5, random_state=None).fit_transform(x)
    prev = rng.normal(size=(points, 2)).astype(np.float32)
    umap.UMAP(n_components=2, n_neighbors=15, metric="cosine", n_epochs=5, init=prev).fit_transform(x)
    return time.perf_counter() - t0
