"""Training configuration: one flat dataclass, validated field by field with messages that name the field."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field and the allowed values."""


@dataclass
class TrainConfig:
    # what to train
    method: str = "simclr"
    dataset: str = "digits"
    data_root: str = "data"
    download: bool = False
    image_size: int | None = None  # None: the dataset's own size
    backbone: str = "auto"  # auto: resnet18 on CUDA for >= 32 px, else the small convnet
    proj_dim: int = 128
    # SimCLR
    tau: float = 0.2  # solo-learn's CIFAR default; SimCLR's official CIFAR value is 0.5
    # optimisation
    epochs: int = 30
    batch_size: int = 256
    optimizer: str = "adamw"  # adamw | sgd | lars
    lr: float | None = None  # None: 1e-3 for adamw, 0.06 * batch/256 for sgd, 0.3 * batch/256 for lars
    weight_decay: float | None = None  # None: 1e-4 for adamw, 5e-4 for sgd, 1e-6 for lars
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + grad scaling)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0
    # diagnostics and storage
    log_every: int = 10  # steps between pos/neg histograms and geometry diagnostics
    hist_bins: int = 100
    knn_k: int | None = None  # None: min(200, samples per class / 2)
    knn_t: float = 0.1
    probe_size: int = 1000  # points in the embedding snapshot
    eval_every: int = 1  # epochs between kNN + snapshot
    runs_dir: str = "runs"
    run_name: str | None = None
    resume: bool = False
    progress: bool = True

    CHOICES = {"optimizer": ("adamw", "sgd", "lars"), "backbone": ("auto", "convnet", "resnet18")}

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, name: str, allowed: str):
            if not cond:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not allowed: {allowed}")

        need(self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.batch_size >= 2, "batch_size", "an integer >= 2 (contrastive methods need negatives)")
        need(self.tau > 0, "tau", "a temperature > 0 (typical 0.05 to 1.0)")
        need(self.lr is None or self.lr > 0, "lr", "a learning rate > 0, or None for the optimizer's default")
        need(self.weight_decay is None or self.weight_decay >= 0, "weight_decay", ">= 0")
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(self.warmup_epochs >= 0, "warmup_epochs", ">= 0")
        need(self.log_every >= 1, "log_every", "an integer >= 1")
        need(self.hist_bins >= 2, "hist_bins", "an integer >= 2")
        need(self.knn_k is None or self.knn_k >= 1, "knn_k", "an integer >= 1, or None for automatic")
        need(self.knn_t > 0, "knn_t", "> 0")
        need(self.probe_size >= 0, "probe_size", ">= 0")
        need(self.eval_every >= 1, "eval_every", "an integer >= 1")
        need(self.proj_dim >= 2, "proj_dim", "an integer >= 2")
        need(self.image_size is None or self.image_size >= 4, "image_size", "an integer >= 4, or None")
        for name, choices in self.CHOICES.items():
            need(getattr(self, name) in choices, name, f"one of {', '.join(choices)}")
        from workbench.methods import METHODS

        need(self.method in METHODS, "method", f"one of {', '.join(sorted(METHODS))}")

    # defaults that depend on other fields
    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return {"adamw": 1e-3, "sgd": 0.06 * self.batch_size / 256, "lars": 0.3 * self.batch_size / 256}[self.optimizer]

    @property
    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return {"adamw": 1e-4, "sgd": 5e-4, "lars": 1e-6}[self.optimizer]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
