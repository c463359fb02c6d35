"""Clustering evaluation: Hungarian-matched accuracy, NMI, ARI, and k-means on features.

ACC = max over one-to-one maps m from clusters to classes of (1/n) sum_i 1(y_i = m(c_i)), found with the
Hungarian algorithm (scipy ``linear_sum_assignment``) on the negated contingency table. NMI uses scikit-learn's
default arithmetic normalisation (since scikit-learn 0.22): ``I(y; c) / mean(H(y), H(c))``. ARI is the adjusted
Rand index. Cluster ids and class labels need not have the same count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def contingency(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``counts[i, j]`` = samples of class ``classes[i]`` put in cluster ``clusters[j]``."""
    from sklearn.metrics.cluster import contingency_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return contingency_matrix(y_true, y_pred), np.unique(y_true), np.unique(y_pred)


def hungarian_match(y_true, y_pred) -> dict[int, int]:
    """The one-to-one map cluster -> class that maximises agreement (clusters left over map to nothing)."""
    from scipy.optimize import linear_sum_assignment

    counts, classes, clusters = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(-counts)
    return {int(clusters[c]): int(classes[r]) for r, c in zip(rows, cols)}


def cluster_accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    mapping = hungarian_match(y_true, y_pred)
    mapped = np.array([mapping.get(int(c), -1) for c in y_pred])
    return float((mapped == y_true).mean())


@dataclass
class ClusterScores:
    acc: float
    nmi: float
    ari: float

    def as_dict(self, prefix: str = "cluster_") -> dict[str, float]:
        return {f"{prefix}acc": self.acc, f"{prefix}nmi": self.nmi, f"{prefix}ari": self.ari}


def cluster_scores(y_true, y_pred) -> ClusterScores:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return ClusterScores(cluster_accuracy(y_true, y_pred), float(normalized_mutual_info_score(y_true, y_pred)),
                         float(adjusted_rand_score(y_true, y_pred)))


def matched_confusion(y_true, y_pred) -> tuple[np.ndarray, list[int], list[int]]:
    """Contingency table with clusters reordered so that matched clusters sit on the diagonal.

    Returns ``(counts, class_ids, cluster_ids)``; unmatched clusters come last, largest first.
    """
    counts, classes, clusters = contingency(y_true, y_pred)
    mapping = hungarian_match(y_true, y_pred)
    class_pos = {int(c): i for i, c in enumerate(classes)}
    matched = sorted((c for c in mapping), key=lambda c: class_pos[mapping[c]])
    rest = sorted((int(c) for c in clusters if int(c) not in mapping), key=lambda c: -counts[:, list(clusters).index(c)].sum())
    order = matched + rest
    col = {int(c): j for j, c in enumerate(clusters)}
    return counts[:, [col[c] for c in order]], [int(c) for c in classes], order


def kmeans(features: np.ndarray, k: int, seed: int = 0, normalize: bool = True) -> np.ndarray:
    """k-means (scikit-learn) cluster ids of ``features``, L2-normalised first (cosine geometry) by default."""
    from sklearn.cluster import KMeans

    x = np.asarray(features, dtype=np.float32)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
    k = max(1, min(k, len(x)))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x)


def occupancy(assignments: np.ndarray, k: int) -> np.ndarray:
    """Fraction of samples in each of ``k`` clusters (a collapsed clustering puts everything in one)."""
    counts = np.bincount(np.asarray(assignments, dtype=np.int64), minlength=k)[:k]
    return counts / max(1, counts.sum())
