"""Overhead of the live diagnostics and of the run store writes on training steps.

What is measured, on the real engine (``workbench.engine.trainer.Trainer``, CPU, SmallConvNet, batch 256,
``progress=False``, runs written to a temporary folder), for ``digits`` (8x8) and ``fashion-mnist`` (28x28):

* step time: from the start of ``method.step`` (views, forward) to the end of the step's ``flush`` (so it
  includes backward, optimiser, scheduler, the callbacks and the run store transaction of that step; it leaves
  out only the batch gather and, between epochs, the checkpoint);
* three conditions, switched in blocks of ``log_every`` steps (default ``TrainConfig.log_every`` = 10, so each
  block holds exactly one diagnostics step) and rotated block by block in the same training run:
  ``diagnostics + store`` (the engine's default), ``store only`` (the ``LiveDiagnostics`` callback switched
  off; the per-step loss/lr/img_per_s are still written) and ``neither`` (no diagnostics, no store writes);
* ms/step = the mean over a block's steps, median over the blocks of a condition; an overhead is the median over
  cycles (three consecutive blocks, one per condition) of the ratio within the cycle, so slow drifts of a noisy
  machine cancel;
* since a 0.3% effect drowns in block-to-block noise on a shared machine, the diagnostics step is also compared
  with its own neighbours: (last step of a block - median of the block's other steps), median over the
  ``diagnostics + store`` blocks minus the same in ``store only`` blocks, amortised over ``log_every`` steps.

The engine's per-epoch kNN evaluation (``EpochEvaluation``) is removed from the trainer's callbacks: it is not a
per-step cost. A second table times the pieces in isolation: one ``LiveDiagnostics.on_step_end`` on 256 x 128
embeddings and one ``RunWriter.log`` call with a plain step's payload and with a diagnostics step's payload; from
them the diagnostics overhead is also predicted (useful where the in-loop difference drowns in the machine's
noise). A third table gives the per-epoch bookkeeping the step times leave out (end-of-epoch flush, checkpoint,
metadata), which matters for digits' 5-step epochs.

    python benchmarks/diagnostics_overhead.py [--cycles-digits 30] [--cycles-fashion 10] [--log-every 10]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import goal, machine_line, markdown_table, median, setup_threads

import torch
import torch.nn.functional as F

from workbench.engine.callbacks import Callback, EpochEvaluation, LiveDiagnostics


@dataclass(frozen=True)
class Mode:
    name: str
    diagnostics: bool
    store: bool


MODES = (Mode("diagnostics + store", True, True), Mode("store only", False, True), Mode("neither", False, False))


class Switch(Callback):
    """Wraps the trainer's ``LiveDiagnostics``; calls it only while ``enabled``."""

    def __init__(self, inner: LiveDiagnostics):
        self.inner, self.enabled = inner, True

    def on_step_end(self, trainer, out) -> None:
        if self.enabled:
            self.inner.on_step_end(trainer, out)


class StepTimer:
    """Instruments one trainer: times every step, switches the mode every ``block`` steps, stops the run when
    ``blocks`` blocks are done. Block ``b`` holds steps ``b*block+1 .. (b+1)*block`` (the diagnostics fire on the
    last one); the first ``warmup`` blocks run in the default mode and are not recorded."""

    def __init__(self, trainer, block: int, blocks: int, warmup: int = 2):
        self.trainer, self.block, self.blocks, self.warmup = trainer, block, blocks, warmup
        self.switch = next(Switch(cb) for cb in trainer.callbacks if isinstance(cb, LiveDiagnostics))
        trainer.callbacks = [self.switch if isinstance(cb, LiveDiagnostics) else cb for cb in trainer.callbacks
                             if not isinstance(cb, EpochEvaluation)]
        # each cycle visits every mode once, in a rotating order
        self.schedule = itertools.chain.from_iterable(MODES[i:] + MODES[:i] for i in itertools.cycle(range(3)))
        self.mode = MODES[0]
        self.block_times: list[tuple[str, list[float]]] = []
        self.t_start: float | None = None
        self.last_end, self.last_epoch = None, None
        self.gaps: dict[str, list[float]] = {"within epoch": [], "epoch boundary": []}
        self._step, self._flush = trainer.method.step, trainer.flush
        trainer.method.step = self._timed_step  # instance attributes: the package is not changed
        trainer.flush = self._timed_flush

    def _timed_step(self, images, generator):
        tr = self.trainer
        if tr.step % self.block == 0:  # a new block starts with this step
            if len(self.block_times) >= self.blocks + self.warmup:
                tr.stop_event.set()  # the loop stops before the next step; this one still runs
            warming_up = len(self.block_times) < self.warmup
            self.mode = MODES[0] if warming_up else next(self.schedule)
            self.switch.enabled = self.mode.diagnostics
            self.block_times.append((self.mode.name, []))
        self.t_start = time.perf_counter()
        if self.last_end is not None:  # time outside the steps: batch gather, or the whole epoch-end bookkeeping
            kind = "within epoch" if tr.epoch == self.last_epoch else "epoch boundary"
            self.gaps[kind].append(1000 * (self.t_start - self.last_end))
        return self._step(images, generator)

    def _timed_flush(self) -> None:
        tr = self.trainer
        if self.mode.store or tr.writer is None:
            self._flush()
        else:
            tr.pending = {"scalars": {}, "histograms": {}}
        if self.t_start is not None:  # the flush that ends a step (not the epoch-end or start-up ones)
            self.last_end, self.last_epoch = time.perf_counter(), tr.epoch
            self.block_times[-1][1].append(self.last_end - self.t_start)
            self.t_start = None

    def cycles(self) -> list[dict[str, float]]:
        """Per complete cycle (three consecutive recorded blocks, one per mode): mean ms/step of each mode."""
        blocks = [(name, 1000 * sum(t) / len(t)) for name, t in self.block_times[self.warmup:]
                  if len(t) == self.block]
        out = []
        for i in range(0, len(blocks) - 2, 3):
            cycle = dict(blocks[i: i + 3])
            if len(cycle) == 3:
                out.append(cycle)
        return out


    def last_step_extra(self, mode: str) -> float:
        """Median over the recorded complete blocks of ``mode`` of (last step - median of the block's other steps),
        in ms: the cost of the diagnostics step measured against its neighbours, a fraction of a second apart."""
        return median(1000 * (t[-1] - median(t[:-1])) for name, t in self.block_times[self.warmup:]
                      if name == mode and len(t) == self.block)


