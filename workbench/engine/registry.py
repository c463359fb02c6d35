"""The tasks there are, and the task of each method (``Method.task`` names it)."""
from __future__ import annotations

from workbench.config import ConfigError
from workbench.engine.representation import REPRESENTATION
from workbench.engine.task import Task
from workbench.lowlight.task import LOWLIGHT
from workbench.methods import METHODS

TASKS: dict[str, Task] = {task.name: task for task in (REPRESENTATION, LOWLIGHT)}


def method_class(method: str):
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not allowed: one of {', '.join(sorted(METHODS))}")
    return METHODS[method]


def task_of(method: str | None) -> Task:
    """The task of ``method``; a method that is not registered (e.g. an old run's) counts as representation
    learning, the task that needs nothing of it beyond what any run logs."""
    cls = METHODS.get(method or "")
    return TASKS[cls.task] if cls is not None else REPRESENTATION
