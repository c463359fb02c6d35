"""Tasks: one per kind of work (representation learning, low-light enhancement, ...).

A task owns what differs between kinds of work: the options every run of it has, how its dataset is loaded, how a
method's model is put together from it, which evaluation callbacks run, what the CLI's summary line says, and which
app pages show its runs. The trainer, the CLI and the app ask the run's task (``task_of(method)`` in
:mod:`workbench.engine.registry`) instead of branching on the kind of method; a method names its task by
``Method.task``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from workbench.config import Options

if TYPE_CHECKING:  # pragma: no cover
    from workbench.data.registry import DatasetBundle
    from workbench.engine.callbacks import Callback
    from workbench.engine.config import TrainConfig
    from workbench.methods.base import Method


class Task:
    name = ""
    title = ""  # in words: "representation-learning", "low-light enhancement"
    Options: type[Options] = Options  # options every run of the task has (beside the common and the method's own)
    default_dataset = "digits"
    default_batch_size = 256
    pages: tuple[str, ...] = ()  # the app pages that show this task's runs (the Runs page shows every run)
    score = ("knn_acc", "kNN accuracy")  # the metric the runs listing and the summary line lead with
    bf16_on_cpu = True  # --precision auto may use bf16 autocast on a CPU with native bf16 (the low-light task: no)

    def datasets(self) -> list[str]:
        """Dataset names the app offers (``folder:<path>`` is always offered as well)."""
        raise NotImplementedError

    def load_data(self, cfg: "TrainConfig", probe: bool = False) -> "DatasetBundle":
        """The run's dataset. ``probe``: as small as possible, only to fail early (the app, before it launches)."""
        raise NotImplementedError

    def build_method(self, cfg: "TrainConfig", bundle: "DatasetBundle",
                     device: torch.device) -> tuple["Method", dict]:
        """The method, with initial weights, and what the run's meta records of the model beyond the method's name
        (e.g. ``{"backbone": "convnet"}``)."""
        raise NotImplementedError

    def callbacks(self, cfg: "TrainConfig") -> list["Callback"]:
        """The evaluation callbacks of a run (besides the live diagnostics every run has)."""
        return []

    def summary(self, metrics: dict) -> str:
        """The end of ``workbench train``'s last line, from the run's last metrics."""
        key, label = self.score
        return f"{label} {metrics[key]:.4f}" if key in metrics else f"{label} not measured"

    def knob(self, config: dict) -> str:
        """The options the app's status line shows for a run (from its stored config)."""
        return ""
