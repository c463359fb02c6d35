"""Curves of long runs at the resolution a chart can show, without dropping a value.

A chart about 600 pixels wide cannot show 100,000 steps; reading them all costs seconds (about 1 µs per row and
15 rows per step) and drawing them more. Here the steps are cut into buckets of ``width`` consecutive steps
(``[b * width, (b + 1) * width)``) and each bucket keeps its values' count, min, max and mean and the first and last
step holding one: the chart draws the mean as a line and min..max as a band, so every value is in the picture (a
spike stays visible as the band). The newest steps, from the start of the bucket that holds the last step, are kept
exact, so the last point is the last value logged. A bucket holding one value is that value at its step.

``ScalarFollower`` keeps this summary for a live run: the first read asks the store for the bucket summaries
(:meth:`RunReader.scalar_buckets`, a query per bucket) plus the exact rows of the last bucket; each refresh reads
only the rows after the last step seen and folds full buckets into the summary; when the run has grown to twice
the target number of buckets, the width doubles (pairs of buckets merge). Short runs stay exact.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.runs.store import RunReader

TARGET_POINTS = 800  # buckets per chart when a run is thinned (about a pixel each); at most twice that
EXACT_UP_TO = 2 * TARGET_POINTS  # runs with at most this many steps are drawn value by value
_AGG = {"count": "sum", "min": "min", "max": "max", "sum": "sum", "first": "min", "last": "max"}


@dataclass
class ThinSeries:
    """One key's points in step order: an exact value (``count == 1``: ``first == last`` is its step) or the
    summary of ``count`` values logged at steps ``first..last`` (``value`` their mean, ``lo``/``hi`` min/max)."""

    steps: np.ndarray  # where each point is drawn: the value's step, or the middle of the bucket's steps
    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    count: np.ndarray
    first: np.ndarray
    last: np.ndarray
    width: int = 0  # steps per bucket; 0: nothing summarised

    @property
    def thinned(self) -> bool:
        return bool(len(self.count)) and int(self.count.max()) > 1

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def exact(cls, s: pd.Series) -> "ThinSeries":
        steps = np.asarray(s.index, dtype=np.int64)
        v = np.asarray(s.values, dtype=float)
        return cls(steps, v, v, v, np.ones(len(v), np.int64), steps, steps)

    @classmethod
    def join(cls, buckets: pd.DataFrame, tail: pd.Series, width: int) -> "ThinSeries":
        """Bucket summaries (the columns of :meth:`RunReader.scalar_buckets`, for one key) then exact values."""
        b = buckets.sort_values("bucket")
        count = b["count"].to_numpy(np.int64)
        first, last = b["first"].to_numpy(np.int64), b["last"].to_numpy(np.int64)
        mean = b["sum"].to_numpy(float) / np.maximum(count, 1)
        single = count == 1
        mean[single] = b["min"].to_numpy(float)[single]  # exactly the value, not a sum divided by one
        x = np.where(single, first, (first + last) / 2)
        t = ThinSeries.exact(tail)
        return cls(np.concatenate([x, t.steps]), np.concatenate([mean, t.value]),
                   np.concatenate([b["min"].to_numpy(float), t.lo]), np.concatenate([b["max"].to_numpy(float), t.hi]),
                   np.concatenate([count, t.count]), np.concatenate([first, t.first]),
                   np.concatenate([last, t.last]), width if int(count.max(initial=1)) > 1 else 0)


def bucket_width(last_step: int, target: int = TARGET_POINTS) -> int:
    """Steps per bucket for a run whose last step is ``last_step``: a power of two, so that doubling it keeps the
    buckets' boundaries."""
    return 1 << max(0, math.ceil(math.log2(max(1, (last_step + 1) / target))))


