"""Plotly figures for the dashboard, built from the run store's frames and arrays (no data access here)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from workbench.ui.thin import ThinSeries, ema as thin_ema, thin

POS_COLOR, NEG_COLOR = "#1f77b4", "#d62728"
PALETTE = qualitative.D3 + qualitative.Plotly


def _layout_dict(title: str, x: str, y: str, height: int = 320, note: str = "") -> dict:
    """``note``: a line under the title (what was summarised for display)."""
    return dict(title=dict(text=title, subtitle=dict(text=note, font=dict(size=11, color="grey"))) if note
                else dict(text=title), xaxis=dict(title=dict(text=x)), yaxis=dict(title=dict(text=y)),
                height=height, margin=dict(l=50, r=10, t=(64 + 20 * note.count("<br>")) if note else 40, b=40),
                legend=dict(orientation="h", y=-0.25))


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 320, note: str = "") -> go.Figure:
    fig.update_layout(**_layout_dict(title, x, y, height, note))
    return fig


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(colour) if colour.startswith("#") else (128, 128, 128)
    return f"rgba({r},{g},{b},{alpha})"


def _series(source, key: str) -> ThinSeries | None:
    """``key`` of a run's frame (thinned here when long) or of a :class:`~workbench.ui.thin.ScalarFollower`."""
    if isinstance(source, pd.DataFrame):
        return thin(source[key]) if key in source else None
    return source.series(key)


def _thin_traces(s: ThinSeries, y: np.ndarray, name: str, colour: str, smoothed: bool) -> list[dict]:
    """A run's line (with a min..max band where points summarise several steps; the hover says what a point
    stands for: the steps, how many values, their mean, min and max). Plain trace dicts: a figure built from
    them at once costs a few ms, against tens for traces added one by one."""
    if not s.thinned:
        return [dict(type="scatter", x=s.steps, y=y, name=name, line=dict(color=colour),
                     mode="lines+markers" if len(s) < 30 else "lines")]
    data = np.column_stack([s.first, s.last, s.count, s.value, s.lo, s.hi]).astype(float)
    what = "EMA %{y:.4g} of means" if smoothed else "mean %{y:.4g}"
    return [dict(type="scatter", x=s.steps, y=s.lo, mode="lines", line=dict(width=0), showlegend=False,
                 hoverinfo="skip", name=f"{name} min", legendgroup=name),
            dict(type="scatter", x=s.steps, y=s.hi, mode="lines", line=dict(width=0), fill="tonexty",
                 fillcolor=_rgba(colour, 0.25), showlegend=False, hoverinfo="skip", name=f"{name} max",
                 legendgroup=name),
            dict(type="scatter", x=s.steps, y=y, name=name, line=dict(color=colour, width=1.5), mode="lines",
                 legendgroup=name, customdata=data,
                 hovertemplate="steps %{customdata[0]:d}-%{customdata[1]:d}: %{customdata[2]:d} value(s), "
                 f"{what}<br>min %{{customdata[4]:.4g}}, max %{{customdata[5]:.4g}}")]


def _frame_flat_series(fig: go.Figure) -> go.Figure:
    """A figure whose values are all one number (a constant learning rate) gets a y range of half that number on
    either side: plotly's own range for it is -1..1 around 0, where 1e-4 reads as 0."""
    values = np.concatenate([np.asarray(t.y, dtype=float) for t in fig.data if t.y is not None] or [np.empty(0)])
    values = values[np.isfinite(values)]
    if len(values) and values.min() == values.max() and fig.layout.yaxis.type != "log":
        v = float(values[0])
        half = abs(v) / 2 or 1.0
        fig.update_yaxes(range=[v - half, v + half])
    return fig


def thin_note(widths: list[int]) -> str:
    if not widths:
        return ""
    w = max(widths)
    return f"thinned: a point is the mean of up to {w:,} steps,<br>the band their min-max; the newest steps exact"


def ema(s: pd.Series, smoothing: float) -> pd.Series:
    return s.ewm(alpha=1 - smoothing).mean() if smoothing > 0 else s


