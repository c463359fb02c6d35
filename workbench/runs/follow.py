"""Follow a live run cheaply: keep what was read, fetch only rows after the last step seen.

A dashboard refresh on a run with 10,000 logged steps then costs one indexed query for the few new rows instead
of re-reading everything. ``RunFollower`` is what the app and the notebooks poll.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.runs.store import HistogramSeries, RunReader


class RunFollower:
    def __init__(self, run_dir: str | os.PathLike, stale_after: float | None = None):
        self.run_dir = Path(run_dir)
        self.reader = RunReader(run_dir) if stale_after is None else RunReader(run_dir, stale_after=stale_after)
        self._scalars = pd.DataFrame()
        self._hists: dict[str, HistogramSeries] = {}
        self.last_step = -1

    def close(self) -> None:
        self.reader.close()

    def scalars(self) -> pd.DataFrame:
        """All scalars so far (one row per step); only the rows after the previous call are read.

        Values logged later for an already-seen step (e.g. the kNN accuracy logged after the last training step
        of an epoch) are picked up because the query starts at the last step seen, inclusive.
        """
        new = self.reader.scalars(after_step=self.last_step - 1)
        if not new.empty:
            if self._scalars.empty:
                self._scalars = new
            else:
                keep = self._scalars[self._scalars.index < new.index.min()]
                self._scalars = pd.concat([keep, new]).sort_index()
            self.last_step = int(self._scalars.index.max())
        return self._scalars

    def histograms(self, key: str) -> HistogramSeries:
        """All histograms of ``key`` so far; reads only the new ones."""
        old = self._hists.get(key)
        after = int(old.steps[-1]) if old is not None and len(old.steps) else -1
        new = self.reader.histograms(key, after_step=after)
        if old is None or not len(old.steps):
            self._hists[key] = new
        elif len(new.steps):
            self._hists[key] = HistogramSeries(key, np.concatenate([old.steps, new.steps]), new.edges,
                                               np.concatenate([old.counts, new.counts]),
                                               np.concatenate([old.mean, new.mean]),
                                               np.concatenate([old.var, new.var]))
        return self._hists[key]
