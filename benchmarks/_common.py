"""Shared helpers for the benchmark scripts: thread settings, timing, Markdown tables.

Import this module before torch: it sets ``OMP_WAIT_POLICY=PASSIVE`` (unless already set) so that idle OpenMP
threads sleep instead of spinning, which on a small, shared machine would steal time from the DataLoader workers
and from the other side of a comparison.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after the environment variable on purpose)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from anywhere without installing the package
    sys.path.insert(0, str(REPO))

from workbench.engine.callbacks import Callback  # noqa: E402


def setup_threads(n: int = 2) -> int:
    """Use ``n`` intra-op threads (default 2, the size of the reference machine) and one inter-op thread."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (e.g. by a previous import in the same process)
        pass
    return torch.get_num_threads()


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """``(seconds, result)`` of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; floats are printed as given (format them before)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def machine_line() -> str:
    """One line describing where the numbers come from."""
    return (f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPU cores visible, "
            f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")


def goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


class Budget(Callback):
    """A trainer callback that sets ``trainer.stop_event`` after the first step ending ``budget`` seconds after
    ``on_fit_start``: every contender of a comparison trains for the same wall-clock time."""

    def __init__(self, budget: float):
        self.budget = budget
        self.t0 = self.t_end = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def on_fit_start(self, trainer) -> None:
        self.t0 = time.perf_counter()

    def on_step_end(self, trainer, out) -> None:
        if self.elapsed() >= self.budget:
            trainer.stop_event.set()

    def on_fit_end(self, trainer, status: str) -> None:
        self.t_end = time.perf_counter()