def curves(df: pd.DataFrame, keys: list[str], title: str, y: str = "", smoothing: float = 0.0) -> go.Figure:
    """Several keys of one run: its frame (step index) or its :class:`~workbench.ui.thin.ScalarFollower`."""
    traces, widths = [], []
    for i, k in enumerate(keys):
        s = _series(df, k)
        if s is not None and len(s):
            traces += _thin_traces(s, thin_ema(s, smoothing), k, PALETTE[i % len(PALETTE)], smoothing > 0)
            widths += [s.width] if s.thinned else []
    return _frame_flat_series(go.Figure(data=traces, layout=_layout_dict(title, "step", y, note=thin_note(widths))))


def overlay(frames: dict[str, pd.DataFrame], key: str, title: str, smoothing: float = 0.0,
            reference: dict[str, float] | None = None, log_y: bool = False) -> go.Figure:
    """One key across runs (a sweep over temperature, momentum, ...); ``reference`` draws dashed levels; ``log_y``
    a logarithmic y axis (for values spanning orders of magnitude, e.g. a change that stops below a threshold).

    ``frames`` maps a run to its frame (one column per key, step index) or to a
    :class:`~workbench.ui.thin.ScalarFollower`; a long run is drawn thinned (a mean line and a min-max band per
    bucket of steps, said under the title), every value counted."""
    traces, widths = [], []
    for i, (run, source) in enumerate(frames.items()):
        s = _series(source, key)
        if s is None or not len(s):
            continue
        traces += _thin_traces(s, thin_ema(s, smoothing), run, PALETTE[i % len(PALETTE)], smoothing > 0)
        widths += [s.width] if s.thinned else []
    fig = go.Figure(data=traces, layout=_layout_dict(title, "step", key, note=thin_note(widths)))
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    for name, level in (reference or {}).items():
        fig.add_hline(y=level, line_dash="dash", line_color="grey")
        # plotly places annotations on a log axis by the log10 of the value (shapes by the value itself)
        fig.add_annotation(text=name, xref="x domain", x=1, xanchor="right", yanchor="bottom", showarrow=False,
                           y=math.log10(level) if log_y else level, font=dict(color="grey"))
    return fig if reference else _frame_flat_series(fig)


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


MAX_COLUMNS = 600  # heatmap columns drawn; more logged histograms are summed in groups of consecutive ones


def histogram_columns(steps: np.ndarray, counts: np.ndarray, max_columns: int = MAX_COLUMNS):
    """``(x, counts, group)``: at most ``max_columns`` columns, each the sum of ``group`` consecutive logged
    histograms drawn at the middle of their steps (the last column: the last histogram alone, at its step);
    unchanged (``group == 1``) when there are few enough."""
    n = len(steps)
    if n <= max_columns:
        return np.asarray(steps), counts, 1
    group = -(-(n - 1) // (max_columns - 1))
    starts = np.arange(0, n - 1, group)
    summed = np.add.reduceat(counts[:n - 1], starts, axis=0)
    ends = np.minimum(starts + group, n - 1) - 1
    x = (np.asarray(steps)[starts] + np.asarray(steps)[ends]) / 2
    return np.append(x, steps[-1]), np.vstack([summed, counts[-1:]]), group


def score_heatmap(series, title: str, colorscale: str) -> go.Figure:
    """The whole distribution over time: rows are score bins, columns logged steps, colour the density. A long
    run's columns each sum consecutive histograms (every logged one counted; said under the title)."""
    x, counts, group = histogram_columns(series.steps, series.counts)
    width = np.diff(series.edges)
    dens = counts / counts.sum(axis=1, keepdims=True).clip(min=1) / width if len(counts) else series.density()
    where = "step %{x}" if group == 1 else f"steps around %{{x}} ({group} histograms)"
    fig = go.Figure(go.Heatmap(x=x, y=series.centers, z=np.log1p(dens.T), colorscale=colorscale,
                               colorbar=dict(title="log(1+density)"),
                               hovertemplate=where + "<br>score %{y:.3f}<br>log(1+density) %{z:.2f}<extra></extra>"))
    note = (f"thinned: a column sums {group} consecutive histograms,<br>the last column is the last one"
            if group > 1 else "")
    return _layout(fig, title, "step", "cosine similarity", height=300, note=note)


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