def measure_training(dataset: str, cycles: int, log_every: int, runs_dir: str):
    """Train ``dataset`` on the engine until ``cycles`` cycles of the three modes are timed; returns the cycles,
    the extra ms of the diagnostics step (against the same position in store-only blocks), the gaps between
    steps (ms) and the steps per epoch."""
    from workbench import TrainConfig
    from workbench.engine.trainer import Trainer

    cfg = TrainConfig(method="simclr", dataset=dataset, backbone="convnet", device="cpu", batch_size=256,
                      epochs=100_000, log_every=log_every, progress=False, runs_dir=runs_dir, run_name=dataset)
    trainer = Trainer(cfg)
    timer = StepTimer(trainer, block=log_every, blocks=3 * cycles)
    result = trainer.fit()
    assert result.status == "stopped", result.status
    diag_step_extra = timer.last_step_extra("diagnostics + store") - timer.last_step_extra("store only")
    return timer.cycles(), diag_step_extra, timer.gaps, trainer.steps_per_epoch


# ------------------------------------------------------------------------------------------------ pieces
def measure_pieces(reps: int, runs_dir: str, bins: int = 100) -> dict[str, float]:
    """Median ms of one diagnostics computation and of one run-store transaction, interleaved."""
    from workbench.methods.base import StepOutput
    from workbench.runs.store import RunWriter

    g = torch.Generator().manual_seed(0)
    z1 = F.normalize(torch.randn(256, 128, generator=g), dim=1)
    z2 = F.normalize(z1 + 0.3 * torch.randn(256, 128, generator=g), dim=1)
    out = StepOutput(loss=torch.tensor(0.0), z1=z1, z2=z2)
    diag = LiveDiagnostics(every=1, bins=bins)

    class FakeTrainer:
        step = 1
        pending = {"scalars": {}, "histograms": {}}

    diag.on_step_end(FakeTrainer, out)
    diag_scalars, diag_hists = dict(FakeTrainer.pending["scalars"]), dict(FakeTrainer.pending["histograms"])
    plain = {"loss": 5.0, "lr": 1e-3, "img_per_s": 900.0}
    writer = RunWriter(f"{runs_dir}/pieces", {"method": "bench"})
    step = itertools.count(1)
    pieces = {
        "LiveDiagnostics.on_step_end (256 x 128, CPU)": lambda: diag.on_step_end(FakeTrainer, out),
        "RunWriter.log, plain step (3 scalars)": lambda: writer.log(next(step), plain),
        f"RunWriter.log, diagnostics step ({len(plain) + len(diag_scalars)} scalars, 2 x {bins}-bin histograms)":
            lambda: writer.log(next(step), {**plain, **diag_scalars}, diag_hists),
    }
    times: dict[str, list[float]] = {k: [] for k in pieces}
    try:
        for rep in range(reps + 5):  # the first 5 warm up
            for name, fn in pieces.items():
                t0 = time.perf_counter()
                fn()
                if rep >= 5:
                    times[name].append(1000 * (time.perf_counter() - t0))
    finally:
        writer.close("finished")
    return {k: median(v) for k, v in times.items()}


