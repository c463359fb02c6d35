"""Following a training run live in Jupyter: what the tutorial notebooks share.

    result = watch(handle, plotly_figure, refresh)   # refresh(figure, reader) updates the figure, returns a status
    result = follow(handle, on_reader)               # the polling loop alone
"""
from __future__ import annotations

import time
from typing import Callable

from workbench.runs import RunReader, RunStoreError


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
