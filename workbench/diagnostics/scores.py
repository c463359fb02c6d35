"""Positive and negative similarity scores, the view of "Improving Contrastive Learning by Visualizing Feature
Transformation" (Zhu et al., 2021).

With L2-normalised embeddings, a positive score is the cosine similarity of the two views of one image and a
negative score that of an anchor with any other sample it is contrasted with. The paper plots per-iteration batch
means of ``pos``, of the per-query negative mean and of the per-query negative variance; we keep those
(``pos_mean``, ``neg_mean``, ``neg_var``) and the whole distributions as histograms over fixed bins on [-1, 1].
"""
from __future__ import annotations

import torch

BINS_RANGE = (-1.0, 1.0)


def in_batch_scores(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's in-batch scores for L2-normalised ``z1, z2`` of shape ``(N, d)``.

    Returns ``pos`` of shape ``(N,)`` (``z1_n . z2_n``) and ``neg`` of shape ``(2N, 2N - 2)``: for each of the 2N
    views as anchor, its similarity with every view except itself and its positive.
    """
    n = z1.shape[0]
    z = torch.cat([z1, z2]).float()
    sim = z @ z.T
    idx = torch.arange(2 * n, device=z.device)
    partner = (idx + n) % (2 * n)
    keep = torch.ones_like(sim, dtype=torch.bool)
    keep[idx, idx] = False
    keep[idx, partner] = False
    pos = sim[idx[:n], partner[:n]]
    return pos, sim[keep].view(2 * n, 2 * n - 2)


def score_histogram(values: torch.Tensor, bins: int = 100) -> torch.Tensor:
    """Counts of ``values`` over ``bins`` equal bins on [-1, 1] (values outside are clamped in)."""
    lo, hi = BINS_RANGE
    return torch.histc(values.detach().float().clamp(lo, hi), bins=bins, min=lo, max=hi).to(torch.int64)


def score_summary(pos: torch.Tensor, neg: torch.Tensor, bins: int = 100) -> tuple[dict, dict]:
    """Scalars and histograms of positive scores ``pos (Q,)`` and negative scores ``neg (Q, M)`` per query.

    Scalars: ``pos_mean``, ``pos_var``, ``neg_mean`` (mean over queries of the per-query mean), ``neg_var`` (mean
    over queries of the per-query variance, as plotted in the paper), ``pos_neg_gap = pos_mean - neg_mean``.
    Histograms: ``{"pos": (counts, mean, var), "neg": (counts, mean, var)}`` over all values.
    """
    pos = pos.detach().float().flatten()
    neg = neg.detach().float()
    if neg.ndim == 1:
        neg = neg[None]
    scalars = {
        "pos_mean": pos.mean().item(),
        "pos_var": pos.var(unbiased=False).item(),
        "neg_mean": neg.mean(dim=1).mean().item(),
        "neg_var": neg.var(dim=1, unbiased=False).mean().item(),
    }
    scalars["pos_neg_gap"] = scalars["pos_mean"] - scalars["neg_mean"]
    flat = neg.flatten()
    hists = {
        "pos": (score_histogram(pos, bins), scalars["pos_mean"], scalars["pos_var"]),
        "neg": (score_histogram(flat, bins), flat.mean().item(), flat.var(unbiased=False).item()),
    }
    return scalars, hists


SHORT_MOCO_RUN = 1000  # steps; below this a MoCo run's negatives have rarely spread out yet (see below)


def queue_negatives_hint(momentum: float | None, neg_mean: float, total_steps: int | None) -> tuple[str, str] | None:
    """A reading for short MoCo-style runs whose negatives are still similar.

    Measured on digits (tau 0.07, m 0.99, AdamW, cosine schedule): every method's ``neg_mean`` first rises (the random
    network's outputs start in one cone, ~0.3-0.4, and the first steps narrow it to ~0.6 by step 10), then falls.
    SimCLR reaches 0.15 by step 150; MoCo only 0.31, because its negatives are keys of the momentum encoder that
    receive no gradient and spread only as the encoder drifts; trained for 500 steps MoCo reaches 0.10. The
    momentum is not the cause: m = 0.9 ends higher (0.43), and the queue size makes no difference.
    """
    if momentum is None or neg_mean <= 0.25 or not total_steps or total_steps >= SHORT_MOCO_RUN:
        return None
    return ("info", f"MoCo's negatives are keys from the momentum encoder: they get no gradient and spread out more "
                    f"slowly than SimCLR's in-batch negatives, so neg_mean ({neg_mean:.2f}) stays high in a short run "
                    f"({total_steps:,} steps). Train for more steps; a lower momentum m does not fix it.")


def interpret_scores(pos_mean: float, neg_mean: float, neg_var: float, tau: float | None = None,
                     first_pos_mean: float | None = None, momentum: float | None = None,
                     total_steps: int | None = None) -> list[tuple[str, str]]:
    """Plain-language readings of the pos/neg statistics at one step, as ``(level, message)`` pairs.

    The thresholds are rules of thumb drawn from the curves in Zhu et al. (2021) and Wang & Liu (2021): healthy
    runs raise ``pos_mean`` towards 0.8-0.9 while ``neg_mean`` stays near 0 and ``neg_var`` shrinks slowly.
    """
    out: list[tuple[str, str]] = []
    if pos_mean > 0.95 and neg_mean > 0.9:
        out.append(("error", "Positives and negatives are all near 1: the embeddings have collapsed to one point. "
                             "Check the learning rate, the projection head and the temperature."))
        return out
    if neg_mean > 0.3:
        out.append(("warning", f"Negatives are similar on average (mean {neg_mean:.2f}): the embeddings crowd in one "
                               "region of the sphere (poor uniformity). A smaller temperature weights the hardest "
                               "negatives more and spreads them out."))
    if first_pos_mean is not None and first_pos_mean > 0.85:
        out.append(("warning", f"Positives started almost identical (pos_mean {first_pos_mean:.2f} at the first "
                               "logged step): the views are too easy to match, so the task teaches little. Stronger "
                               "augmentation (smaller crops, more colour jitter) makes positives harder."))
    if pos_mean < 0.3 and neg_var < 0.005:
        out.append(("warning", "Positives are far apart and negatives have almost no spread: the encoder is barely "
                               "learning (a frozen key encoder in MoCo with m=1 looks like this)."))
    if pos_mean - neg_mean > 0.5 and neg_mean < 0.2:
        out.append(("success", f"Positives ({pos_mean:.2f}) are well separated from negatives ({neg_mean:.2f}): "
                               "the views of an image agree while other images stay spread out."))
    hint = queue_negatives_hint(momentum, neg_mean, total_steps)
    if hint is not None:
        out.append(hint)
    if tau is not None:
        out.append(("info", f"Temperature tau = {tau:g}. Each negative's share of the gradient is proportional to "
                            f"exp(s/tau): at small tau the right tail of the negative histogram (the hardest "
                            f"negatives) dominates; at large tau all negatives count about equally."))
    return out
