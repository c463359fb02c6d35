"""Transductive few-shot classification by k-means (*Clustering is All You Need?* protocol).

An episode draws ``n_way`` classes, ``n_shot`` labelled support images and ``n_query`` unlabelled query images of
each. With features ``f`` (centred on the mean of the base/training features, then L2-normalised):

1. shift the queries by ``mean(support) - mean(query)`` (the two sets' offset, e.g. from the class imbalance of
   a transductive batch, is removed);
2. start the ``n_way`` centroids at the support class means;
3. hard k-means over support + queries, the support labels clamped: assign each query to its nearest centroid
   (Euclidean), recompute each centroid as the mean of its support and its assigned queries, until no query
   changes cluster (or ``max_iter``).

The accuracy is the share of queries in their class's cluster; over episodes we report the mean and the 95%
interval ``1.96 std / sqrt(episodes)``. All episodes run at once as batched tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from workbench.diagnostics.arrays import as_numpy


@dataclass
class FewShotResult:
    n_way: int
    n_shot: int
    n_query: int
    accuracy: float
    ci95: float
    episode_accuracies: np.ndarray

    @property
    def key(self) -> str:
        """The run-store key: ``fewshot_5w1s_acc`` for 5-way 1-shot."""
        return f"fewshot_{self.n_way}w{self.n_shot}s_acc"


def prepare_features(features, base_mean) -> torch.Tensor:
    """Centre on the base mean, then L2-normalise (step 0 of the protocol)."""
    f = torch.as_tensor(as_numpy(features, np.float32))
    f = f - torch.as_tensor(as_numpy(base_mean, np.float32))
    return torch.nn.functional.normalize(f, dim=1)


def sample_episodes(labels, n_way: int, n_shot: int, n_query: int, episodes: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``episodes`` episodes: support ``(E, n_way, n_shot)`` and query ``(E, n_way, n_query)``."""
    labels = torch.as_tensor(as_numpy(labels).astype(np.int64))
    per_class = {int(c): torch.nonzero(labels == c).flatten() for c in torch.unique(labels)}
    usable = [c for c, idx in per_class.items() if len(idx) >= n_shot + n_query]
    if len(usable) < n_way:
        raise ValueError(f"{n_way}-way {n_shot}-shot episodes with {n_query} queries need {n_way} classes with at "
                         f"least {n_shot + n_query} images each; these features have {len(usable)}")
    support = torch.empty(episodes, n_way, n_shot, dtype=torch.long)
    query = torch.empty(episodes, n_way, n_query, dtype=torch.long)
    for e in range(episodes):
        for w, k in enumerate(torch.randperm(len(usable), generator=generator)[:n_way].tolist()):
            idx = per_class[usable[k]]
            pick = idx[torch.randperm(len(idx), generator=generator)[: n_shot + n_query]]
            support[e, w], query[e, w] = pick[:n_shot], pick[n_shot:]
    return support, query


def transductive_kmeans(support: torch.Tensor, query: torch.Tensor, max_iter: int = 50) -> torch.Tensor:
    """Cluster ids (0..W-1, the support classes) of the queries. ``support (E, W, S, d)``, ``query (E, Q, d)``."""
    E, W, S, d = support.shape
    query = query + (support.reshape(E, W * S, d).mean(1) - query.mean(1))[:, None, :]
    support_sum = support.sum(2)  # (E, W, d)
    centroids = support_sum / S
    assign = None
    for _ in range(max_iter):
        new = torch.cdist(query, centroids).argmin(2)  # (E, Q)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        onehot = torch.nn.functional.one_hot(assign, W).to(query.dtype)  # (E, Q, W)
        centroids = (support_sum + onehot.transpose(1, 2) @ query) / (S + onehot.sum(1))[..., None]
    return assign


def fewshot_accuracy(features, labels, base_mean, n_way: int = 5, n_shot: int = 1, n_query: int = 15,
                     episodes: int = 600, seed: int = 0) -> FewShotResult:
    """Mean query accuracy and its 95% interval over ``episodes`` seeded episodes drawn from ``(features, labels)``;
    ``base_mean`` is the mean of the features the representation was trained on (e.g. the training split's)."""
    if episodes < 1 or n_way < 2 or n_shot < 1 or n_query < 1:
        raise ValueError(f"few-shot needs episodes >= 1, n_way >= 2, n_shot >= 1, n_query >= 1; got {episodes}, "
                         f"{n_way}, {n_shot}, {n_query}")
    f = prepare_features(features, base_mean)
    support, query = sample_episodes(labels, n_way, n_shot, n_query, episodes, torch.Generator().manual_seed(seed))
    E = episodes
    pred = transductive_kmeans(f[support], f[query].reshape(E, n_way * n_query, -1))
    truth = torch.arange(n_way).repeat_interleave(n_query)[None, :]
    acc = (pred == truth).float().mean(1).numpy()
    return FewShotResult(n_way, n_shot, n_query, float(acc.mean()), float(1.96 * acc.std() / np.sqrt(E)), acc)
