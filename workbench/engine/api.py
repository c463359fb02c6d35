"""Entry points for Python users: ``train`` (blocking) and ``start_training`` (a background thread that the
notebooks and the app follow through the run store)."""
from __future__ import annotations

import threading
from pathlib import Path

from workbench.engine.config import TrainConfig


def _config(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    return config.replace(**overrides) if config is not None else TrainConfig(**overrides)


def train(config: TrainConfig | None = None, callbacks=None, **overrides):
    """Train to the end and return a :class:`~workbench.engine.trainer.TrainResult`.

    ``workbench.train(method="simclr", dataset="digits", epochs=5)``; any :class:`TrainConfig` field is a keyword.
    """
    from workbench.engine.trainer import Trainer

    return Trainer(_config(config, overrides), callbacks=callbacks).fit()


class TrainingHandle:
    """A run training in a background thread. ``run_dir`` is known at once; read it with ``RunReader``."""

    def __init__(self, cfg: TrainConfig, callbacks=None):
        from workbench.engine.trainer import Trainer

        self._stop = threading.Event()
        self.result = None
        self.error: BaseException | None = None
        # build in the caller's thread so configuration and dataset errors surface here, not silently in the thread
        self._trainer = Trainer(cfg, callbacks=callbacks, stop_event=self._stop)
        self.run_dir: Path = self._trainer.run_dir
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"train-{self.run_dir.name}")
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._trainer.fit()
        except BaseException as e:  # kept for the caller; the run store already says "failed" with the message
            self.error = e

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the loop to stop after the current step; the run is marked ``stopped`` (its checkpoint kept)."""
        self._stop.set()

    def join(self, timeout: float | None = None):
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


def start_training(config: TrainConfig | None = None, callbacks=None, **overrides) -> TrainingHandle:
    """Start training in a background thread and return at once with a :class:`TrainingHandle`."""
    cfg = _config(config, overrides)
    return TrainingHandle(cfg, callbacks)
