"""Label budgets: each probe trained on ``n`` labelled images per class, for several ``n``.

For every budget ``n`` in ``BUDGETS`` (``None`` = all labels) and every probe (linear, naive Bayes, kNN), draw
``draws`` seeded class-balanced subsets of the training features, fit the probe on each, and report the mean and
standard deviation of the test accuracy. *Revisiting Discriminative vs. Generative Classifiers* predicts that
naive Bayes reaches its plateau with fewer labels than logistic regression, so it wins at the small budgets.
Budgets larger than the smallest class are skipped (they would not be class-balanced).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from workbench.diagnostics.arrays import features_and_labels
from workbench.diagnostics.knn import default_knn_k, knn_predict
from workbench.diagnostics.linear import DEFAULT_CS, linear_probe
from workbench.diagnostics.naive_bayes import naive_bayes_accuracy

BUDGETS = (1, 2, 5, 10, 20, 50, None)
PROBES = ("linear", "nb", "knn")


def sample_per_class(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` random samples of every class in ``labels`` (sorted)."""
    picks = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def probe_accuracy(probe: str, train_x, train_y, test_x, test_y, Cs=DEFAULT_CS, knn_t: float = 0.1) -> float:
    """Test accuracy of one probe (``linear``, ``nb`` or ``knn``) fitted on ``(train_x, train_y)``."""
    if probe == "linear":
        return linear_probe(train_x, train_y, test_x, test_y, Cs=Cs).accuracy
    if probe == "nb":
        return naive_bayes_accuracy(train_x, train_y, test_x, test_y)
    if probe == "knn":
        memory_y = torch.from_numpy(train_y)
        pred = knn_predict(torch.from_numpy(test_x), torch.from_numpy(train_x), memory_y,
                           k=default_knn_k(memory_y), t=knn_t, num_classes=int(max(train_y.max(), test_y.max())) + 1)
        return float((pred.numpy() == test_y).mean())
    raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")


def label_budgets(train_x, train_y, test_x, test_y, budgets=BUDGETS, probes=PROBES, draws: int = 5,
                  seed: int = 0, Cs=DEFAULT_CS, knn_t: float = 0.1, progress=None) -> list[dict]:
    """One record per (probe, budget): ``probe, labels_per_class`` (``None`` = all), ``accuracy`` (the mean over
    draws), ``std``, ``draws``, ``seconds`` (all draws). ``progress`` (e.g. a tqdm bar) is advanced once per fitted probe."""
    train_x, train_y = features_and_labels(train_x, train_y)
    test_x, test_y = features_and_labels(test_x, test_y)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    smallest = int(np.bincount(train_y - train_y.min())[np.bincount(train_y - train_y.min()) > 0].min())
    records = []
    for n in budgets:
        if n is not None and n > smallest:
            continue
        subsets = ([np.arange(len(train_y))] if n is None else
                   [sample_per_class(train_y, n, np.random.default_rng([seed, n, d])) for d in range(draws)])
        for probe in probes:
            accs, t0 = [], time.perf_counter()
            for idx in subsets:
                accs.append(probe_accuracy(probe, train_x[idx], train_y[idx], test_x, test_y, Cs, knn_t))
                if progress is not None:
                    progress.update()
            records.append(dict(probe=probe, labels_per_class=n, accuracy=float(np.mean(accs)),
                                std=float(np.std(accs)), draws=len(accs), seconds=time.perf_counter() - t0))
    return records


def budget_key(probe: str, n: int | None) -> str:
    """The run-store key of a budget record: ``linear_acc@5`` (5 labels per class) or ``linear_acc`` (all)."""
    return f"{probe}_acc" if n is None else f"{probe}_acc@{n}"
