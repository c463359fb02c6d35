"""The training loop: plain PyTorch, callbacks, checkpoints every epoch, resume, NaN guard, live run store.

The loop receives its parts (data, method, optimiser, schedule, callbacks) from :func:`workbench.engine.build.build`
or from its caller, and asks nothing of the kind of work: the run's task chose the parts."""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from workbench.config import ConfigError
from workbench.engine import distributed
from workbench.engine.build import Parts, build
from workbench.engine.callbacks import Callback
from workbench.engine.config import RESUMABLE, TrainConfig
from workbench.engine.device import (autocast, compile_forward, compiler_missing, cpu_threads,
                                     needs_grad_scaler, resolve_device, resolve_precision, step_rng)
from workbench.nn.globalbn import convert_global_batchnorm
from workbench.runs.store import (CHECKPOINT, DB_NAME, LOCK_FILE, STOP_FILE, RunBusy, RunLock, RunReader,
                                  RunsFolderError, RunStoreError, RunWriter, atomic_write, claim_run_dir)
from workbench.threads import intra_op_threads

ON_DEVICE_MAX_BYTES = 2 << 30  # datasets up to 2 GiB live on the training device; larger ones stream per batch


class NullWriter:
    """Stands in for the run store on ranks other than 0: every write is dropped."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run is marked failed and the last good checkpoint is kept."""


class StopRequested(Exception):
    """Raised inside the loop when a stop was requested (Ctrl-C, the app's stop button, ``handle.stop()``)."""


@dataclass
class TrainResult:
    run_dir: Path
    status: str
    step: int
    epochs_done: int
    metrics: dict


def default_run_name(cfg: TrainConfig) -> str:
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.dataset.split("/")[-1] if cfg.dataset.startswith("folder:")
                     else cfg.dataset)
    return f"{cfg.method}-{dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')[:-3]}"


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """The run directory of ``cfg`` (not claimed yet: :func:`claim_run` does that)."""
    runs = Path(cfg.runs_dir)
    run_dir = runs / (cfg.run_name or default_run_name(cfg))
    if not run_dir.resolve().is_relative_to(runs.resolve()):  # names are checked already; symlinks are not
        raise ConfigError(f"run_name: {run_dir} resolves outside the runs folder {runs}")
    return run_dir


def claim_run(cfg: TrainConfig, run_dir: Path | None = None) -> tuple[Path, RunLock]:
    """Claim the run folder before anything else: a new run creates it atomically, a resume checks it has a
    checkpoint and is not training; either way this process holds the run's lock until it ends."""
    run_dir = run_dir or resolve_run_dir(cfg)
    if cfg.resume and not (run_dir / CHECKPOINT).exists():
        if not run_dir.is_dir():
            raise ConfigError(f"resume: {run_dir} has no run folder to resume from")
        raise ConfigError(f"resume: {run_dir} has no checkpoint ({CHECKPOINT}) to resume from (a run saves one at "
                          f"the end of each epoch); start it again under a new name, or free the name with "
                          f"`workbench runs --runs-dir {run_dir.parent} --delete {run_dir.name}`")
    try:
        lock = claim_run_dir(run_dir, resume=cfg.resume)
    except RunBusy as e:
        raise ConfigError(f"{'resume' if cfg.resume else 'run_name'}: {e}; stop it first") from None
    except RunsFolderError as e:
        raise ConfigError(f"runs_dir: {e}") from None
    except RunStoreError as e:
        raise ConfigError(f"{'resume' if cfg.resume else 'run_name'}: {e}") from None
    if cfg.resume:
        try:
            if (run_dir / DB_NAME).exists():
                with RunReader(run_dir) as r:
                    if r.status().state == "running":  # a writer on another host (the lock is per host)
                        raise ConfigError(f"resume: {run_dir} is still running (its heartbeat is fresh); stop it "
                                          "first")
        except BaseException:
            lock.release()
            raise
    return run_dir, lock


def release_unused_run(run_dir: Path, lock: RunLock | None) -> None:
    """Undo a claim that never became a run (building it failed): the folder goes if it holds nothing else."""
    if lock is None:
        return
    lock.release()
    leftovers = [p for p in run_dir.iterdir() if p.name != LOCK_FILE] if run_dir.is_dir() else [None]
    if not leftovers:
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        run_dir.rmdir()


