"""Plotly figures for the dashboard, built from the run store's frames and arrays (no data access here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

POS_COLOR, NEG_COLOR = "#1f77b4", "#d62728"
PALETTE = qualitative.D3 + qualitative.Plotly


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 320) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, margin=dict(l=50, r=10, t=40, b=40),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def ema(s: pd.Series, smoothing: float) -> pd.Series:
    return s.ewm(alpha=1 - smoothing).mean() if smoothing > 0 else s


def curves(df: pd.DataFrame, keys: list[str], title: str, y: str = "", smoothing: float = 0.0) -> go.Figure:
    """Several keys of one run."""
    fig = go.Figure()
    for k in keys:
        if k in df:
            s = ema(df[k].dropna(), smoothing)
            fig.add_trace(go.Scatter(x=s.index, y=s.values, mode="lines+markers" if len(s) < 30 else "lines", name=k))
    return _layout(fig, title, "step", y)


def overlay(frames: dict[str, pd.DataFrame], key: str, title: str, smoothing: float = 0.0,
            reference: dict[str, float] | None = None) -> go.Figure:
    """One key across runs (a sweep over temperature, momentum, ...); ``reference`` draws dashed levels."""
    fig = go.Figure()
    for i, (run, df) in enumerate(frames.items()):
        if key not in df:
            continue
        s = ema(df[key].dropna(), smoothing)
        fig.add_trace(go.Scatter(x=s.index, y=s.values, name=run, line=dict(color=PALETTE[i % len(PALETTE)]),
                                 mode="lines+markers" if len(s) < 30 else "lines"))
    for name, level in (reference or {}).items():
        fig.add_hline(y=level, line_dash="dash", line_color="grey", annotation_text=name)
    return _layout(fig, title, "step", key)


def pos_neg_histogram(pos, neg, index: int = -1) -> go.Figure:
    """Positive and negative score distributions at one logged step, overlaid as densities on [-1, 1]."""
    fig = go.Figure()
    step = None
    for series, name, color in ((pos, "positive", POS_COLOR), (neg, "negative", NEG_COLOR)):
        if len(series.steps):
            i = index if index >= 0 else len(series.steps) + index
            i = min(i, len(series.steps) - 1)
            step = int(series.steps[i])
            fig.add_trace(go.Bar(x=series.centers, y=series.density()[i], name=f"{name} (mean {series.mean[i]:.3f},"
                                 f" var {series.var[i]:.4f})", marker_color=color, opacity=0.6,
                                 width=float(np.diff(series.edges)[0])))
    fig.update_layout(barmode="overlay")
    title = "pos/neg cosine similarity" + (f" at step {step}" if step is not None else "")
    return _layout(fig, title, "cosine similarity", "density")


def score_heatmap(series, title: str, colorscale: str) -> go.Figure:
    """The whole distribution over time: rows are score bins, columns logged steps, colour the density."""
    dens = series.density()
    fig = go.Figure(go.Heatmap(x=series.steps, y=series.centers, z=np.log1p(dens.T), colorscale=colorscale,
                               colorbar=dict(title="log(1+density)"),
                               hovertemplate="step %{x}<br>score %{y:.3f}<br>log(1+density) %{z:.2f}<extra></extra>"))
    return _layout(fig, title, "step", "cosine similarity", height=300)


def embedding_scatter(xy: np.ndarray, colour: np.ndarray, names: list[str], title: str,
                      axis: tuple[str, str] = ("1", "2")) -> go.Figure:
    """Points coloured by a categorical ``colour`` (index into ``names``); customdata = row in the snapshot."""
    fig = go.Figure()
    rows = np.arange(len(xy))
    for i, name in enumerate(names):
        m = colour == i
        if not m.any():
            continue
        fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, customdata=rows[m],
                                   marker=dict(size=5, color=PALETTE[i % len(PALETTE)]),
                                   hovertemplate=f"{name}<br>point %{{customdata}}<extra></extra>"))
    fig.update_layout(dragmode="lasso")
    return _layout(fig, title, axis[0], axis[1], height=520)


def heatmap(z: np.ndarray, x: list, y: list, title: str, xlabel: str, ylabel: str, text: bool = True) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in x], y=[str(v) for v in y], colorscale="Blues",
                               text=z if text else None, texttemplate="%{text}" if text else None))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return _layout(fig, title, xlabel, ylabel, height=420)


def before_after(before: np.ndarray, after: np.ndarray, fraction: float) -> np.ndarray:
    """A wipe between two (H, W, 3) uint8 images: ``after`` left of ``fraction`` of the width, ``before`` right of
    it, with a one-pixel white divider."""
    w = before.shape[1]
    cut = int(round(fraction * w))
    out = before.copy()
    out[:, :cut] = after[:, :cut]
    if 0 < cut < w:
        out[:, cut] = 255
    return out
