"""Plotly figures of the Probes page, built from ``workbench eval``'s records and spectra (no data access here).

A record is one row of an evaluation's ``probes`` table: ``key, probe, labels_per_class (None = all labels),
block, accuracy, std, ci95, draws``. Every builder takes ``{run name: records}`` so that runs overlay.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from workbench.ui.charts import PALETTE, _layout

PROBES = {"linear": "linear", "nb": "naive Bayes", "knn": "kNN"}  # probe -> legend name
PROBE_COLORS = {"linear": "#1f77b4", "nb": "#2ca02c", "knn": "#ff7f0e"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SPECTRUM_FLOOR = 1e-7  # singular values below this are numerically zero: drawn at the floor on log axes


def _number(v) -> float | None:
    """A record's value as a float, ``None`` for a missing one (JSON null, NaN)."""
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def budget_records(records: list[dict]) -> list[dict]:
    """The label-budget rows of an evaluation (linear / naive Bayes / kNN on the final features, any budget)."""
    return [r for r in records if r.get("probe") in PROBES and _number(r.get("block")) is None
            and _number(r.get("accuracy")) is not None]


def all_labels_x(budgets: list[int]) -> float:
    """Where "all labels" sits on the log axis: one step beyond the largest budget (not to scale)."""
    return float(max(budgets) * 3) if budgets else 1.0


def label_budget_curves(tables: dict[str, list[dict]]) -> go.Figure:
    """Test accuracy against labels per class (log axis, "all" last), one line per probe and run (colour = probe,
    dash = run) with a band of +-1 standard deviation over the seeded draws."""
    budgets = sorted({int(_number(r["labels_per_class"])) for recs in tables.values() for r in budget_records(recs)
                      if _number(r.get("labels_per_class")) is not None})
    x_all = all_labels_x(budgets)
    fig = go.Figure()
    several = len(tables) > 1
    for i, (run, records) in enumerate(tables.items()):
        rows = budget_records(records)
        for probe, label in PROBES.items():
            mine = [r for r in rows if r["probe"] == probe]
            if not mine:
                continue
            mine.sort(key=lambda r: math.inf if _number(r.get("labels_per_class")) is None
                      else _number(r["labels_per_class"]))
            n = [_number(r.get("labels_per_class")) for r in mine]
            x = [x_all if v is None else v for v in n]
            y = [_number(r["accuracy"]) for r in mine]
            s = [_number(r.get("std")) or 0.0 for r in mine]
            color, group = PROBE_COLORS[probe], f"{run}/{probe}"
            name = f"{run} · {label}" if several else label
            if any(s):
                fig.add_trace(go.Scatter(x=x + x[::-1], y=[a + b for a, b in zip(y, s)] +
                                         [a - b for a, b in zip(y, s)][::-1], mode="lines", fill="toself",
                                         fillcolor=_rgba(color, 0.12), line=dict(width=0), hoverinfo="skip",
                                         showlegend=False, legendgroup=group, name=f"{name} ±std"))
            text = ["all labels" if v is None else f"{int(v)} per class" for v in n]
            fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers", legendgroup=group,
                                     line=dict(color=color, dash=DASHES[i % len(DASHES)]),
                                     customdata=np.stack([s, [r.get("draws") or 1 for r in mine]], axis=1),
                                     text=text,
                                     hovertemplate=f"{name}<br>%{{text}}<br>accuracy %{{y:.3f}}"
                                                   " ± %{customdata[0]:.3f} (%{customdata[1]} draws)<extra></extra>"))
    ticks = budgets + [x_all]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(b) for b in budgets] + ["all"])
    return _layout(fig, "accuracy against labels per class", "labels per class (log scale; 'all' not to scale)",
                   "test accuracy", height=380)


def fewshot_records(records: list[dict]) -> list[dict]:
    return [r for r in records if str(r.get("probe", "")).startswith("fewshot")
            and _number(r.get("accuracy")) is not None]


