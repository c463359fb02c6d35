"""Overhead of all the live diagnostics (per-step diagnostics, online linear probe, per-evaluation spectrum) and of
the run store writes on training steps.

What is measured, on the real engine (``workbench.engine.trainer.Trainer``, CPU, SimCLR, SmallConvNet, batch 256,
``progress=False``, runs written to a temporary folder), for ``digits`` (8x8) and ``fashion-mnist`` (28x28):

* step time: from the start of ``method.step`` (views, forward) to the end of the step's ``flush`` (so it
  includes backward, optimiser, scheduler, the callbacks and the run store transaction of that step; it leaves
  out only the batch gather and, between epochs, the checkpoint);
* three conditions, switched in blocks of ``log_every`` steps (default ``TrainConfig.log_every`` = 10, so each
  block holds exactly one ``LiveDiagnostics`` step, its last) and rotated block by block in the same training run:
  ``diagnostics + store`` (the engine's default), ``store only`` (the live per-step diagnostics switched off
  together: ``LiveDiagnostics`` and ``OnlineLinearProbe.on_step_end``; the per-step loss/lr/img_per_s are still
  written) and ``neither`` (no diagnostics, no store writes). While the probe is off its forward hook still keeps
  the step's features (a ``detach``, free) and they are dropped (``probe.captured = None``), so when it comes back
  on it never trains on a stale batch;
* ms/step = the mean over a block's steps, median over the blocks of a condition; an overhead is the median over
  cycles (three consecutive blocks, one per condition) of the ratio within the cycle, so slow drifts of a noisy
  machine cancel;
* the live diagnostics are also split in the loop: the online probe runs on every step, so it shows in the
  ``log_every - 1`` plain steps of a block (median of those steps, diagnostics + store block over the store-only
  block of the same cycle, median over cycles); ``LiveDiagnostics`` runs on the last step only, so it shows as
  that step's extra over its neighbours, a fraction of a second apart: (last step - median of the block's other
  steps), median over the ``diagnostics + store`` blocks minus the same in ``store only`` blocks, amortised
  over ``log_every`` steps.

The engine's per-epoch evaluation (``EpochEvaluation``: kNN, embeddings, spectrum) is removed from the trainer's
callbacks: it is not a per-step cost, and without it the probe's ``on_epoch_end`` scores nothing. What the
evaluation now does on top of the kNN probe that was there before is timed in isolation instead, as a
per-evaluation cost amortised over the steps of one epoch (the default ``eval_every=1``: digits 1437 images =
5 steps of 256, Fashion-MNIST 60000 = 234 steps): ``rankme`` and ``spectrum`` (two SVDs) of the training
features (1437 x 256, 60000 x 256), the ``spectrum`` artifact write, and the online probe's evaluation
(``OnlineLinearProbe.on_epoch_end``: standardise by the training features' statistics, score the held-out
features, 360 and 10000 x 256). The features the evaluation extracts are not counted: the kNN probe needed them
already.

A second table times the pieces in isolation, interleaved (a new random order each round), median over rounds:
one ``LiveDiagnostics.on_step_end`` on 256 x 128 embeddings, one ``OnlineLinearProbe.on_step_end`` on 256 x 256
features with 10 classes (BatchNorm + Linear, cross-entropy, backward, Adam), ``RunWriter.log`` with a plain
step's payload (with and without the probe's ``online_linear_loss``) and with a diagnostics step's payload, and
the per-evaluation pieces above. From them all the live diagnostics together are predicted per step: the probe
(and its extra scalar) every step + (``LiveDiagnostics`` + the larger store write) every ``log_every`` steps +
the per-evaluation pieces every epoch, over the store-only step time (useful where the in-loop differences drown
in the machine's noise). The goal (<= 5% of a step at the default settings) is checked on three totals: the
in-loop whole-block ratio, the in-loop split (probe + ``LiveDiagnostics``) and the pieces, each with the
per-evaluation cost added. A third table gives the per-epoch bookkeeping the step times leave out (end-of-epoch
flush, checkpoint, metadata), which matters for digits' 5-step epochs.

    python benchmarks/diagnostics_overhead.py [--cycles-digits 30] [--cycles-fashion 10] [--log-every 10]
        [--piece-reps 200] [--eval-reps 15]
"""
from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from types import SimpleNamespace

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import goal, machine_line, markdown_table, median, setup_threads

