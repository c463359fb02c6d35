"""Start and stop training runs as separate processes (the app's "new run" form and stop button use this), and
``workbench eval`` on a run (the Probes page's button).

The training process is ``python -m workbench train ...``: the same code path as the command line, so a run
started from the dashboard behaves exactly like one started in a terminal, and survives the app being closed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.config import ConfigError
from workbench.engine.config import TrainConfig
from workbench.engine.trainer import default_run_name
from workbench.runs.store import LAUNCH_LOG, STOP_FILE, RunReader, atomic_write_bytes


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
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()  # atomic: of two launches with one name, one gets the folder; the trainer then claims it
    except FileExistsError:
        raise ConfigError(f"run name {config.run_name!r} is taken: choose another") from None
    log = open(log_file or run_dir / LAUNCH_LOG, "ab")
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


# ---------------------------------------------------------------------- `workbench eval` as a background process
EVAL_LOG, EVAL_PID, EVAL_RC = "eval.log", "eval.pid", "eval.rc"  # in the run's folder
EVAL_LOCK = ".eval.lock"  # flock held by the running `workbench eval` of the run
EVAL_LOCK_FD = "WORKBENCH_EVAL_LOCK_FD"  # environment: the descriptor of the lock a child inherited


class EvalRunning(RuntimeError):
    """``workbench eval`` is already running on this run."""


def hold_eval_lock(run_dir: str | os.PathLike, tries: int = 5) -> int:
    """Take the run's evaluation lock, an OS lock (``flock``) on ``<run>/.eval.lock``, and return its descriptor:
    held until that descriptor (and every copy a child inherited) is closed, or the process ends, even by
    kill -9. The holder's pid is written in the file. Raises :class:`EvalRunning` when another process holds it
    (``tries`` short retries first: :func:`eval_lock_holder` takes it for an instant when it looks)."""
    run_dir = Path(run_dir)
    fd = os.open(run_dir / EVAL_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (not on Linux or macOS): no lock
        return fd
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == tries - 1:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise EvalRunning(f"workbench eval is already running on {run_dir.name} (pid {holder})") from None
            time.sleep(0.01)
    mark_eval_lock(fd)
    return fd


def mark_eval_lock(fd: int) -> None:
    """Write this process's pid into the lock file it holds (a child that inherited the lock does it too)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def eval_lock_holder(run_dir: str | os.PathLike) -> int | None:
    """The pid of the process that holds the run's evaluation lock (0 when unreadable), ``None`` when none does."""
    path = Path(run_dir) / EVAL_LOCK
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)  # releases the instant's lock if it was taken
    return None


@dataclass
class EvalProcess:
    """What the run's last ``workbench eval`` started by :func:`start_eval` is doing.

    ``state``: ``none`` (never started here), ``running`` (a process holds the run's evaluation lock),
    ``finished`` or ``failed``; ``returncode`` is ``None`` while it runs and when the process that started it is
    gone before it ended (the log then decides); ``log`` is the tail of ``eval.log`` (stdout and stderr) with
    tqdm's carriage-return updates as lines."""

    state: str
    pid: int | None = None
    started: float | None = None
    returncode: int | None = None
    log: list[str] = field(default_factory=list)

    @property
    def progress(self) -> str:
        """The last progress-bar line (``label budgets:  40%|...``), or ``""``."""
        bars = [line for line in self.log if "%|" in line or "it/s" in line or "fit/s" in line]
        return bars[-1] if bars else ""

    def last_lines(self, n: int = 15) -> str:
        return "\n".join(self.log[-n:])


def eval_command(run_dir: str | os.PathLike, probes: str | list[str] | None = None, draws: int | None = None,
                 episodes: int | None = None) -> list[str]:
    """``python -m workbench eval RUN_DIR [--probes ...] [--draws N] [--episodes N]``."""
    cmd = [sys.executable, "-m", "workbench", "eval", str(Path(run_dir).resolve())]
    if probes:
        cmd += ["--probes", probes if isinstance(probes, str) else ",".join(probes)]
    if draws is not None:
        cmd += ["--draws", str(int(draws))]
    if episodes is not None:
        cmd += ["--episodes", str(int(episodes))]
    return cmd


def _log_lines(path: Path, tail_bytes: int = 16_000) -> list[str]:
    """The last lines of a log, tqdm's ``\\r`` updates split into lines of their own, blank ones dropped."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    lines = [line.rstrip() for line in re.split(r"[\r\n]+", text)]
    if size > tail_bytes and lines:
        lines = lines[1:]  # the first one is cut
    return [line for line in lines if line.strip()]


def eval_status(run_dir: str | os.PathLike) -> EvalProcess:
    """The state of the last ``workbench eval`` started on ``run_dir`` by :func:`start_eval` (any process may ask:
    the state lives in the run's folder: the evaluation lock says whether one runs, ``eval.pid`` / ``eval.rc`` /
    ``eval.log`` what the last one started here was and how it ended)."""
    run_dir = Path(run_dir)
    holder = eval_lock_holder(run_dir)
    try:
        record = json.loads((run_dir / EVAL_PID).read_text())
        pid, started = int(record["pid"]), float(record.get("started") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        if holder is not None:  # a `workbench eval` started from a terminal
            return EvalProcess("running", holder or None, None, None, [])
        return EvalProcess("none")
    log = _log_lines(run_dir / EVAL_LOG)
    if holder is not None:
        return EvalProcess("running", holder or pid, started, None, log)
    rc_file = run_dir / EVAL_RC
    if rc_file.exists():
        try:
            rc = int(rc_file.read_text().strip())
        except ValueError:
            rc = None
        return EvalProcess("finished" if rc == 0 else "failed", pid, started, rc, log)
    # ended, but whoever started it was gone before it did: its last words decide
    done = any("written to" in line for line in log[-5:])
    return EvalProcess("finished" if done else "failed", pid, started, None, log)


def start_eval(run_dir: str | os.PathLike, probes: str | list[str] | None = None, draws: int | None = None,
               episodes: int | None = None) -> EvalProcess:
    """Start ``workbench eval`` on a run as its own process (own session: it outlives the app), stdout and stderr
    into ``eval.log`` in the run's folder. Raises :class:`EvalRunning` when one is already running on this run
    (from this app, another one or a terminal). This process takes the run's evaluation lock and hands it to the
    child (an inherited descriptor): from before the child exists to its very end, whichever way it ends."""
    run_dir = Path(run_dir)
    fd = hold_eval_lock(run_dir)
    try:
        (run_dir / EVAL_RC).unlink(missing_ok=True)
        cmd = eval_command(run_dir, probes, draws, episodes)
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1", **{EVAL_LOCK_FD: str(fd)})
        with open(run_dir / EVAL_LOG, "wb") as log:  # each evaluation starts a fresh log
            log.write(("$ workbench eval " + " ".join(cmd[4:]) + "\n").encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, pass_fds=(fd,))
        started = time.time()
        atomic_write_bytes(run_dir / EVAL_PID, json.dumps({"pid": proc.pid, "started": started,
                                                           "command": cmd}).encode())
    finally:
        os.close(fd)  # the child's copy keeps the lock

    def reap() -> None:  # no zombie left behind, and the exit status kept for whoever asks
        rc = proc.wait()
        atomic_write_bytes(run_dir / EVAL_RC, str(rc).encode())

    threading.Thread(target=reap, daemon=True, name=f"reap-eval-{proc.pid}").start()
    return EvalProcess("running", proc.pid, started, None, [])