def summarise(long: pd.DataFrame, width: int) -> pd.DataFrame:
    """Bucket summaries (:meth:`RunReader.scalar_buckets`' columns) of rows ``step, key, value`` (in numpy; the
    same numbers the store's query gives)."""
    long = long.dropna(subset=["value"])
    if long.empty:
        return pd.DataFrame(columns=RunReader.BUCKET_COLUMNS)
    g = long.assign(bucket=long["step"].to_numpy(np.int64) // width).groupby(["key", "bucket"], sort=True)
    out = g["value"].agg(["count", "min", "max", "sum"])
    out["first"], out["last"] = g["step"].min(), g["step"].max()
    return out.reset_index()


def merge(parts: list[pd.DataFrame], width: int | None = None, old_width: int | None = None) -> pd.DataFrame:
    """Bucket summaries combined (the same key and bucket in several parts: one row); with ``width`` a multiple of
    ``old_width``, re-bucketed to the wider buckets."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=RunReader.BUCKET_COLUMNS)
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].copy()
    if width and old_width and width != old_width:
        df["bucket"] = df["bucket"] // (width // old_width)
    return df.groupby(["key", "bucket"], sort=True).agg(_AGG).reset_index()


def thin(s: pd.Series, target: int = TARGET_POINTS, exact_up_to: int = EXACT_UP_TO) -> ThinSeries:
    """A series (step index) at chart resolution: as it is when it has at most ``exact_up_to`` values, else
    summarised over buckets like :class:`ScalarFollower` does, the last bucket exact."""
    s = s.dropna()
    if len(s) <= exact_up_to:
        return ThinSeries.exact(s)
    last = int(s.index[-1])
    width = bucket_width(last, target)
    sealed = last // width * width
    steps = np.asarray(s.index, dtype=np.int64)
    long = pd.DataFrame({"step": steps[steps < sealed], "key": "k", "value": s.values[steps < sealed]})
    return ThinSeries.join(summarise(long, width), s[steps >= sealed], width)


def ema(series: ThinSeries, smoothing: float) -> np.ndarray:
    """The exponential moving average (pandas' ``ewm(alpha=1 - smoothing)``, ``adjust=True``) of a series' values,
    a bucket of ``n`` values counted as ``n`` values equal to its mean: exact where nothing is summarised."""
    if smoothing <= 0 or not len(series):
        return series.value
    d = float(smoothing)
    out = np.empty(len(series))
    num = den = 0.0
    for i, (m, n) in enumerate(zip(series.value.tolist(), series.count.tolist())):
        dn = d ** n
        w = (1 - dn) / (1 - d)
        num, den = num * dn + m * w, den * dn + w
        out[i] = num / den
    return out


_SHARED: dict[tuple, tuple[int, int, pd.DataFrame]] = {}  # (run, created, pid, keys, target) -> width, sealed, buckets
_SHARED_LOCK = threading.Lock()


class ScalarFollower:
    """The scalars of a live run at chart resolution, read incrementally (see the module's doc).

    The summaries of a run's older steps never change: followers of the same run and keys in one process (the
    app's sessions, its browser tabs) share them, so only the first pays the bucket queries; a later one
    starts from them and queries the buckets sealed since."""

    def __init__(self, run_dir, keys: list[str] | None = None, target: int = TARGET_POINTS,
                 exact_up_to: int = EXACT_UP_TO):
        self.reader = RunReader(run_dir)
        self.keys_wanted = None if keys is None else list(keys)
        self.target, self.exact_up_to = target, exact_up_to
        meta = self.reader.meta  # a resumed run (which may drop steps) has a new writer pid: summaries not shared
        self._shared_key = (str(Path(run_dir).resolve()), meta.get("created"), meta.get("pid"),
                            None if keys is None else tuple(sorted(keys)), target)
        self._reset()

    def _reset(self) -> None:
        self.width = 0  # 0: exact (nothing summarised yet)
        self.sealed = 0  # steps below this are in ``buckets``; from it on, in ``tail``
        self.buckets = pd.DataFrame(columns=RunReader.BUCKET_COLUMNS)
        self.tail = pd.DataFrame()
        self.last_step = -1

    def close(self) -> None:
        self.reader.close()

    @property
    def keys(self) -> list[str]:
        ks = set(self.tail.columns) | set(self.buckets["key"])
        return sorted(ks)

    def __contains__(self, key: str) -> bool:
        return key in self.tail.columns or bool((self.buckets["key"] == key).any())

    def empty(self) -> bool:
        return self.tail.empty and self.buckets.empty

    def refresh(self) -> "ScalarFollower":
        top = self.reader.last_step()
        if top < self.last_step:  # steps were discarded (a resumed run goes on from its checkpoint): start again
            self._reset()
        if top < 0:
            return self
        if self.last_step < 0 and top > self.exact_up_to:  # first read of a long run: ask for the summaries
            with _SHARED_LOCK:
                shared = _SHARED.get(self._shared_key)
            width, sealed, buckets = shared if shared and shared[1] <= top else (bucket_width(top, self.target), 0,
                                                                               None)
            self.width = width
            self.sealed = top // width * width
            new = self.reader.scalar_buckets(width, self.sealed, self.keys_wanted, start=sealed)
            self.buckets = merge([buckets, new]) if buckets is not None else new
            self.tail = self.reader.scalars(self.keys_wanted, after_step=self.sealed - 1)
        else:
            new = self.reader.scalars(self.keys_wanted, after_step=max(self.last_step - 1, self.sealed - 1))
            if not new.empty:  # the last step seen is read again: a value logged later for it is picked up
                keep = self.tail[self.tail.index < new.index.min()] if not self.tail.empty else self.tail
                self.tail = pd.concat([keep, new]).sort_index() if not keep.empty else new
        # the run's last step, whichever keys it logged: keys logged rarely (once an epoch) are not read again
        self.last_step = max(top, int(self.tail.index.max()) if not self.tail.empty else -1)
        self._fold()
        if self.width:
            with _SHARED_LOCK:
                known = _SHARED.get(self._shared_key)
                if known is None or known[1] < self.sealed:
                    _SHARED[self._shared_key] = (self.width, self.sealed, self.buckets)
        return self

    def _fold(self) -> None:
        """Move full buckets from the exact tail into the summaries; widen the buckets when there are too many."""
        top = self.last_step
        if self.width == 0:
            if top <= self.exact_up_to:
                return
            self.width = bucket_width(top, self.target)
        while top // self.width > 2 * self.target:
            self.buckets = merge([self.buckets], self.width * 2, self.width)
            self.width *= 2
        sealed = top // self.width * self.width
        if sealed <= self.sealed:
            return
        moving = self.tail[self.tail.index < sealed]
        long = moving.rename_axis("step").reset_index().melt(id_vars="step", var_name="key", value_name="value")
        self.buckets = merge([self.buckets, summarise(long, self.width)])
        self.tail = self.tail[self.tail.index >= sealed]
        self.sealed = sealed

    def series(self, key: str) -> ThinSeries | None:
        """``key``'s points: summaries, then exact values; ``None`` when the key has no value."""
        tail = self.tail[key].dropna() if key in self.tail.columns else pd.Series(dtype=float)
        b = self.buckets[self.buckets["key"] == key] if len(self.buckets) else self.buckets
        if b.empty and tail.empty:
            return None
        if b.empty:
            return ThinSeries.exact(tail)
        return ThinSeries.join(b, tail, self.width)

    def last(self, key: str) -> float | None:
        """The value of ``key`` at its last logged step."""
        s = self.series(key)
        if s is None:
            return None
        return float(s.value[-1]) if s.count[-1] == 1 else self.reader.last_scalars().get(key)

    def last_row(self, keys: list[str]) -> pd.Series | None:
        """The values of ``keys`` at the last step where all of them were logged (within the exact tail, else
        the store's latest values)."""
        if all(k in self.tail.columns for k in keys):
            rows = self.tail[keys].dropna()
            if len(rows):
                return rows.iloc[-1]
        latest = self.reader.last_scalars()
        return pd.Series({k: latest[k] for k in keys}) if all(k in latest for k in keys) else None