import torch
import torch.nn.functional as F

from workbench.diagnostics.spectrum import rankme, spectrum
from workbench.engine.callbacks import Callback, EpochEvaluation, LiveDiagnostics, OnlineLinearProbe

BATCH = 256
FEATURE_DIM = 256  # SmallConvNet's output, what the online probe and the evaluation's spectrum see
# (training images = the evaluation's training features, held-out images) of the splits the engine uses
EVAL_SETS = {"digits": (1437, 360), "fashion-mnist": (60000, 10000)}
LABELS = {"digits": "digits 8x8", "fashion-mnist": "fashion-mnist 28x28"}


@dataclass(frozen=True)
class Mode:
    name: str
    diagnostics: bool
    store: bool


MODES = (Mode("diagnostics + store", True, True), Mode("store only", False, True), Mode("neither", False, False))
LIVE = (LiveDiagnostics, OnlineLinearProbe)  # the live per-step diagnostics, switched together


class Switch(Callback):
    """Wraps one of the trainer's live diagnostics (``LIVE``); forwards every hook but calls ``on_step_end`` only
    while ``enabled``. A switched-off probe drops the features its hook kept for this step."""

    def __init__(self, inner: Callback):
        self.inner, self.enabled = inner, True

    def on_fit_start(self, trainer) -> None:
        self.inner.on_fit_start(trainer)  # the probe registers its forward hook here

    def on_step_end(self, trainer, out) -> None:
        if self.enabled:
            self.inner.on_step_end(trainer, out)
        elif isinstance(self.inner, OnlineLinearProbe):
            self.inner.captured = None  # never train later on a stale batch

    def on_epoch_end(self, trainer) -> None:
        self.inner.on_epoch_end(trainer)

    def on_fit_end(self, trainer, status: str) -> None:
        self.inner.on_fit_end(trainer, status)


class StepTimer:
    """Instruments one trainer: times every step, switches the mode every ``block`` steps, stops the run when
    ``blocks`` blocks are done. Block ``b`` holds steps ``b*block+1 .. (b+1)*block`` (``LiveDiagnostics`` fires on
    the last one, the probe on each); the first ``warmup`` blocks run in the default mode and are not recorded."""

    def __init__(self, trainer, block: int, blocks: int, warmup: int = 2):
        self.trainer, self.block, self.blocks, self.warmup = trainer, block, blocks, warmup
        wrap = lambda cb: Switch(cb) if isinstance(cb, LIVE) else cb  # noqa: E731
        trainer.callbacks = [wrap(cb) for cb in trainer.callbacks if not isinstance(cb, EpochEvaluation)]
        self.switches = [cb for cb in trainer.callbacks if isinstance(cb, Switch)]
        found = {type(s.inner) for s in self.switches}
        assert found == set(LIVE), f"the trainer's live diagnostics are {found}, expected {set(LIVE)}"
        self.probe = next(s.inner for s in self.switches if isinstance(s.inner, OnlineLinearProbe))
        self.probe_steps = 0  # steps on which the probe trained (sanity check)
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

    def _timed_step(self, *args, **kwargs):  # the method's own signature, passed on as given
        tr = self.trainer
        if tr.step % self.block == 0:  # a new block starts with this step
            if len(self.block_times) >= self.blocks + self.warmup:
                tr.stop_event.set()  # the loop stops before the next step; this one still runs
            warming_up = len(self.block_times) < self.warmup
            self.mode = MODES[0] if warming_up else next(self.schedule)
            for switch in self.switches:
                switch.enabled = self.mode.diagnostics
            self.block_times.append((self.mode.name, []))
        self.t_start = time.perf_counter()
        if self.last_end is not None:  # time outside the steps: batch gather, or the whole epoch-end bookkeeping
            kind = "within epoch" if tr.epoch == self.last_epoch else "epoch boundary"
            self.gaps[kind].append(1000 * (self.t_start - self.last_end))
        return self._step(*args, **kwargs)

    def _timed_flush(self, force: bool = True) -> None:  # the trainer's flush(force) (the loop passes False)
        tr = self.trainer
        if self.t_start is not None and "online_linear_loss" in tr.pending["scalars"]:
            self.probe_steps += 1
        if self.mode.store or tr.writer is None:
            self._flush(force=force)
        else:
            tr.pending = {"scalars": {}, "histograms": {}}
        if self.t_start is not None:  # the flush that ends a step (not the epoch-end or start-up ones)
            self.last_end, self.last_epoch = time.perf_counter(), tr.epoch
            self.block_times[-1][1].append(self.last_end - self.t_start)
            self.t_start = None

    def cycles(self, stat=lambda t: sum(t) / len(t)) -> list[dict[str, float]]:
        """Per complete cycle (three consecutive recorded blocks, one per mode): ``stat`` of each mode's block
        step times, in ms (default: the mean over the block)."""
        blocks = [(name, 1000 * stat(t)) for name, t in self.block_times[self.warmup:] if len(t) == self.block]
        out = []
        for i in range(0, len(blocks) - 2, 3):
            cycle = dict(blocks[i: i + 3])
            if len(cycle) == 3:
                out.append(cycle)
        return out

    def last_step_extra(self, mode: str) -> float:
        """Median over the recorded complete blocks of ``mode`` of (last step - median of the block's other steps),
        in ms: the cost of the ``LiveDiagnostics`` step measured against its neighbours, a fraction of a second
        apart (the neighbours carry the probe too, so it cancels)."""
        return median(1000 * (t[-1] - median(t[:-1])) for name, t in self.block_times[self.warmup:]
                      if name == mode and len(t) == self.block)


