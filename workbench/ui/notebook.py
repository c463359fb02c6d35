"""Following a training run live in Jupyter: what the tutorial notebooks share.

    result = watch(handle, plotly_figure, refresh)   # refresh(figure, reader) updates the figure, returns a status
    result = follow(handle, on_reader)               # the polling loop alone
    SMOKE = smoke_mode(); RUNS_DIR = tutorial_runs_dir("temperature", SMOKE)   # a tutorial's first cell
    redraw_on_change(lambda: figure_for(slider.value), [slider])   # a figure the user redraws with widgets
    fig = comparison_figure(titles, names)           # runs one after the other: histogram + two panels per run
    draw_histograms(fig, reader); draw_curves(fig, reader.scalars(keys), {trace: key}); step_status(reader)
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from workbench.runs import RunReader, RunStoreError


def smoke_mode() -> bool:
    """True under ``WORKBENCH_SMOKE=1`` (what ``make test`` sets for nbval) or in CI: a tutorial then trains for
    seconds with tiny settings; its numbers mean nothing and its finding is not checked."""
    return os.environ.get("WORKBENCH_SMOKE") == "1" or os.environ.get("CI") == "true"


def tutorial_runs_dir(name: str, smoke: bool) -> str:
    """Where a tutorial's runs go: in smoke mode a new temporary folder (the notebook removes it at the end), else
    ``$WORKBENCH_RUNS_DIR`` or the repository's ``runs/`` (``../runs`` seen from ``notebooks/``), where
    ``workbench app`` shows them too."""
    if smoke:
        return tempfile.mkdtemp(prefix=f"workbench-{name}-")
    return os.environ.get("WORKBENCH_RUNS_DIR", "../runs" if Path.cwd().name == "notebooks" else "runs")


def redraw_on_change(draw: Callable[[], object], controls: list) -> None:
    """Show the plotly figure ``draw()`` returns as a plain figure, then ``controls`` (ipywidgets, in a row) and
    under them an ``Output`` widget where ``draw()`` is drawn again whenever one of them changes value.

    The first figure is a plain one, not drawn into the ``Output``: it stays in exported HTML, and nothing enters
    an ``Output`` widget while the cell runs. When something did (notebook 08's wipe), nbclient wrote the widget's
    state back to the kernel on the socket where it was waiting for the cell's reply, and now and then never saw
    that reply: ``make tutorials`` stalled with the kernel idle."""
    import ipywidgets as widgets
    from IPython.display import display

    draw().show()
    out = widgets.Output()

    def redraw(_change=None) -> None:
        out.clear_output(wait=True)
        with out:
            draw().show()

    for control in controls:
        control.observe(redraw, names="value")
    display(widgets.HBox(list(controls)), out)


class LiveFigure:
    """A plotly figure that updates in place in a notebook. ``figure`` is what to update (a ``FigureWidget`` where
    ``anywidget`` is installed, else the figure itself); call :meth:`redraw` after each update."""

    def __init__(self, figure):
        import plotly.graph_objects as go

        try:
            self.figure, self.is_widget = go.FigureWidget(figure), True
        except ImportError:
            self.figure, self.is_widget = figure, False
        self._display = None

    def show(self) -> None:
        from IPython.display import display

        if self.is_widget:
            display(self.figure)
        else:  # plotly figures display themselves (`_ipython_display_`), ignoring display_id: pass the mime bundle
            self._display = display(self.figure._repr_mimebundle_(), raw=True, display_id=True)

    def redraw(self) -> None:
        if self._display is not None:
            self._display.update(self.figure._repr_mimebundle_(), raw=True)


def follow(handle, refresh: Callable[[RunReader], None], every: float = 0.5):
    """Call ``refresh(reader)`` every ``every`` seconds while ``handle`` (from ``workbench.start_training``) trains,
    and once more after it has ended, so the last refresh sees the finished run. Interrupting the kernel stops the
    run after its current step. Returns ``handle.join()``."""
    reader = None
    try:
        while True:
            alive = handle.is_alive()  # checked before reading: the last refresh comes after the end
            if reader is None:
                try:
                    reader = RunReader(handle.run_dir)
                except RunStoreError:
                    pass  # the training thread has not created run.db yet
            if reader is not None:
                refresh(reader)
            if not alive:
                break
            time.sleep(every)
    except KeyboardInterrupt:
        handle.stop()
        print("stop requested; the run ends after the current step")
    finally:
        if reader is not None:
            reader.close()
    return handle.join()


def watch(handle, figure, refresh: Callable[[object, RunReader], str], every: float = 0.5):
    """Show ``figure`` (plotly) under a status line and keep both up to date while ``handle`` trains:
    ``refresh(figure, reader)`` updates the figure in place and returns the status line (HTML). Prints the final
    status as text where the figure is not a widget (viewers that do not render widgets). Returns the run's
    result (:func:`follow`)."""
    import ipywidgets as widgets
    from IPython.display import display

    live = LiveFigure(figure)
    label = widgets.HTML("waiting for the first step ...")
    display(label)
    live.show()

    def update(reader: RunReader) -> None:
        label.value = refresh(live.figure, reader)
        live.redraw()

    result = follow(handle, update, every)
    if not live.is_widget:
        print(label.value.replace("&nbsp;", " ").replace("<b>", "").replace("</b>", ""))
    return result


def draw_histograms(fig, reader: RunReader, traces: tuple[int, int] = (0, 1), keys: tuple[str, str] = ("pos", "neg"),
                    ) -> None:
    """Draw the newest logged histograms ``keys`` (the positive and negative scores) into the bar ``traces`` of
    ``fig``, as densities."""
    import numpy as np

    for trace, key in zip(traces, keys):
        series = reader.histograms(key)
        if len(series.steps):
            fig.data[trace].x, fig.data[trace].y = series.centers, series.density()[-1]
            fig.data[trace].width = float(np.diff(series.edges)[0])


def draw_curves(fig, frame, traces: dict[int, str], x: str | None = None) -> None:
    """Draw the columns of ``frame`` (a run's scalars, indexed by step) into ``fig``: ``traces`` maps a trace's
    index to the column it shows, against the step, or against the column ``x`` (rows where either is missing
    are left out)."""
    for trace, key in traces.items():
        if key not in frame or (x is not None and x not in frame):
            continue
        if x is None:
            s = frame[key].dropna()
            fig.data[trace].x, fig.data[trace].y = s.index.to_numpy(), s.to_numpy()
        else:
            both = frame[[x, key]].dropna()
            fig.data[trace].x, fig.data[trace].y = both[x].to_numpy(), both[key].to_numpy()


def step_status(reader: RunReader, label: str | None = None) -> str:
    """The status line of a live figure: ``label`` (default: the run's state) and the step out of the total."""
    st = reader.status()
    return f"<b>{label or st.state}</b> &nbsp; step {st.step}/{reader.meta.get('total_steps', '?')}"


def comparison_figure(titles: tuple[str, str, str], names: list[str], height: int = 380):
    """A live figure comparing several runs trained one after the other: the current run's positive / negative
    score histogram (traces 0 and 1, column 1), and for the i-th of ``names`` a line in column 2 (trace 2 + 2 i)
    and a line with markers in column 3 (trace 3 + 2 i), one colour per run. Returns a ``FigureWidget``; set the
    axes' titles on it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from workbench.ui.charts import NEG_COLOR, PALETTE, POS_COLOR

    fig = go.FigureWidget(make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=titles))
    fig.add_bar(x=[], y=[], name="positive", marker_color=POS_COLOR, opacity=0.6, row=1, col=1)
    fig.add_bar(x=[], y=[], name="negative", marker_color=NEG_COLOR, opacity=0.6, row=1, col=1)
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        fig.add_scatter(x=[], y=[], mode="lines", name=name, legendgroup=name, line_color=colour, row=1, col=2)
        fig.add_scatter(x=[], y=[], mode="lines+markers", showlegend=False, legendgroup=name, line_color=colour,
                        row=1, col=3)
    fig.update_layout(height=height, barmode="overlay", bargap=0, margin=dict(l=40, r=10, t=40, b=40),
                      legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(range=[-1, 1], title_text="cosine similarity", row=1, col=1)
    return fig