class Trainer:
    """Trains ``parts`` (built from ``config`` when not given) under ``config``'s schedule; ``callbacks`` are added
    to the parts' own."""

    def __init__(self, config: TrainConfig, callbacks: list[Callback] | None = None,
                 stop_event: threading.Event | None = None, run_dir: Path | None = None,
                 parts: Parts | None = None):
        self.cfg = config
        self.stop_event = stop_event or threading.Event()
        self.dist = distributed.from_environment()  # torchrun: this process's rank in the group
        if self.dist.enabled and config.batch_size % self.dist.world_size:
            raise ConfigError(f"batch_size={config.batch_size} must be divisible by the {self.dist.world_size} "
                              "processes (it is the global batch)")
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        # rank 0 names and claims the run directory before anything else; the others use the same one
        self.run_lock, claimed = None, None
        if self.dist.is_main:
            claimed, self.run_lock = claim_run(config, run_dir)
        self.run_dir = distributed.broadcast_object(claimed)
        try:
            self.parts = parts = parts or build(config, self.device)
        except BaseException:
            if not config.resume:
                release_unused_run(self.run_dir, self.run_lock)
            elif self.run_lock is not None:
                self.run_lock.release()
            raise
        self.bundle, self.method = parts.bundle, parts.method
        self.optimizer, self.scheduler = parts.optimizer, parts.scheduler
        self.batch_size, self.steps_per_epoch = parts.batch_size, parts.steps_per_epoch
        self.autocast_dtype = resolve_precision(config.precision, self.device, config.task.bf16_on_cpu,
                                                parts.bundle.image_size)
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(self.autocast_dtype))
        self.threads = cpu_threads(config.threads, self.device, self.autocast_dtype)  # set during fit()
        self.order_gen = torch.Generator().manual_seed(config.seed)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(config.seed + 1 + 1000 * self.dist.rank)
        self.callbacks = list(parts.callbacks) + list(callbacks or [])
        if not self.dist.is_main:
            self.callbacks = []  # diagnostics, evaluation and the run store belong to rank 0
        self.compiled = False
        if config.compile:
            why = compiler_missing(self.device)
            if why:
                self.method.warnings_for_first_step.append(f"--compile: {why}; training runs eager")
            else:
                compile_forward(self.method.backbone, self._compile_failed)
                self.compiled = True
        self.model = self.method  # what the loop calls: the method, or DDP around it
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            if self.method.sync_batchnorm:  # positives must not share per-device batch statistics
                convert_global_batchnorm(self.method)
            self.model = DistributedDataParallel(self.method, device_ids=[self.device.index]
                                                 if self.device.type == "cuda" else None,
                                                 find_unused_parameters=True)
        self.step = 0
        self.epoch = 0
        self.epochs_done = 0
        self.pending: dict = {"scalars": {}, "histograms": {}}
        self.unwritten: list[tuple[int, dict, dict]] = []  # steps queued for the run store (see flush)
        # on a GPU the per-step scalars reach the host once per logged step, not after every step
        self.write_every = config.log_every if self.device.type == "cuda" else 1
        train = self.bundle.train.images
        self.train_images = train.to(self.device) if train.numel() <= ON_DEVICE_MAX_BYTES else train
        self.writer: RunWriter | None = None
        self.bar = None
        self.batch_index: torch.Tensor | None = None
        self.eval_features: dict | None = None  # set by the epoch evaluation for the callbacks after it

    # ------------------------------------------------------------------ helpers used by callbacks
    def flush(self, force: bool = True) -> None:
        """Queue what the step and its callbacks collected for the run store and write the queue: always when
        ``force`` (what callbacks ask for), else once ``write_every`` steps are queued (the loop)."""
        if self.pending["scalars"] or self.pending["histograms"]:
            self.unwritten.append((self.step, self.pending["scalars"], self.pending["histograms"]))
        self.pending = {"scalars": {}, "histograms": {}}
        if force:  # a callback's (rank 0 only): no collective
            self._write_unwritten(collective=False)
        elif len(self.unwritten) >= self.write_every:  # the loop's: every process at the same step
            self._write_unwritten(collective=True)

    def _write_unwritten(self, check: bool = True, collective: bool = False) -> None:
        """Write the queued steps, one transaction each. Their tensor scalars (the loss, the methods' logs) reach
        the host together, in one copy: on a GPU the steps in between run without waiting for the device. With
        ``check``, a non-finite loss among them ends the run (:class:`NonFiniteLoss`) after the steps before it
        are written; with ``collective`` every process decides together (DDP: only where every process calls
        this at the same step, i.e. the loop, never a callback of rank 0)."""
        entries, self.unwritten = self.unwritten, []
        cells = [(s, k) for _, s, _ in entries for k, v in s.items() if isinstance(v, torch.Tensor)]
        if cells:
            values = torch.stack([s[k].detach().float().reshape(()).to(self.device) for s, k in cells]).tolist()
            for (s, k), v in zip(cells, values):
                s[k] = v
        bad = next((i for i, (_, s, _) in enumerate(entries) if not math.isfinite(s.get("loss", 0.0))), None)
        seen = distributed.any_true(bad is not None, self.device) if collective else bad is not None
        if check and seen:
            bad = len(entries) if bad is None else bad  # another process saw it: keep what this one logged
        else:
            bad = None
        for step, scalars, histograms in entries[:bad]:
            if self.dist.is_main:
                self.writer.log(step, scalars, histograms)
        if bad is not None:
            step, scalars, _ = entries[bad] if bad < len(entries) else (self.step, {"loss": float("nan")}, None)
            ckpt = (f"the last good checkpoint is {self.checkpoint_path} (epoch {self.epochs_done})"
                    if self.checkpoint_path.exists() else "no checkpoint was saved yet (none completed an epoch)")
            raise NonFiniteLoss(f"loss became {scalars['loss']} at step {step} (epoch {self.epoch + 1}); training "
                                f"stopped and {ckpt}. Try a lower learning rate (--lr) or a larger temperature "
                                f"(--tau).")
        if entries and self.bar is not None and "loss" in entries[-1][1]:
            self.bar.set_postfix(epoch=f"{self.epoch + 1}/{self.cfg.epochs}", loss=f"{entries[-1][1]['loss']:.4f}",
                                 img_s=f"{entries[-1][1].get('img_per_s', 0):,.0f}", refresh=False)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        state = {
            "model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "step": self.step, "epochs_done": self.epochs_done, "config": self.cfg.to_dict(),
            "order_gen": self.order_gen.get_state(), "aug_gen": self.aug_gen.get_state(),
        }
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(state, f))  # the previous checkpoint stays until this one is whole

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            missing = {"config", "model", "optimizer", "scheduler", "scaler", "step", "epochs_done", "order_gen",
                       "aug_gen"} - set(state if isinstance(state, dict) else ())
            if missing:
                raise ValueError(f"it has no {', '.join(sorted(missing))}")
            saved = TrainConfig.from_dict(state["config"]).to_dict()
        except Exception as e:  # truncated, empty, random bytes, {} or a folder in its place
            why = str(e).splitlines()[0].split(". ")[0][:160] if str(e) else type(e).__name__
            raise ConfigError(f"resume: {path} is not a readable checkpoint ({why}); restore it or start a new "
                              "run") from e
        now = self.cfg.to_dict()
        for key in sorted(set(saved) | set(now)):
            if key not in RESUMABLE and saved.get(key) != now.get(key):
                raise ConfigError(f"resume: {key}={now.get(key)!r} differs from the run's {saved.get(key)!r}; "
                                  "resume with the run's own configuration")
        try:
            self.method.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ConfigError(f"resume: the checkpoint {self.checkpoint_path} does not fit this version's "
                              f"{self.cfg.method} model ({str(e).splitlines()[0]}); start a new run") from e
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epochs_done = state["step"], state["epochs_done"]
        self.order_gen.set_state(state["order_gen"].cpu())
        self.aug_gen.set_state(state["aug_gen"].to(self.aug_gen.get_state().device))

    # ------------------------------------------------------------------ the loop
    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def fit(self) -> TrainResult:
        cfg = self.cfg
        if cfg.resume:
            try:
                self.load_checkpoint()
            except BaseException:
                if self.run_lock is not None:
                    self.run_lock.release()
                raise
        meta = {"method": cfg.method, "task": cfg.task.name, "dataset": cfg.dataset, "config": cfg.to_dict(),
                "device": str(self.device), "precision": str(self.autocast_dtype or torch.float32).split(".")[-1],
                "threads": self.threads or torch.get_num_threads(), **self.parts.model_info,
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.steps_per_epoch * cfg.epochs, "epoch": self.epochs_done,
                "classes": self.bundle.classes, "dataset_source": self.bundle.source}
        if self.dist.enabled:
            meta["world_size"] = self.dist.world_size
        self.writer = RunWriter(self.run_dir, meta) if self.dist.is_main else NullWriter()
        stop_file = self.run_dir / STOP_FILE
        if self.dist.is_main and stop_file.exists():  # left by a process that died before it could remove it
            stop_file.unlink()
            self.writer.event(self.step, "removed a STOP file left by an earlier process of this run")
        if cfg.resume:
            dropped = self.writer.discard_after(self.step)
            lost = (f"; the {dropped} steps logged after it by the interrupted process were discarded" if dropped
                    else "")
            self.writer.event(self.step, f"resumed from the checkpoint at step {self.step} "
                                         f"(epoch {self.epochs_done}){lost}")
        with intra_op_threads(self.threads):  # the run's --threads while it trains, the caller's count after
            status, error = "failed", ""
            self._first_step = self.step
            try:
                self._call("on_fit_start")
                self.flush()
                self.method.train()
                self.bar = tqdm(total=self.steps_per_epoch * cfg.epochs, initial=self.step,
                                disable=not cfg.progress or not self.dist.is_main,
                                unit="step", dynamic_ncols=True, desc=f"{cfg.method} on {cfg.dataset}")
                for self.epoch in range(self.epochs_done, cfg.epochs):
                    self._train_epoch()
                    if self.unwritten:  # queued steps (a GPU): all checked, on every process (same count on each)
                        self._write_unwritten(collective=True)
                    self.epochs_done = self.epoch + 1
                    self._call("on_epoch_end")
                    self.pending["scalars"]["epoch"] = self.epochs_done
                    self.flush()
                    self._check_finite_weights()
                    self.save_checkpoint()
                    self.writer.set_meta(epoch=self.epochs_done)
                status = "finished"
            except NonFiniteLoss as e:
                error = str(e)
                self.writer.event(self.step, error, "error")
                raise
            except (StopRequested, KeyboardInterrupt):
                status, error = "stopped", f"stopped by the user at step {self.step}"
            except BaseException as e:
                error = f"{type(e).__name__}: {e}"
                raise
            finally:
                try:
                    self._write_unwritten(check=False)  # the steps of a stopped or failed run are kept
                except Exception:  # noqa: BLE001 - the run's status below matters more than its last rows
                    pass
                if getattr(self, "bar", None) is not None:
                    self.bar.close()
                try:
                    self._call("on_fit_end", status)
                finally:
                    self.writer.close(status, error)
                    if self.dist.is_main and stop_file.exists():
                        stop_file.unlink()
                    if self.run_lock is not None:
                        self.run_lock.release()
        metrics = self._last_metrics() if self.dist.is_main else {}
        return TrainResult(self.run_dir, status, self.step, self.epochs_done, metrics)

    def _check_finite_weights(self) -> None:
        """A finite loss can still leave non-finite weights (an overflowing gradient): never checkpoint those."""
        bad = [n for n, p in self.method.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLoss(f"weights became non-finite in epoch {self.epoch + 1} (e.g. {bad[0]}); training "
                                f"stopped and the previous checkpoint is kept. Try a lower learning rate (--lr).")

    def _last_metrics(self) -> dict:
        with RunReader(self.run_dir) as r:
            return r.last_scalars()

    def _compile_failed(self, e: Exception) -> None:
        """The compiled backbone failed to compile (at its first call) and went back to eager: say so in the run."""
        self.compiled = False
        why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        self.method.warnings_for_first_step.append(f"--compile failed ({why}); training goes on eager")

    def _train_epoch(self) -> None:
        n, bs = len(self.bundle.train), self.batch_size
        order = self.method.batch_order(self.steps_per_epoch, bs, self.order_gen)  # G-SimCLR chooses its batches
        if order is None:
            order = torch.randperm(n, generator=self.order_gen)[: self.steps_per_epoch * bs].view(-1, bs)
        stop_file = self.run_dir / STOP_FILE
        for idx in order:
            if self.stop_event.is_set() or stop_file.exists():
                raise StopRequested()
            t0 = time.perf_counter()
            local = idx[self.dist.rank::self.dist.world_size]  # this process's share of the global batch
            self.batch_index = local  # which training images this step sees (the online probe's labels)
            images = self.train_images[local.to(self.train_images.device)].to(self.device, non_blocking=True)
            with step_rng(self.cfg.seed, self.step, self.dist.rank, self.device), \
                    autocast(self.device, self.autocast_dtype):
                out = self.model(images, self.step, self.aug_gen, index=local)
            if out.fresh_optimizer:  # the method's new stage starts its optimiser afresh (the lr schedule goes on)
                self.optimizer.state.clear()
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out.loss).backward()
            if self.cfg.grad_clip > 0:  # on the true gradients (unscaled), summed over processes by DDP already
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.method.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.step += 1
            dt = time.perf_counter() - t0
            if self.compiled and self.step == self._first_step + 1:
                self.writer.event(self.step, f"torch.compile: the first step took {dt:.1f} s, compilation included")
            self.pending["scalars"].update(loss=out.loss.detach(), lr=lr, img_per_s=len(idx) / dt, **out.logs)
            for message in out.warnings:
                self.writer.event(self.step, message, "warning")
            for message in out.notes:
                self.writer.event(self.step, message, "info")
            self._call("on_step_end", out)
            self.flush(force=False)
            self.bar.update()