def measure_training(dataset: str, cycles: int, log_every: int, runs_dir: str):
    """Train ``dataset`` on the engine until ``cycles`` cycles of the three modes are timed; returns the timer,
    the extra ms of the ``LiveDiagnostics`` step (against the same position in store-only blocks) and the steps
    per epoch."""
    from workbench import TrainConfig
    from workbench.engine.trainer import Trainer

    cfg = TrainConfig(method="simclr", dataset=dataset, backbone="convnet", device="cpu", batch_size=BATCH,
                      epochs=100_000, log_every=log_every, progress=False, runs_dir=runs_dir, run_name=dataset)
    trainer = Trainer(cfg)
    timer = StepTimer(trainer, block=log_every, blocks=3 * cycles)
    result = trainer.fit()
    assert result.status == "stopped", result.status
    assert timer.probe_steps > 0 and timer.probe.probe is not None, "the online probe never trained"
    assert timer.probe.probe[1].in_features == FEATURE_DIM, timer.probe.probe
    diag_step_extra = timer.last_step_extra("diagnostics + store") - timer.last_step_extra("store only")
    return timer, diag_step_extra, trainer.steps_per_epoch


# ------------------------------------------------------------------------------------------------ pieces
def fake_bundle(n_train: int, n_test: int, classes: int, g: torch.Generator) -> SimpleNamespace:
    """What the probe reads of a ``DatasetBundle``: the labels of the training and held-out splits."""
    split = lambda n: SimpleNamespace(labels=torch.randint(0, classes, (n,), generator=g),  # noqa: E731
                                      has_labels=True)
    return SimpleNamespace(train=split(n_train), test=split(n_test), num_classes=classes)


class FakeTrainer:
    """What the callbacks read and write of a ``Trainer`` in one step or evaluation."""

    def __init__(self, bundle: SimpleNamespace | None = None, step: int = 1):
        self.bundle, self.step = bundle, step
        self.pending = {"scalars": {}, "histograms": {}}
        self.batch_index = None
        self.eval_features = None


