"""Turn a configuration into the parts a training run needs; the loop (:mod:`workbench.engine.trainer`) only
receives them.

    parts = build(cfg, device)                       # what `workbench train` does
    parts = build(cfg, device, bundle=my_bundle)     # a benchmark or a test swaps a piece: no patching needed

The run's task loads the data and puts the method together (backbone, views, heads); the initial weights come
from ``cfg.seed`` without touching the caller's random state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.config import ConfigError
from workbench.data.registry import DatasetBundle
from workbench.engine.callbacks import Callback
from workbench.engine.config import TrainConfig
from workbench.engine.optim import build_optimizer, build_scheduler
from workbench.methods.base import Method


@dataclass
class Parts:
    bundle: DatasetBundle
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    callbacks: list[Callback]
    batch_size: int
    steps_per_epoch: int
    model_info: dict = field(default_factory=dict)  # e.g. {"backbone": "convnet"}, recorded in the run's meta


def build(cfg: TrainConfig, device: torch.device, bundle: DatasetBundle | None = None,
          method: Method | None = None, callbacks: list[Callback] | None = None) -> Parts:
    """The parts of a run of ``cfg`` on ``device``; ``bundle``, ``method`` or ``callbacks`` given are used as they
    are (``callbacks`` replaces the task's evaluation callbacks)."""
    task = cfg.task
    bundle = bundle if bundle is not None else task.load_data(cfg)
    if len(bundle.train) < 2:
        raise ConfigError(f"dataset {cfg.dataset!r} has {len(bundle.train)} training images; need >= 2")
    info = {}
    if method is None:
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, without resetting the caller's RNG
            torch.manual_seed(cfg.seed)
            method, info = task.build_method(cfg, bundle, device)
    method.to(device)
    if cfg.channels_last:  # 4-d weights only; the inputs may stay contiguous (a conv follows its weight's format)
        method.to(memory_format=torch.channels_last)
    batch_size = min(cfg.batch_size, len(bundle.train))
    steps_per_epoch = method.steps_per_epoch(len(bundle.train), batch_size) or bundle.steps_per_epoch(batch_size)
    optimizer = build_optimizer(method, cfg)
    scheduler = build_scheduler(optimizer, steps_per_epoch * cfg.epochs, round(cfg.warmup_epochs * steps_per_epoch),
                                cfg.lr_schedule)
    return Parts(bundle, method, optimizer, scheduler, task.callbacks(cfg) if callbacks is None else callbacks,
                 batch_size, steps_per_epoch, info)
