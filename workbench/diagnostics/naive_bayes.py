"""The naive-Bayes probe of *Revisiting Discriminative vs. Generative Classifiers* (Zheng et al., ICML 2023):
a Gaussian class-conditional model with one diagonal covariance shared by all classes.

Fit: priors ``pi_k = n_k / n``, class means ``mu_k``, per-class variances ``v_kj`` (plus ``VAR_EPS``) averaged
with the priors into the shared ``sigma_j^2 = sum_k pi_k (v_kj + eps)``. Predict::

    argmax_k  log pi_k - 1/2 sum_j (x_j - mu_kj)^2 / sigma_j^2

Because the covariance is shared, the decision boundaries are linear, like logistic regression's: the two
probes are the generative / discriminative pair of Ng & Jordan, and the generative one needs O(log d) samples
to approach its asymptotic error against O(d) for the discriminative one (so it tends to win at small label
budgets and lose with many labels). ``variant="per_class"`` is scikit-learn's ``GaussianNB`` (one variance per
class and dimension, quadratic boundaries), kept as a named second variant.
"""
from __future__ import annotations

import numpy as np

from workbench.diagnostics.arrays import features_and_labels

VAR_EPS = 1e-9
VARIANTS = ("shared", "per_class")


class SharedDiagonalGaussianNB:
    """Gaussian naive Bayes with a diagonal covariance shared across classes (scikit-learn style fit/predict)."""

    def fit(self, x, y) -> "SharedDiagonalGaussianNB":
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
        self.classes_, inverse = np.unique(y, return_inverse=True)
        counts = np.bincount(inverse).astype(np.float64)
        self.priors_ = counts / counts.sum()
        self.means_ = np.zeros((len(self.classes_), x.shape[1]))
        np.add.at(self.means_, inverse, x)
        self.means_ /= counts[:, None]
        sq = np.zeros_like(self.means_)
        np.add.at(sq, inverse, (x - self.means_[inverse]) ** 2)
        self.var_ = self.priors_ @ (sq / counts[:, None] + VAR_EPS)  # (d,)
        return self

    def log_scores(self, x) -> np.ndarray:
        """``log pi_k - 1/2 sum_j (x_j - mu_kj)^2 / sigma_j^2`` for every sample and class, ``(N, K)``."""
        x = np.asarray(x, dtype=np.float64) / np.sqrt(self.var_)
        mu = self.means_ / np.sqrt(self.var_)
        sq = (x ** 2).sum(1)[:, None] - 2 * x @ mu.T + (mu ** 2).sum(1)[None, :]
        return np.log(self.priors_)[None, :] - 0.5 * sq

    def predict(self, x) -> np.ndarray:
        return self.classes_[self.log_scores(x).argmax(1)]


def naive_bayes(variant: str = "shared"):
    """An unfitted naive-Bayes classifier of ``variant`` (``shared``: the paper's; ``per_class``: ``GaussianNB``)."""
    if variant == "shared":
        return SharedDiagonalGaussianNB()
    if variant == "per_class":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB()
    raise ValueError(f"naive Bayes variant must be one of {VARIANTS}, got {variant!r}")


def naive_bayes_accuracy(train_x, train_y, test_x, test_y, variant: str = "shared") -> float:
    """Fit on the training features and labels, return the accuracy on the test features."""
    train_x, train_y = features_and_labels(train_x, train_y)
    test_x, test_y = features_and_labels(test_x, test_y)
    clf = naive_bayes(variant).fit(train_x, train_y)
    return float((clf.predict(test_x) == test_y).mean()) if len(test_y) else float("nan")