# ------------------------------------------------------------------------------------------------ main
def spread(values) -> str:
    """Interquartile range of per-cycle overheads, as ``[q1, q3]`` (how noisy the machine was)."""
    values = list(values)
    if len(values) < 2:
        return "n/a"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"[{q1:+.1%}, {q3:+.1%}]"


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cycles-digits", type=int, default=30, help="cycles (one block per condition each) on digits")
    p.add_argument("--cycles-fashion", type=int, default=10, help="cycles on fashion-mnist (0: skip)")
    p.add_argument("--log-every", type=int, default=10, help="TrainConfig.log_every (the engine default is 10)")
    p.add_argument("--piece-reps", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    setup_threads(args.threads)
    every = args.log_every

    rows, epoch_rows, ok = [], [], True
    with tempfile.TemporaryDirectory(prefix="bench-diag-") as runs_dir:
        pieces = measure_pieces(args.piece_reps, runs_dir)
        diag_ms, write_plain, write_diag = pieces.values()
        per_step_pieces = (diag_ms + write_diag - write_plain) / every  # what diagnostics add, amortised
        cases = [("digits 8x8", "digits", args.cycles_digits),
                 ("fashion-mnist 28x28", "fashion-mnist", args.cycles_fashion)]
        for label, dataset, cycles in cases:
            if cycles <= 0:
                continue
            cyc, step_extra, gaps, steps_per_epoch = measure_training(dataset, cycles, every, runs_dir)
            ms = {m.name: median(c[m.name] for c in cyc) for m in MODES}
            ratios = lambda a, b: [c[a] / c[b] - 1 for c in cyc]  # noqa: E731  (paired within a cycle)
            diff = median(c["store only"] - c["neither"] for c in cyc)
            diag = ratios("diagnostics + store", "store only")
            from_pieces = per_step_pieces / ms["store only"]
            from_step = step_extra / every / ms["store only"]
            ok &= median(diag) <= 0.05 and from_pieces <= 0.05 and from_step <= 0.05
            rows.append([label, f"{ms['diagnostics + store']:.1f}", f"{ms['store only']:.1f}", f"{ms['neither']:.1f}",
                         f"{median(diag):+.1%} {spread(diag)}", f"{step_extra:+.1f} ms -> {from_step:+.2%}",
                         f"{from_pieces:+.2%}",
                         f"{median(ratios('store only', 'neither')):+.1%} ({diff:+.2f} ms)",
                         f"{median(ratios('diagnostics + store', 'neither')):+.1%}", len(cyc)])
            if gaps["epoch boundary"]:
                boundary = median(gaps["epoch boundary"]) - median(gaps["within epoch"])
                extra = [f"{boundary:.1f}", f"{boundary / steps_per_epoch / ms['diagnostics + store']:.1%}"]
            else:
                extra = ["n/a (no epoch ended)", "n/a"]
            epoch_rows.append([label, steps_per_epoch, f"{median(gaps['within epoch']):.2f}", *extra])

    table = markdown_table(["data (batch 256, CPU)", "ms/step diag+store", "ms/step store only", "ms/step neither",
                            "diagnostics overhead [IQR]", "diag. step extra -> per step", "from pieces", "store writes overhead",
                            "total", "cycles"], rows)
    ptable = markdown_table(["piece (alone)", "ms per call", f"amortised per step (log_every={every})"],
                            [[k, f"{v:.2f}", f"{v / every if 'diagnostics' in k.lower() else v:.2f} ms"]
                             for k, v in pieces.items()])
    etable = markdown_table(["data", "steps/epoch", "gap between steps, ms", "extra at epoch end, ms",
                             "amortised, % of a step"], epoch_rows)
    text = (f"### Live diagnostics and run store overhead (log_every={every}, blocks of {every} steps; ms/step: "
            f"median over blocks, overheads: median of within-cycle ratios)\n\n{table}\n\n"
            f"Diagnostics overhead, three estimates: (diag+store) / (store only) - 1 over whole blocks (with the "
            f"interquartile range over cycles: the machine's noise); the extra time of the diagnostics step over "
            f"the other steps of its block (minus the same in store-only blocks), divided by {every} and by the "
            f"store-only step time; and the isolated pieces below (diagnostics computation + the larger store "
            f"write, every {every} steps, over the store-only step time). Goal <= 5% (all three): {goal(ok)}.\n\n"
            f"{ptable}\n\nNot part of the step times above: the engine's per-epoch bookkeeping (end-of-epoch "
            f"flush, checkpoint, metadata), the time between the last step of an epoch and the first of the next "
            f"minus the usual gap between steps:\n\n{etable}\n\n{machine_line()}\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
