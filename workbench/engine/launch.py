"""Start and stop training runs as separate processes (the app's "new run" form and stop button use this).

The training process is ``python -m workbench train ...``: the same code path as the command line, so a run
started from the dashboard behaves exactly like one started in a terminal, and survives the app being closed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from workbench.engine.config import TrainConfig
from workbench.engine.trainer import default_run_name
from workbench.runs.store import STOP_FILE, RunReader


def train_command(config: TrainConfig) -> list[str]:
    """The ``workbench train`` command line for a config (the method, then the options that differ from its
    defaults)."""
    defaults = TrainConfig(method=config.method)
    cmd = [sys.executable, "-m", "workbench", "train", "--method", config.method]
    for key, value in config.to_dict().items():
        if key == "method" or value == getattr(defaults, key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):  # the CLI's rule: a switch for False defaults, --flag true/false otherwise
            cmd += [flag] if getattr(defaults, key) is False else [flag, str(value).lower()]
        else:
            cmd += [flag, str(value)]
    return cmd


def launch(config: TrainConfig, log_file: str | os.PathLike | None = None) -> tuple[subprocess.Popen, Path]:
    """Start training in a new process (its own session, so it outlives the caller); returns it and its run dir."""
    if not config.run_name:
        config = config.replace(run_name=default_run_name(config))
    run_dir = Path(config.runs_dir) / config.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_file or run_dir / "train.log", "ab")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen(train_command(config.replace(progress=False)), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    log.close()
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()  # no zombie left behind
    return proc, run_dir


def stop(run_dir: str | os.PathLike) -> str:
    """Ask a run to stop: a ``STOP`` file in its folder, which the training loop checks before every step. It then
    keeps its last checkpoint and says "stopped". No signal is sent, so a run trained inside a notebook kernel
    stops without taking the kernel with it, and a run on another machine sharing the folder stops too."""
    with RunReader(run_dir) as r:
        state = r.status().state
    if state != "running":
        return f"not running ({state})"
    (Path(run_dir) / STOP_FILE).touch()
    return "stop requested"