def fewshot_bars(tables: dict[str, list[dict]]) -> go.Figure:
    """5-way 1-shot and 5-shot accuracies (transductive k-means), one bar per run, the 95% interval over the
    episodes as error bars."""
    fig = go.Figure()
    for i, (run, records) in enumerate(tables.items()):
        rows = sorted(fewshot_records(records), key=lambda r: _number(r["labels_per_class"]) or 0)
        if not rows:
            continue
        way = str(rows[0]["probe"]).split()[-1]  # "5-way"
        x = [f"{way} {int(_number(r['labels_per_class']))}-shot" for r in rows]
        y = [_number(r["accuracy"]) for r in rows]
        ci = [_number(r.get("ci95")) or 0.0 for r in rows]
        fig.add_trace(go.Bar(x=x, y=y, name=run, marker_color=PALETTE[i % len(PALETTE)],
                             error_y=dict(type="data", array=ci, visible=True),
                             text=[f"{a:.3f} ± {c:.3f}" for a, c in zip(y, ci)], textposition="inside",
                             customdata=[r.get("draws") or 0 for r in rows],
                             hovertemplate=f"{run}<br>%{{x}}: %{{y:.3f}} ± %{{error_y.array:.3f}} (95%, "
                                           "%{customdata} episodes)<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, "few-shot accuracy (95% interval)", "episode", "accuracy on the queries")


def block_records(records: list[dict]) -> list[dict]:
    return [r for r in records if _number(r.get("block")) is not None and _number(r.get("accuracy")) is not None]


def block_bars(tables: dict[str, list[dict]]) -> go.Figure:
    """The linear probe on every backbone block's pooled features, one bar per block and run."""
    fig = go.Figure()
    for i, (run, records) in enumerate(tables.items()):
        rows = sorted(block_records(records), key=lambda r: _number(r["block"]))
        if not rows:
            continue
        y = [_number(r["accuracy"]) for r in rows]
        fig.add_trace(go.Bar(x=[f"block {int(_number(r['block']))}" for r in rows], y=y, name=run,
                             marker_color=PALETTE[i % len(PALETTE)], text=[f"{a:.3f}" for a in y],
                             textposition="inside"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, "linear probe on each backbone block", "backbone block (pooled features)", "test accuracy")


def spectrum_lines(spectra: dict[str, np.ndarray], dashed: tuple[str, ...] = ()) -> go.Figure:
    """Singular values (descending) against their index, log y axis; names in ``dashed`` draw dashed."""
    fig = go.Figure()
    for i, (name, s) in enumerate(spectra.items()):
        s = np.maximum(np.asarray(s, dtype=np.float64), SPECTRUM_FLOOR)
        fig.add_trace(go.Scatter(x=np.arange(1, len(s) + 1), y=s, name=name, mode="lines",
                                 line=dict(color=PALETTE[i % len(PALETTE)], dash="dash" if name in dashed else "solid"),
                                 hovertemplate=f"{name}<br>σ_%{{x}} = %{{y:.3g}}<extra></extra>"))
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(showlegend=True)
    return _layout(fig, "singular values of the features", "index (largest first)", "singular value (log)",
                   height=380)


def spectrum_heatmap(steps: list[int], spectra: list[np.ndarray], title: str = "spectrum over training") -> go.Figure:
    """log10 of the singular values at every evaluation: x the step, y the index (largest at the top)."""
    width = max((len(s) for s in spectra), default=0)
    z = np.full((width, len(spectra)), np.nan)
    for j, s in enumerate(spectra):
        z[: len(s), j] = np.log10(np.maximum(np.asarray(s, dtype=np.float64), SPECTRUM_FLOOR))
    fig = go.Figure(go.Heatmap(x=[str(s) for s in steps], y=np.arange(1, width + 1), z=z, colorscale="Viridis",
                               zmin=math.log10(SPECTRUM_FLOOR), colorbar=dict(title="log10 σ"),
                               hovertemplate="step %{x}<br>index %{y}<br>log10 σ %{z:.2f}<extra></extra>"))
    fig.update_xaxes(type="category")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, "step", "singular value index", height=380)
