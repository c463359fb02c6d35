"""Clustering metrics against brute force, and stable 2-D layouts."""
import itertools

import numpy as np
import pytest

from workbench.diagnostics.clustering import (cluster_accuracy, cluster_scores, kmeans, matched_confusion,
                                              occupancy)
from workbench.diagnostics.projection import align_to, pca_2d


def brute_force_accuracy(y, c):
    """Best accuracy over every one-to-one map from clusters to classes (itertools, no Hungarian)."""
    classes, clusters = np.unique(y), np.unique(c)
    best = 0
    for perm in itertools.permutations(classes, min(len(classes), len(clusters))):
        for chosen in itertools.combinations(clusters, len(perm)):
            mapping = dict(zip(chosen, perm))
            best = max(best, sum(mapping.get(ci, None) == yi for yi, ci in zip(y, c)))
    return best / len(y)


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_accuracy_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 60)
    c = np.where(rng.random(60) < 0.6, (y + 1) % 4, rng.integers(0, 5, 60))  # 5 clusters, 4 classes
    assert cluster_accuracy(y, c) == pytest.approx(brute_force_accuracy(y, c))


def test_permuted_labels_score_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 200)
    perm = rng.permutation(6) + 10
    s = cluster_scores(y, perm[y])
    assert (s.acc, s.nmi, s.ari) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))


def test_random_assignment_scores_low():
    rng = np.random.default_rng(1)
    s = cluster_scores(rng.integers(0, 10, 5000), rng.integers(0, 10, 5000))
    assert s.nmi < 0.02 and abs(s.ari) < 0.01 and s.acc < 0.15


def test_matched_confusion_puts_matches_on_the_diagonal():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    c = np.array([7, 7, 3, 3, 3, 5, 5, 9])
    counts, classes, order = matched_confusion(y, c)
    assert classes == [0, 1, 2]
    assert order[:3] == [7, 3, 5] and order[3] == 9
    assert counts.trace() == 2 + 2 + 2 and counts.sum() == 8


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:4] * 5
    y = np.repeat(np.arange(4), 50)
    x = centers[y] + rng.normal(scale=0.3, size=(200, 8))
    assert cluster_accuracy(y, kmeans(x, 4)) == 1.0
    assert occupancy(np.array([0, 0, 1, 3]), 4).tolist() == [0.5, 0.25, 0.0, 0.25]


def test_procrustes_alignment_undoes_rotation_reflection_scale_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(100, 2))
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1, -1])
    moved = ref @ rot * 3.0 + np.array([4.0, -2.0])
    np.testing.assert_allclose(align_to(moved, ref), ref, atol=1e-9)


def test_pca_layouts_are_stable_across_snapshots():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(300, 16)) * np.linspace(3, 0.1, 16)
    layouts = [pca_2d(f)]
    for snapshot in (-f * 2, f + 0.01 * rng.normal(size=f.shape)):  # each aligned to the one before, as the app does
        layouts.append(pca_2d(snapshot, layouts[-1]))
    # a sign flip of every feature (PCA's arbitrary axis signs) does not move the points
    np.testing.assert_allclose(layouts[1], layouts[0], atol=1e-6)
    assert np.abs(layouts[2] - layouts[0]).mean() < 0.05 * np.abs(layouts[0]).mean()
    assert pca_2d(f).shape == (300, 2)


def test_pca_layout_of_a_probe_of_one_or_two_points():
    """A folder of a dozen images holds out one: its layout is a point at the origin, two lie on the first axis
    at their distance apart (the L2-normalised features), and UMAP says how many points it needs."""
    import pytest

    from workbench.diagnostics.projection import umap_2d

    assert pca_2d(np.ones((1, 8))).tolist() == [[0.0, 0.0]]
    x = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    xy = pca_2d(x)
    assert xy.shape == (2, 2) and np.allclose(xy[:, 1], 0)
    assert np.isclose(abs(xy[0, 0] - xy[1, 0]), np.sqrt(2), atol=1e-6)
    assert pca_2d(np.ones((5, 1))).shape == (5, 2)
    with pytest.raises(ValueError, match="UMAP needs at least 4 points and this snapshot has 3"):
        umap_2d(np.random.default_rng(0).random((3, 8)))
