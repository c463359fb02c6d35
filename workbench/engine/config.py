"""A run's configuration: the common options, its task's and its method's, reached by name.

    cfg = TrainConfig(method="moco", queue_size=1024, epochs=5)
    cfg.queue_size, cfg.epochs, cfg.backbone          # flat access to the three option sets
    cfg.to_dict()                                     # only the options that apply to this run (what a run stores)

An option that belongs to another method is refused by name (``queue_size`` is MoCo's, not SimCLR's). Stored
configurations of older versions, which held every method's options, still load with :meth:`TrainConfig.from_dict`.
"""
from __future__ import annotations

import dataclasses
import typing
from functools import lru_cache
from typing import Any

from workbench.config import CommonOptions, ConfigError, Options, Spec, specs
from workbench.engine.registry import TASKS, method_class, task_of
from workbench.methods import METHODS

# what ``--resume`` may change: where and how long the run goes on, never what it computes
RESUMABLE = frozenset({"epochs", "device", "progress", "resume", "runs_dir", "run_name", "precision",
                       "channels_last", "compile", "threads", "data_root"})


def option_sets(method: str) -> tuple[type[Options], type[Options], type[Options]]:
    """The common options (with the method's own defaults, ``Method.common_defaults``), the task's and the
    method's, in that order."""
    cls = method_class(method)
    return common_options(method), TASKS[cls.task].Options, cls.Options


@lru_cache(maxsize=None)
def common_options(method: str) -> type[CommonOptions]:
    """:class:`CommonOptions` with the defaults ``method`` declares in ``common_defaults`` (its paper's optimiser,
    batch, ...); the same class when it declares none."""
    overrides = dict(method_class(method).common_defaults)
    if not overrides:
        return CommonOptions
    hints = typing.get_type_hints(CommonOptions)
    fields = {f.name: f for f in dataclasses.fields(CommonOptions)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"{method}.common_defaults names {unknown}, which are not common options")
    new = [(k, hints[k], dataclasses.field(default=v, metadata=fields[k].metadata)) for k, v in overrides.items()]
    return dataclasses.make_dataclass(f"{method_class(method).__name__}CommonOptions", new,
                                      bases=(CommonOptions,))


def option_specs(method: str) -> list[Spec]:
    return [s for group in option_sets(method) for s in specs(group)]


def owners() -> dict[str, list[str]]:
    """Every option name -> the methods it applies to."""
    out: dict[str, list[str]] = {}
    for name in METHODS:
        for s in option_specs(name):
            out.setdefault(s.name, []).append(name)
    return out


class TrainConfig:
    __slots__ = ("common", "task_options", "options")

    def __init__(self, **values: Any):
        method = values.get("method", CommonOptions.method)
        groups = option_sets(method)
        names = [{s.name for s in specs(g)} for g in groups]
        stray = sorted(set(values) - set().union(*names))
        if stray:
            applies = owners()
            known = [k for k in stray if k in applies]
            if known:
                raise ConfigError("; ".join(f"{k} is not an option of {method} (it is one of "
                                            f"{', '.join(applies[k])})" for k in known))
            raise ConfigError(f"unknown config field(s) {stray}; known fields: {sorted(applies)}")
        task = task_of(method)
        parts = [g(**{k: v for k, v in values.items() if k in n}) for g, n in zip(groups, names)]
        common = parts[0]
        if common.dataset is None:
            common.dataset = task.default_dataset
        if common.batch_size is None:
            common.batch_size = task.default_batch_size
        object.__setattr__(self, "common", common)
        object.__setattr__(self, "task_options", parts[1])
        object.__setattr__(self, "options", parts[2])

    def __getattr__(self, name: str) -> Any:
        for part in (object.__getattribute__(self, s) for s in TrainConfig.__slots__):
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(f"{name!r} is not an option of {self.common.method} (its options: "
                             f"{', '.join(self.to_dict())})")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TrainConfig is immutable: use cfg.replace(name=value)")

    @property
    def task(self):
        return task_of(self.common.method)

    def to_dict(self) -> dict[str, Any]:
        return {**self.common.to_dict(), **self.task_options.to_dict(), **self.options.to_dict()}

    def __eq__(self, other) -> bool:
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes``; a change of method keeps the common options and drops the old method's."""
        base = self.to_dict()
        if changes.get("method", base["method"]) != base["method"]:
            base = self.common.to_dict()
            if self.common.batch_size == self.task.default_batch_size:  # the old task's default, not a choice
                base["batch_size"] = None
            if self.common.dataset == self.task.default_dataset:
                base["dataset"] = None
            for k, v in method_class(base["method"]).common_defaults.items():
                if base.get(k) == v:  # the old method's default, not a choice
                    base.pop(k)
        return TrainConfig(**{**base, **changes})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """From a stored configuration. Older versions stored every method's options in every run: the options
        that do not apply to this run's method are dropped; a name no method knows is an error."""
        if "amp" in d:  # stored before --precision existed: amp=True meant autocast on CUDA only, fp32 on a CPU
            amp = d["amp"]
            d = {k: v for k, v in d.items() if k != "amp"}
            d.setdefault("precision", "auto" if amp and d.get("device", "auto") != "cpu" else "fp32")
        method = d.get("method", CommonOptions.method)
        applies = {s.name for s in option_specs(method)}
        everyone = owners()
        unknown = sorted(set(d) - set(everyone))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(everyone)}")
        if "optimizer" in d and "grad_clip" not in d:  # stored (every common option) before grad_clip existed:
            d = {**d, "grad_clip": 0.0}  # it trained without clipping, whatever its method's default is now
        if "optimizer" in d and "lr_schedule" not in d:  # stored before --lr-schedule: it trained on the cosine
            d = {**d, "lr_schedule": "cosine", "warmup_epochs": d.get("warmup_epochs", 1.0)}
        return cls(**{k: v for k, v in d.items() if k in applies})
