"""Figures and small computations the tutorial notebooks share (``notebooks/NN_*.ipynb``), kept here so the
notebooks hold prose and experiments, not helper code.

* :func:`gradient_shares`, :func:`negatives_for_half`, :func:`gradient_share_figure`: how NT-Xent's gradient is
  shared among the negatives of one anchor, ``exp(s_k / tau) / sum_k' exp(s_k' / tau)`` (Wang & Liu, 2021);
* :func:`sweep_lines`: one scalar against a swept knob (temperature, momentum, label budget), one line per series;
* :func:`fewshot_methods`: nearest centroid against transductive k-means on the same few-shot episodes;
* :func:`image_rows`: rows of small images (cluster examples, views) as one figure;
* :func:`check_finding`: the last cell of every tutorial: prints the numbers, records them for ``make tutorials``
  and, in full mode, fails when the finding does not hold.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from workbench.ui.charts import NEG_COLOR, PALETTE, POS_COLOR, _layout

REPORT_ENV = "WORKBENCH_TUTORIAL_REPORT"  # a JSON file the finding is written to (set by `make tutorials`)


def gradient_shares(similarities, tau: float) -> np.ndarray:
    """Each negative's share of the gradient NT-Xent puts on the negatives of one anchor:
    ``softmax(s / tau)`` over the negatives' cosine similarities ``s`` (computed stably). Sums to 1; the order
    of ``similarities`` is kept. A 2-d array is one anchor per row."""
    s = np.asarray(similarities, dtype=np.float64) / tau
    s = s - s.max(axis=-1, keepdims=True)
    w = np.exp(s)
    return w / w.sum(axis=-1, keepdims=True)


def negatives_for_half(shares) -> np.ndarray | int:
    """How many of the largest shares it takes to reach half of the total (per row for a 2-d array)."""
    w = -np.sort(-np.asarray(shares, dtype=np.float64), axis=-1)
    cum = np.cumsum(w, axis=-1) / w.sum(axis=-1, keepdims=True)
    n = (cum < 0.5).sum(axis=-1) + 1
    return int(n) if np.ndim(n) == 0 else n


def share_summary(similarity, labels, taus) -> "pd.DataFrame":
    """For a square similarity matrix of one set of embeddings (row = anchor, every other point a negative) and
    their class labels: per temperature, the median number of negatives that carry half of an anchor's gradient
    and the mean share that goes to negatives of the anchor's own class (images the loss pushes away although
    they are semantically the same: what tolerance is about)."""
    import pandas as pd

    s = np.asarray(similarity, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(s)
    off = ~np.eye(n, dtype=bool)
    neg = s[off].reshape(n, n - 1)
    same = (labels[:, None] == labels[None, :])[off].reshape(n, n - 1)
    rows = []
    for tau in taus:
        w = gradient_shares(neg, tau)
        rows.append({"tau": tau, "negatives for half (median)": float(np.median(negatives_for_half(w))),
                     "share on same-class negatives": float((w * same).sum(axis=1).mean()),
                     "same-class fraction of negatives": float(same.mean())})
    return pd.DataFrame(rows).set_index("tau")


def gradient_share_figure(similarities, tau: float, positive: float | None = None) -> go.Figure:
    """Left: the negatives' cosine similarities to one anchor (histogram; the positive as a blue line).
    Right: each negative's share of the gradient at temperature ``tau``, largest first, with the cumulative share
    and the number of negatives that carry half of it."""
    from plotly.subplots import make_subplots

    s = np.asarray(similarities, dtype=np.float64)
    w = gradient_shares(s, tau)
    order = np.argsort(-w)
    cum = np.cumsum(w[order])
    half = negatives_for_half(w)
    fig = make_subplots(rows=1, cols=2, specs=[[{}, {"secondary_y": True}]], horizontal_spacing=0.12,
                        subplot_titles=("cosine similarity to the anchor",
                                        f"share of the gradient at tau = {tau:g}: {half} of {len(s)} negatives "
                                        "carry half"))
    fig.add_trace(go.Histogram(x=s, xbins=dict(start=-1, end=1, size=0.04), marker_color=NEG_COLOR, opacity=0.7,
                               name="negatives"), row=1, col=1)
    if positive is not None:
        fig.add_vline(x=float(positive), line_color=POS_COLOR, line_width=3, row=1, col=1,
                      annotation_text="positive", annotation_position="top left")
    rank = np.arange(1, len(s) + 1)
    fig.add_trace(go.Bar(x=rank, y=w[order], marker_color=NEG_COLOR, name="share of each negative",
                         customdata=s[order], hovertemplate="rank %{x}<br>share %{y:.4f}<br>s = %{customdata:.3f}"
                                                           "<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(x=rank, y=cum, mode="lines", line=dict(color="black"), name="cumulative share"),
                  row=1, col=2, secondary_y=True)
    fig.add_vline(x=half, line_dash="dash", line_color="grey", row=1, col=2)
    fig.update_xaxes(range=[-1, 1], title_text="cosine similarity s", row=1, col=1)
    fig.update_xaxes(type="log", title_text="negatives, largest share first (log)", row=1, col=2)
    fig.update_yaxes(title_text="negatives", row=1, col=1)
    fig.update_yaxes(title_text="share", row=1, col=2)
    fig.update_yaxes(title_text="cumulative", range=[0, 1.02], row=1, col=2, secondary_y=True)
    fig.update_layout(height=360, margin=dict(l=50, r=50, t=50, b=40), legend=dict(orientation="h", y=-0.25),
                      bargap=0)
    return fig


def sweep_lines(x, series: dict[str, list], title: str, xlabel: str, ylabel: str, log_x: bool = False,
                reference: dict[str, float] | None = None) -> go.Figure:
    """One line per entry of ``series`` (name -> values at ``x``): a scalar against a swept knob."""
    fig = go.Figure()
    for i, (name, ys) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(x), y=list(ys), name=name, mode="lines+markers",
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    for name, level in (reference or {}).items():
        fig.add_hline(y=level, line_dash="dash", line_color="grey", annotation_text=name)
    if log_x:
        fig.update_xaxes(type="log", tickvals=list(x), ticktext=[f"{v:g}" for v in x])
    fig.update_layout(showlegend=True)
    return _layout(fig, title, xlabel, ylabel, height=340)


def image_rows(rows: dict[str, np.ndarray], title: str, per_row: int = 12) -> go.Figure:
    """Rows of small images, one row per entry of ``rows`` (name -> (n, C, H, W) or (n, H, W) uint8 images; at
    most ``per_row`` each), the name at the left of its row; one grey image per missing slot."""
    blocks = []
    names = list(rows)
    h = w = None
    for name in names:
        imgs = np.asarray(rows[name])
        if imgs.ndim == 3:
            imgs = imgs[:, None]
        if imgs.shape[1] == 1:
            imgs = np.repeat(imgs, 3, axis=1)
        h, w = imgs.shape[-2:] if len(imgs) else (h or 8, w or 8)
        row = np.full((per_row, 3, h, w), 128, np.uint8)
        row[: min(per_row, len(imgs))] = imgs[:per_row]
        pad = np.full((per_row, 3, h, 1), 255, np.uint8)
        blocks.append(np.concatenate(np.concatenate([row, pad], axis=3), axis=2))  # (3, h, per_row*(w+1))
    sep = np.full((3, 1, blocks[0].shape[2]), 255, np.uint8)
    grid = np.concatenate([np.concatenate([b, sep], axis=1) for b in blocks], axis=1).transpose(1, 2, 0)
    fig = go.Figure(go.Image(z=grid))
    step = grid.shape[0] / len(names)
    fig.update_yaxes(tickvals=[step * (i + 0.5) for i in range(len(names))], ticktext=names, showgrid=False)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_layout(title=title, height=max(180, 40 + 34 * len(names)), margin=dict(l=90, r=10, t=40, b=10))
    return fig


def fewshot_methods(features, labels, base_mean, n_way: int = 5, shots=(1, 5), n_query: int = 15,
                    episodes: int = 600, seed: int = 0) -> "pd.DataFrame":
    """Few-shot accuracy of the same seeded episodes classified two ways (*Clustering is All You Need?*):
    **nearest centroid** (each query to the closest support mean, inductive: one query at a time) and
    **transductive k-means** (the workbench's protocol: the queries shifted onto the support, then k-means over
    support and queries with the support labels clamped). One row per (shot, method): accuracy and 95% interval."""
    import pandas as pd
    import torch

    from workbench.diagnostics.fewshot import prepare_features, sample_episodes, transductive_kmeans

    f = prepare_features(features, base_mean)
    rows = []
    for shot in shots:
        support, query = sample_episodes(labels, n_way, shot, n_query, episodes, torch.Generator().manual_seed(seed))
        s, q = f[support], f[query].reshape(episodes, n_way * n_query, -1)
        truth = torch.arange(n_way).repeat_interleave(n_query)[None, :]
        preds = {"nearest centroid": torch.cdist(q, s.mean(2)).argmin(2), "transductive k-means": transductive_kmeans(s, q)}
        for name, pred in preds.items():
            acc = (pred == truth).float().mean(1).numpy()
            rows.append({"shots": shot, "method": name, "accuracy": float(acc.mean()),
                         "ci95": float(1.96 * acc.std() / np.sqrt(episodes))})
    return pd.DataFrame(rows)


def check_finding(notebook: str, claim: str, numbers: dict[str, float], holds: bool, smoke: bool,
                  report: str | os.PathLike | None = None) -> bool:
    """The last cell of a tutorial: print ``claim``, the ``numbers`` behind it and whether it ``holds``; write
    them as JSON to ``report`` (default: the file named by ``$WORKBENCH_TUTORIAL_REPORT``, as ``make tutorials``
    sets it) and, in full mode, raise ``AssertionError`` when the finding does not hold. In smoke mode (seconds of
    training) the numbers mean nothing: nothing is raised."""
    holds = bool(holds)
    verdict = "holds" if holds else "does NOT hold"
    print(f"{notebook}: {claim}")
    for k, v in numbers.items():
        print(f"  {k} = {v:.4g}" if isinstance(v, (int, float, np.floating)) else f"  {k} = {v}")
    print(f"finding {verdict}" + (" (smoke mode: not checked)" if smoke else ""))
    path = report or os.environ.get(REPORT_ENV)
    if path:
        record = {"notebook": notebook, "claim": claim, "holds": holds, "smoke": bool(smoke),
                  "numbers": {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else str(v))
                              for k, v in numbers.items()}}
        Path(path).write_text(json.dumps(record, indent=1))
    if not smoke and not holds:
        raise AssertionError(f"{notebook}: the finding did not reproduce: {claim} ({numbers})")
    return holds
