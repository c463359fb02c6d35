"""Diagnostics against naive loops and scikit-learn."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.diagnostics import (alignment, collapse_std, default_knn_k, effective_rank, in_batch_scores,
                                   knn_predict, score_histogram, score_summary, tolerance, uniformity)


def _z(n=12, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1), F.normalize(torch.randn(n, d, generator=g), dim=1)


def test_in_batch_scores_match_loops():
    z1, z2 = _z()
    pos, neg = in_batch_scores(z1, z2)
    z = torch.cat([z1, z2])
    n = len(z1)
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        expected = [float(z[i] @ z[k]) for k in range(2 * n) if k not in (i, j)]
        assert neg[i].tolist() == pytest.approx(expected, abs=1e-6)
    assert pos.tolist() == pytest.approx([float(z1[i] @ z2[i]) for i in range(n)], abs=1e-6)


def test_score_summary_per_query_statistics():
    pos = torch.tensor([0.5, 0.7])
    neg = torch.tensor([[0.0, 0.2], [0.4, 0.4]])
    s, h = score_summary(pos, neg, bins=10)
    assert s["pos_mean"] == pytest.approx(0.6)
    assert s["neg_mean"] == pytest.approx(0.25)
    assert s["neg_var"] == pytest.approx((0.01 + 0.0) / 2)  # mean of per-query variances, as in the paper
    assert s["pos_neg_gap"] == pytest.approx(0.35)
    assert h["neg"][0].sum() == 4 and h["pos"][0].sum() == 2


def test_histogram_bins_are_fixed_on_minus_one_one():
    counts = score_histogram(torch.tensor([-1.0, -0.95, 0.0, 0.999, 1.0, 3.0]), bins=4)
    # bins [-1,-.5), [-.5,0), [0,.5), [.5,1]; 3.0 is clamped into the last bin
    assert counts.tolist() == [2, 0, 1, 3]


def test_alignment_and_uniformity_match_naive():
    z1, z2 = _z(10, 4)
    assert alignment(z1, z2) == pytest.approx(float(np.mean([float((a - b).norm() ** 2) for a, b in zip(z1, z2)])),
                                              rel=1e-5)
    pairs = [math.exp(-2 * float((z1[i] - z1[j]).norm() ** 2)) for i in range(10) for j in range(i + 1, 10)]
    assert uniformity(z1) == pytest.approx(math.log(np.mean(pairs)), rel=1e-5)


def test_uniformity_reference_values():
    g = torch.Generator().manual_seed(0)
    sphere = F.normalize(torch.randn(4000, 128, generator=g), dim=1)
    assert uniformity(sphere) == pytest.approx(-3.94, abs=0.05)  # Wang & Isola's value for d=128
    collapsed = F.normalize(torch.ones(50, 128), dim=1)
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-6)


def test_collapse_measures():
    g = torch.Generator().manual_seed(0)
    spread = F.normalize(torch.randn(2000, 64, generator=g), dim=1)
    assert collapse_std(spread) == pytest.approx(64 ** -0.5, rel=0.05)
    one_direction = F.normalize(torch.randn(2000, 1, generator=g) * torch.ones(1, 64) + 1e-4 * torch.randn(2000, 64,
                                generator=g), dim=1)
    assert effective_rank(one_direction) < 2.0
    assert effective_rank(spread) > 50
    # effective rank of a matrix with k equal singular values is k
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=g))
    assert effective_rank(q[:, :5].T * 3.0) == pytest.approx(5.0, rel=1e-4)


def test_tolerance_is_same_class_mean_similarity():
    z = F.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.2, 1]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    expected = (float(z[0] @ z[1]) + float(z[2] @ z[3])) / 2
    assert tolerance(z, labels) == pytest.approx(expected)


def test_weighted_knn_matches_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    g = torch.Generator().manual_seed(3)
    mem = torch.randn(300, 16, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    mem = mem + F.one_hot(labels, 16).float() * 2  # some class structure
    q = torch.randn(80, 16, generator=g) + F.one_hot(torch.randint(0, 5, (80,), generator=g), 16).float() * 2
    k, t = 20, 0.1
    ours = knn_predict(q, mem, labels, k=k, t=t)
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1 - d) / t)).fit(mem.numpy(), labels.numpy())
    theirs = clf.predict(q.numpy())
    assert (ours.numpy() == theirs).mean() == 1.0


def test_default_k_is_small_for_small_data():
    assert default_knn_k(torch.arange(100) % 10) == 5
    assert default_knn_k(torch.arange(100000) % 10) == 200


def test_score_interpretation_flags_collapse_and_easy_positives():
    from workbench.diagnostics.scores import interpret_scores

    collapsed = interpret_scores(0.99, 0.98, 0.0001)
    assert collapsed[0][0] == "error" and "collapsed" in collapsed[0][1]
    easy = interpret_scores(0.9, 0.0, 0.02, first_pos_mean=0.9)
    assert any(level == "warning" and "too easy" in msg for level, msg in easy)
    healthy = interpret_scores(0.8, 0.01, 0.02, tau=0.2, first_pos_mean=0.4)
    assert [level for level, _ in healthy] == ["success", "info"]
    frozen = interpret_scores(0.15, 0.0, 0.0001)
    assert any("barely" in msg for _, msg in frozen)


def test_a_short_moco_run_with_crowded_negatives_is_explained():
    from workbench.diagnostics.scores import interpret_scores

    short = interpret_scores(0.6, 0.31, 0.03, momentum=0.99, total_steps=150)
    assert any(level == "info" and "momentum encoder" in msg and "150 steps" in msg for level, msg in short)
    for m, neg, steps in ((0.99, 0.1, 150), (0.99, 0.31, 5000), (None, 0.31, 150)):  # spread, long, not MoCo
        assert not any("momentum encoder" in msg for _, msg in interpret_scores(0.6, neg, 0.03, momentum=m,
                                                                                  total_steps=steps))


def test_uniformity_reference_matches_published_values_and_sampling():
    from workbench.diagnostics.geometry import uniformity_reference

    assert [round(uniformity_reference(d), 2) for d in (2, 16, 128)] == [-1.58, -3.51, -3.94]  # Wang & Isola
    g = torch.Generator().manual_seed(0)
    sample = F.normalize(torch.randn(3000, 32, generator=g), dim=1)
    assert uniformity(sample) == pytest.approx(uniformity_reference(32), abs=0.03)


def test_knn_at_a_tiny_temperature_is_the_nearest_neighbour_not_an_overflow():
    """exp(s / t) overflows float32 for t < ~0.011; the vote shares must not depend on that."""
    g = torch.Generator().manual_seed(0)
    memory, query = torch.randn(300, 16, generator=g), torch.randn(80, 16, generator=g)
    labels = torch.randint(0, 6, (300,), generator=g)
    nearest = labels[(F.normalize(query, dim=1) @ F.normalize(memory, dim=1).T).argmax(1)]
    assert torch.equal(knn_predict(query, memory, labels, k=50, t=0.001), nearest)
