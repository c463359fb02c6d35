"""Probes of frozen features.

Weighted kNN (Wu et al., 2018; the MoCo CIFAR demo and lightly use it every epoch): for a query q and the
``k`` most cosine-similar memory features with similarities ``s_i`` and labels ``y_i``, the score of class c is
``sum_i exp(s_i / t) * 1(y_i = c)`` and the prediction its argmax. Runs on the features' device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def default_knn_k(memory_labels: torch.Tensor, k_max: int = 200) -> int:
    """k=200 as in the papers, but at most half of the smallest class so small data is not swamped."""
    counts = torch.bincount(memory_labels[memory_labels >= 0])
    smallest = int(counts[counts > 0].min()) if len(counts) else 1
    return max(1, min(k_max, smallest // 2))


@torch.no_grad()
def knn_predict(query: torch.Tensor, memory: torch.Tensor, memory_labels: torch.Tensor, k: int = 200,
                t: float = 0.1, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN predictions for ``query (Q, d)`` against ``memory (M, d)`` (both normalised here)."""
    num_classes = num_classes or int(memory_labels.max()) + 1
    k = min(k, len(memory))
    memory = F.normalize(memory.float(), dim=1)
    labels = memory_labels.to(memory.device)
    preds = []
    for q in F.normalize(query.float(), dim=1).split(chunk):
        sim, idx = (q @ memory.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=q.device)
        # exp((s - s_max) / t): the same vote shares (one factor per query), and no overflow at a small t
        votes.scatter_add_(1, labels[idx], torch.exp((sim - sim[:, :1]) / t))
        preds.append(votes.argmax(1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def knn_accuracy(query, query_labels, memory, memory_labels, k: int = 200, t: float = 0.1) -> float:
    pred = knn_predict(query, memory, memory_labels, k=k, t=t)
    return (pred.cpu() == query_labels.cpu()).float().mean().item()
