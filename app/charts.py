"""Plotly figures built from the run store's reader objects (the app and the notebooks share them)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

POS_COLOR, NEG_COLOR = "#1f77b4", "#d62728"


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 320) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, margin=dict(l=40, r=10, t=40, b=40),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def curves(df: pd.DataFrame, keys: list[str], title: str, y: str = "") -> go.Figure:
    fig = go.Figure()
    for k in keys:
        if k in df:
            s = df[k].dropna()
            fig.add_trace(go.Scatter(x=s.index, y=s.values, mode="lines+markers" if len(s) < 30 else "lines", name=k))
    return _layout(fig, title, "step", y)


def pos_neg_histogram(pos, neg, step: int | None = None) -> go.Figure:
    """The latest positive and negative score distributions, overlaid as densities on [-1, 1]."""
    fig = go.Figure()
    for series, name, color in ((pos, "positive", POS_COLOR), (neg, "negative", NEG_COLOR)):
        if len(series.steps):
            dens = series.density()[-1]
            fig.add_trace(go.Bar(x=series.centers, y=dens, name=f"{name} (mean {series.mean[-1]:.3f})",
                                 marker_color=color, opacity=0.6, width=float(np.diff(series.edges)[0])))
    fig.update_layout(barmode="overlay")
    title = "pos/neg cosine similarity" + (f" at step {step}" if step is not None else "")
    return _layout(fig, title, "cosine similarity", "density")


def embedding_scatter(xy: np.ndarray, labels: np.ndarray, classes: list[str], title: str) -> go.Figure:
    names = [classes[int(l)] if 0 <= int(l) < len(classes) else str(int(l)) for l in labels]
    fig = go.Figure()
    for name in sorted(set(names), key=lambda n: (classes.index(n) if n in classes else len(classes), n)):
        m = np.array([n == name for n in names])
        fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, marker=dict(size=5)))
    return _layout(fig, title, "PC 1", "PC 2", height=420)