def time_interleaved(pieces: dict, reps: int, warmup: int) -> dict[str, float]:
    """Median ms of each callable, all called once per round for ``warmup + reps`` rounds (the first ``warmup``
    not kept), in a new seeded random order each round: no piece always pays for following another (a store write
    right after a computation runs measurably slower than one after another write)."""
    times: dict[str, list[float]] = {k: [] for k in pieces}
    items, rng = list(pieces.items()), random.Random(0)
    for rep in range(reps + warmup):
        for name, fn in rng.sample(items, len(items)):
            t0 = time.perf_counter()
            fn()
            if rep >= warmup:
                times[name].append(1000 * (time.perf_counter() - t0))
    return {k: median(v) for k, v in times.items()}


def measure_pieces(reps: int, eval_reps: int, runs_dir: str, bins: int = 100):
    """Median ms of each live diagnostic and run-store transaction of a step (interleaved), and per data set of
    each extra the evaluation now does (interleaved). Returns ``(step_pieces, eval_pieces)``: name -> ms, and
    dataset -> name -> ms; the names are the rows of the pieces table."""
    from workbench.methods.base import StepOutput
    from workbench.runs.store import RunWriter

    g = torch.Generator().manual_seed(0)
    z1 = F.normalize(torch.randn(256, 128, generator=g), dim=1)
    z2 = F.normalize(z1 + 0.3 * torch.randn(256, 128, generator=g), dim=1)
    out = StepOutput(loss=torch.tensor(0.0), z1=z1, z2=z2)
    diag = LiveDiagnostics(every=1, bins=bins)
    fake = FakeTrainer()
    diag.on_step_end(fake, out)
    diag_scalars, diag_hists = dict(fake.pending["scalars"]), dict(fake.pending["histograms"])

    # the online probe on one step: the backbone features of a batch (post-ReLU, as SmallConvNet's), 10 classes
    n_digits = EVAL_SETS["digits"][0]
    ptrainer = FakeTrainer(fake_bundle(n_digits, EVAL_SETS["digits"][1], 10, g))
    h = torch.randn(BATCH, FEATURE_DIM, generator=g).relu()
    probe = OnlineLinearProbe()

    def probe_step():
        probe.captured = h  # what the forward hook keeps during the step
        ptrainer.batch_index = torch.randperm(n_digits, generator=g)[:BATCH]
        probe.on_step_end(ptrainer, out)

    probe_step()  # builds the probe and its optimiser, as the first training step does
    plain = {"loss": 5.0, "lr": 1e-3, "img_per_s": 900.0}
    with_probe = {**plain, "online_linear_loss": 2.3}
    writer = RunWriter(f"{runs_dir}/pieces", {"method": "bench"})
    step = itertools.count(1)
    k_diag = "LiveDiagnostics.on_step_end (256 x 128 embeddings)"
    k_probe = f"OnlineLinearProbe.on_step_end ({BATCH} x {FEATURE_DIM} features, 10 classes)"
    k_plain = f"RunWriter.log, plain step ({len(plain)} scalars)"
    k_plain_probe = f"RunWriter.log, plain step + online_linear_loss ({len(with_probe)} scalars)"
    k_write_diag = (f"RunWriter.log, diagnostics step ({len(with_probe) + len(diag_scalars)} scalars, "
                    f"2 x {bins}-bin histograms)")
    pieces = {
        k_diag: lambda: diag.on_step_end(fake, out),
        k_probe: probe_step,
        k_plain: lambda: writer.log(next(step), plain),
        k_plain_probe: lambda: writer.log(next(step), with_probe),
        k_write_diag: lambda: writer.log(next(step), {**with_probe, **diag_scalars}, diag_hists),
    }
    try:
        step_pieces = time_interleaved(pieces, reps, warmup=5)
        eval_pieces = {}
        for dataset, (n_train, n_test) in EVAL_SETS.items():
            # the evaluation's features: the training split (RankMe needs n >> d) and the held-out split
            memory = torch.randn(n_train, FEATURE_DIM, generator=g).relu()
            test = torch.randn(n_test, FEATURE_DIM, generator=g).relu()
            etrainer = FakeTrainer(fake_bundle(n_train, n_test, 10, g), step=1)
            etrainer.eval_features = {"step": etrainer.step, "test": test, "memory": memory}
            sv = spectrum(memory)

            def probe_eval():
                probe.on_epoch_end(etrainer)
                assert "online_linear_acc" in etrainer.pending["scalars"]

            eval_pieces[dataset] = time_interleaved({
                f"rankme + spectrum ({n_train} x {FEATURE_DIM} training features, two SVDs)":
                    lambda: (rankme(memory), spectrum(memory)),
                f"spectrum artifact write (RunWriter.add_arrays, {len(sv)} values)":
                    lambda: writer.add_arrays(next(step), "spectrum", {"rankme": 1.0, "n": n_train},
                                              singular_values=sv),
                f"OnlineLinearProbe.on_epoch_end ({n_test} held-out x {FEATURE_DIM}, stats of {n_train})":
                    probe_eval,
            }, eval_reps, warmup=2)
    finally:
        writer.close("finished")
    return step_pieces, eval_pieces


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
    p.add_argument("--piece-reps", type=int, default=200, help="repetitions of each per-step piece")
    p.add_argument("--eval-reps", type=int, default=15, help="repetitions of each per-evaluation piece")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    setup_threads(args.threads)
    every = args.log_every

    rows, est_rows, epoch_rows, ok = [], {}, [], True
    # steps per epoch (one evaluation per epoch at eval_every=1): the trainer's own where it ran
    steps_per_epoch = {d: max(1, n // BATCH) for d, (n, _) in EVAL_SETS.items()}
    with tempfile.TemporaryDirectory(prefix="bench-diag-") as runs_dir:
        step_pieces, eval_pieces = measure_pieces(args.piece_reps, args.eval_reps, runs_dir)
        diag_ms, probe_ms, write_plain, write_probe, write_diag = step_pieces.values()
        # what all live per-step diagnostics add per step: the probe and its scalar every step; LiveDiagnostics
        # and its larger store write (in place of the plain one) every `every` steps
        per_step_pieces = probe_ms + (write_probe - write_plain) + (diag_ms + write_diag - write_probe) / every
        cases = [("digits", args.cycles_digits), ("fashion-mnist", args.cycles_fashion)]
        for dataset, cycles in cases:
            if cycles <= 0:
                continue
            label = LABELS[dataset]
            timer, step_extra, spe = measure_training(dataset, cycles, every, runs_dir)
            steps_per_epoch[dataset] = spe
            cyc = timer.cycles()
            plain_cyc = timer.cycles(lambda t: median(t[:-1]))  # the block's steps without LiveDiagnostics
            ms = {m.name: median(c[m.name] for c in cyc) for m in MODES}
            ratios = lambda a, b, cs=cyc: [c[a] / c[b] - 1 for c in cs]  # noqa: E731  (paired within a cycle)
            diff = median(c["store only"] - c["neither"] for c in cyc)
            base = ms["store only"]
            blocks = ratios("diagnostics + store", "store only")
            probe_loop = median(ratios("diagnostics + store", "store only", plain_cyc))
            live_loop = step_extra / every / base
            evals = sum(eval_pieces[dataset].values()) / spe / base  # per evaluation, amortised over an epoch
            pieces_total = per_step_pieces / base + evals
            totals = (median(blocks) + evals, probe_loop + live_loop + evals, pieces_total)
            ok &= all(t <= 0.05 for t in totals)
            est_rows[label] = [
                f"{median(blocks):+.2%} {spread(blocks)}",
                f"{probe_loop:+.2%}",
                f"{step_extra:+.1f} ms -> {live_loop:+.2%}",
                f"{per_step_pieces:.2f} ms -> {per_step_pieces / base:+.2%}",
                f"{sum(eval_pieces[dataset].values()) / spe:.2f} ms -> {evals:+.2%} (1/{spe} steps)",
                *(f"**{t:+.2%}**" for t in totals),
            ]
            rows.append([label, f"{ms['diagnostics + store']:.1f}", f"{base:.1f}", f"{ms['neither']:.1f}",
                         f"{median(ratios('store only', 'neither')):+.1%} ({diff:+.2f} ms)",
                         f"{median(ratios('diagnostics + store', 'neither')):+.1%}", len(cyc),
                         timer.probe_steps])
            gaps = timer.gaps
            if gaps["epoch boundary"]:
                boundary = median(gaps["epoch boundary"]) - median(gaps["within epoch"])
                extra = [f"{boundary:.1f}", f"{boundary / spe / ms['diagnostics + store']:.1%}"]
            else:
                extra = ["n/a (no epoch ended)", "n/a"]
            epoch_rows.append([label, spe, f"{median(gaps['within epoch']):.2f}", *extra])

    table = markdown_table(["data (batch 256, CPU)", "ms/step diag+store", "ms/step store only", "ms/step neither",
                            "store writes overhead", "diag+store vs neither", "cycles", "probe steps"], rows)
    estimates = [
        "in loop, whole blocks: (diag+store) / (store only) - 1 [IQR over cycles]",
        "in loop, online probe: the blocks' plain steps (median), diag+store / store only - 1",
        f"in loop, LiveDiagnostics step: its extra over its neighbours, / {every} steps",
        f"from pieces, per step: probe + its scalar every step, LiveDiagnostics + its write every {every}",
        "per evaluation (from pieces): rankme + spectrum + artifact + probe evaluation, / steps per epoch",
        "**total: whole blocks + per evaluation**",
        "**total: probe + LiveDiagnostics step (in loop) + per evaluation**",
        "**total: from pieces (per step + per evaluation)**",
    ]
    labels = list(est_rows)
    otable = markdown_table(["all live diagnostics, % of a store-only step", *labels],
                            [[e, *(est_rows[lab][i] for lab in labels)] for i, e in enumerate(estimates)])
    how_often = [(f"every {every} steps", f"{diag_ms / every:.2f}"),
                 ("every step", f"{probe_ms:.2f}"),
                 ("every step (the baseline: store only)", "-"),
                 ("every step (in place of the plain write)", f"{write_probe - write_plain:+.2f}"),
                 (f"every {every} steps (in place of the plain write)", f"{(write_diag - write_probe) / every:+.2f}")]
    prows = [[k, f"{v:.2f}", how, added] for (k, v), (how, added) in zip(step_pieces.items(), how_often)]
    for dataset, ev in eval_pieces.items():
        spe = steps_per_epoch[dataset]
        for k, v in ev.items():
            prows.append([f"{dataset}: {k}", f"{v:.2f}", f"every evaluation = every {spe} steps", f"{v / spe:.2f}"])
    ptable = markdown_table(["piece (alone, CPU)", "ms per call", "how often (defaults)", "added ms per step"],
                            prows)
    etable = markdown_table(["data", "steps/epoch", "gap between steps, ms", "extra at epoch end, ms",
                             "amortised, % of a step"], epoch_rows)
    text = (f"### Live diagnostics and run store overhead (log_every={every}, blocks of {every} steps; ms/step: "
            f"median over blocks, overheads: median of within-cycle ratios)\n\n{table}\n\n"
            f"\"diag\" = all live per-step diagnostics switched together (LiveDiagnostics every {every} steps, the "
            f"online linear probe every step); the per-epoch evaluation is not in these step times. Probe steps: "
            f"the steps on which the online probe trained (the diagnostics + store blocks and the warm-up).\n\n"
            f"{otable}\n\n"
            f"All live diagnostics together, three estimates, each over the store-only step time and each with the "
            f"per-evaluation extras added (rankme + spectrum of the training features, the spectrum artifact, the "
            f"online probe's evaluation: a cost per evaluation, amortised over one epoch's steps at the default "
            f"eval_every=1; the kNN probe's feature extraction they reuse is not counted). Goal <= 5% (all three "
            f"totals, each data set): {goal(ok)}.\n\n{ptable}\n\n"
            f"Per-step pieces: median over {args.piece_reps} interleaved calls (a random order each round); "
            f"per-evaluation pieces: median over {args.eval_reps} interleaved calls, amortised over the steps of one "
            f"epoch (one evaluation per epoch at eval_every=1). The store writes' rows add their difference to the "
            f"write they replace.\n\n"
            f"Not part of the step times above: the engine's per-epoch bookkeeping (end-of-epoch "
            f"flush, checkpoint, metadata), the time between the last step of an epoch and the first of the next "
            f"minus the usual gap between steps:\n\n{etable}\n\n{machine_line()}\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
