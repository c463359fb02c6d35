"""Run store: ``<runs>/<name>/run.db`` in SQLite WAL mode, one transaction per logged step.

Tables::

    meta(key, value)                          name, method, dataset, config (JSON), status, error, heartbeat, pid...
    scalars(step, key, value)                 loss, lr, pos_mean, knn_acc, ...
    latest(key, step, value)                  the newest value of each key (run lists stay fast at 100k steps)
    histograms(step, key, lo, hi, counts, mean, var)   counts: int64 bytes over fixed bins on [lo, hi]
    artifacts(step, kind, path, info)         side files (embedding snapshots .npz, image grids .png)
    events(id, time, step, level, message)    warnings and notes shown to the user

Readers open the database read-only and never block the writer (WAL). A killed writer loses at most the step in
flight; its status stays "running" but its heartbeat goes stale, which readers report as ``stale``. Side files
are written to a temporary name and renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1
DB_NAME = "run.db"
STOP_FILE = "STOP"  # created in a run folder to ask its training loop to stop before the next step
CHECKPOINT = "checkpoints/last.pt"  # the last completed epoch's weights and optimiser state (written by the trainer)
HEARTBEAT_S = 2.0
STALE_AFTER_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS scalars(step INTEGER NOT NULL, key TEXT NOT NULL, value REAL,
                                   PRIMARY KEY(step, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scalars_by_key ON scalars(key, step);
CREATE TABLE IF NOT EXISTS latest(key TEXT PRIMARY KEY, step INTEGER NOT NULL, value REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS histograms(step INTEGER NOT NULL, key TEXT NOT NULL, lo REAL, hi REAL, counts BLOB,
                                      mean REAL, var REAL, PRIMARY KEY(key, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts(step INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, info TEXT,
                                     PRIMARY KEY(kind, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL, step INTEGER, level TEXT,
                                  message TEXT);
"""


class RunStoreError(RuntimeError):
    """A run directory is missing, not a run, or unreadable."""


class RunBusy(RunStoreError):
    """Another process holds the run's lock: it is training (or resuming) this run."""


class RunsFolderError(RunStoreError):
    """The runs folder itself cannot hold runs: it is a file, or it cannot be created."""


LOCK_FILE = ".lock"


class RunLock:
    """The one-writer rule: an OS lock (``flock``) on ``<run>/.lock``, held by the process that trains the run for
    as long as it lives (the OS drops it when the process ends, even by kill -9), with the holder's pid in the
    file for the refusal message. Where ``fcntl`` is missing (Windows) the lock is a no-op."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover  (not on Linux or macOS)
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise RunBusy(f"{Path(run_dir)} is being written by process {holder} (it holds {self.path})") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def delete_run(run_dir: str | os.PathLike) -> None:
    """Remove a run folder, unless a process is writing it (its lock is held). Only a folder that looks like a
    run (a run store, a checkpoint folder or a lock file, and nothing but a run's files) is removed."""
    import shutil

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunStoreError(f"no run at {run_dir}")
    known = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "artifacts", "checkpoints", LOCK_FILE, STOP_FILE,
             LAUNCH_LOG, "eval.log", "eval.pid", "eval.rc", ".eval.lock"}
    if not ({DB_NAME, "checkpoints", LOCK_FILE} & {p.name for p in run_dir.iterdir()}):
        raise RunStoreError(f"{run_dir} does not look like a run (no {DB_NAME}, checkpoints/ or {LOCK_FILE}); "
                            "not deleting it")
    strangers = sorted(p.name for p in run_dir.iterdir() if p.name not in known and not p.name.startswith("."))
    if strangers:
        raise RunStoreError(f"{run_dir} holds files a run does not write ({', '.join(strangers[:5])}); not "
                            "deleting it")
    lock = RunLock(run_dir)  # RunBusy while a process trains it
    try:
        shutil.rmtree(run_dir)
    finally:
        lock.release()


LAUNCH_LOG = "train.log"  # written by the process that starts a run for the app (engine.launch)


def _prepared_by_launcher(run_dir: Path) -> RunLock | None:
    """The lock of a folder that a launcher created (atomically, by ``os.mkdir``) to hold the new run's log and
    nothing else yet; ``None`` for any other existing folder. The lock decides between two claimers."""
    if (run_dir / DB_NAME).exists() or not run_dir.is_dir():
        return None
    try:
        lock = RunLock(run_dir)
    except (RunBusy, OSError):
        return None
    if {p.name for p in run_dir.iterdir()} <= {LAUNCH_LOG, LOCK_FILE} and not (run_dir / DB_NAME).exists():
        return lock
    lock.release()
    return None


def claim_run_dir(run_dir: str | os.PathLike, resume: bool = False) -> RunLock:
    """Make ``run_dir`` this process's run, atomically: a new run creates its folder with ``os.mkdir`` (exactly one
    of several processes starting the same name at once succeeds) and locks it; a resume locks the existing one.
    Raises :class:`RunBusy` when another process holds the run, :class:`RunStoreError` when the name is taken."""
    run_dir = Path(run_dir)
    runs = run_dir.parent
    if runs.exists() and not runs.is_dir():
        raise RunsFolderError(f"runs folder {runs} is a file, not a folder")
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunsFolderError(f"cannot create the runs folder {runs}: {e.strerror}") from None
    if not resume:
        try:
            os.mkdir(run_dir)
        except FileExistsError:
            prepared = _prepared_by_launcher(run_dir)  # the app's launcher made it for this process's log
            if prepared is not None:
                return prepared
            held = "holds a run" if (run_dir / DB_NAME).exists() else "exists (another run may be starting with it)"
            raise RunStoreError(f"{run_dir} already {held}: choose another name, or resume the run") from None
        except OSError as e:
            raise RunStoreError(f"cannot create {run_dir}: {e.strerror} (is {runs} writable?)") from None
    elif not run_dir.is_dir():
        raise RunStoreError(f"{run_dir} is not a run folder")
    try:
        return RunLock(run_dir)
    except OSError as e:
        raise RunStoreError(f"cannot lock {run_dir}: {e.strerror} (is it writable?)") from None


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        if not path.exists():
            raise RunStoreError(f"{path} does not exist: not a run directory (no {DB_NAME})")
        # as_uri() percent-escapes '#', '?' and spaces: a run name can hold them without breaking mode=ro
        con = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10, check_same_thread=False)
    else:
        con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash, the case that matters here
    con.execute("PRAGMA busy_timeout=10000")
    return con


def atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path`` (unique to this process), fsync it, rename it over
    ``path`` and fsync the folder: a crash or a power loss leaves the old file or the new one, never a part. A
    failed write (e.g. a full disk) removes the temporary file and raises."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover  (folders cannot be opened on Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


class RunWriter:
    """The single writer of a run (the training process, rank 0).

    ``RunWriter.annotate(run_dir)`` opens an existing run to add results to it (``workbench eval``) without
    claiming it: its status, process id, step and heartbeat stay those of the training process."""

    claims = True

    @classmethod
    def annotate(cls, run_dir: str | os.PathLike) -> "RunWriter":
        if not (Path(run_dir) / DB_NAME).exists():
            raise RunStoreError(f"{run_dir} is not a run directory (no {DB_NAME})")
        writer = cls.__new__(cls)
        writer.claims = False
        writer.run_dir = Path(run_dir)
        (writer.run_dir / "artifacts").mkdir(exist_ok=True)
        writer.path = writer.run_dir / DB_NAME
        writer._con = _connect(writer.path, readonly=False)
        writer._lock = threading.Lock()
        writer._stop, writer._beat = threading.Event(), None
        return writer

    def __init__(self, run_dir: str | os.PathLike, meta: dict | None = None, heartbeat_s: float = HEARTBEAT_S):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "artifacts").mkdir(exist_ok=True)
        self.path = self.run_dir / DB_NAME
        if not self.path.exists():
            self._create(self.path)
        self._con = _connect(self.path, readonly=False)
        self._lock = threading.Lock()
        with self._lock:
            self._con.executescript(_SCHEMA)  # no-op for a current store; adds tables an older one lacks
        base = {"schema_version": SCHEMA_VERSION, "name": self.run_dir.name, "pid": os.getpid(),
                "hostname": socket.gethostname(), "status": "running", "error": "", "heartbeat": time.time()}
        if not self.get_meta("created"):
            base["created"] = time.time()
        self.set_meta(**base, **(meta or {}))
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat_loop, args=(heartbeat_s,), daemon=True,
                                      name=f"heartbeat-{self.run_dir.name}")
        self._beat.start()

    @staticmethod
    def _create(path: Path) -> None:
        """Build the schema under a temporary name, then rename: a reader never sees a database without tables."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        con = _connect(tmp, readonly=False)
        con.executescript(_SCHEMA)
        con.close()  # checkpoints the WAL into the file, which stays in WAL mode
        os.replace(tmp, path)

    # ------------------------------------------------------------------ meta and status
    def set_meta(self, **items) -> None:
        rows = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in items.items()]
        with self._lock:
            self._con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", rows)

    def get_meta(self, key: str):
        with self._lock:
            row = self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else _decode(row[0])

    def _heartbeat_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.set_meta(heartbeat=time.time())
            except sqlite3.Error:
                pass  # never let the heartbeat kill training; readers will just see it stale

    def set_status(self, status: str, error: str = "") -> None:
        self.set_meta(status=status, error=error, heartbeat=time.time())

    # ------------------------------------------------------------------ data
    def log(self, step: int, scalars: dict[str, float] | None = None,
            histograms: dict[str, tuple] | None = None, lo: float = -1.0, hi: float = 1.0) -> None:
        """Write one step atomically. ``histograms[key] = (counts, mean, var)`` over fixed bins on [lo, hi]."""
        srows = [(step, k, float(v)) for k, v in (scalars or {}).items() if v is not None]
        hrows = [(step, k, lo, hi, np.asarray(_to_numpy(c), dtype=np.int64).tobytes(), float(m), float(v))
                 for k, (c, m, v) in (histograms or {}).items()]
        with self._lock:
            self._con.execute("BEGIN")
            try:
                self._con.executemany("INSERT OR REPLACE INTO scalars VALUES (?, ?, ?)", srows)
                self._con.executemany("INSERT INTO latest VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                                      "step = excluded.step, value = excluded.value WHERE excluded.step >= step",
                                      [(k, st, v) for st, k, v in srows])
                self._con.executemany("INSERT OR REPLACE INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?)", hrows)
                if self.claims:  # an annotating writer (workbench eval) leaves the run's progress alone
                    self._con.execute("INSERT OR REPLACE INTO meta VALUES ('step', ?), ('heartbeat', ?)",
                                      (json.dumps(step), json.dumps(time.time())))
                self._con.execute("COMMIT")
            except BaseException:
                if self._con.in_transaction:  # an interrupt right after COMMIT must not turn into a rollback error
                    self._con.execute("ROLLBACK")
                raise

    def event(self, step: int, message: str, level: str = "info") -> None:
        with self._lock:
            self._con.execute("INSERT INTO events(time, step, level, message) VALUES (?, ?, ?, ?)",
                              (time.time(), step, level, message))

    def discard_after(self, step: int) -> int:
        """Drop what was logged after ``step`` (scalars, histograms, artifacts and their files) and rebuild the
        newest values: a resumed run continues from its checkpoint's step, and the steps a killed process logged
        past it never happened in the run that goes on. Returns how many steps were dropped."""
        with self._lock:
            dropped = self._con.execute("SELECT count(DISTINCT step) FROM scalars WHERE step > ?",
                                        (step,)).fetchone()[0]
            files = [r[0] for r in self._con.execute("SELECT path FROM artifacts WHERE step > ?", (step,))]
            self._con.execute("BEGIN")
            try:
                for table in ("scalars", "histograms", "artifacts"):
                    self._con.execute(f"DELETE FROM {table} WHERE step > ?", (step,))
                self._con.execute("DELETE FROM latest")
                self._con.execute("INSERT INTO latest SELECT key, step, value FROM scalars s WHERE step = "
                                  "(SELECT max(step) FROM scalars t WHERE t.key = s.key)")
                self._con.execute("COMMIT")
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
        for rel in files:
            (self.run_dir / rel).unlink(missing_ok=True)
        return int(dropped)

    def add_artifact(self, step: int, kind: str, data: bytes, suffix: str, info: dict | None = None) -> Path:
        """Write a side file atomically (temp name, then rename) and index it."""
        path = self.run_dir / "artifacts" / f"{kind}_{step:08d}{suffix}"
        atomic_write_bytes(path, data)
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)",
                              (step, kind, str(path.relative_to(self.run_dir)), json.dumps(info or {})))
        return path

    def add_arrays(self, step: int, kind: str, info: dict | None = None, **arrays) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **{k: _to_numpy(v) for k, v in arrays.items()})
        return self.add_artifact(step, kind, buf.getvalue(), ".npz", info)

    def add_image(self, step: int, kind: str, image_chw_uint8, info: dict | None = None) -> Path:
        from PIL import Image

        arr = _to_numpy(image_chw_uint8)
        arr = arr.transpose(1, 2, 0) if arr.ndim == 3 else arr
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr.squeeze())).save(buf, format="PNG")
        return self.add_artifact(step, kind, buf.getvalue(), ".png", info)

    def close(self, status: str | None = None, error: str = "") -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        if status:
            self.set_status(status, error)
        with self._lock:
            self._con.close()


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _decode(value: str):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


@dataclass
class RunStatus:
    state: str  # running | finished | failed | stopped | stale
    error: str
    step: int
    heartbeat_age: float

    @property
    def alive(self) -> bool:
        return self.state == "running"


@dataclass
class HistogramSeries:
    """Histograms of one key over time: ``counts[i]`` is the histogram at ``steps[i]`` over bins ``edges``."""

    key: str
    steps: np.ndarray
    edges: np.ndarray
    counts: np.ndarray  # (S, bins)
    mean: np.ndarray
    var: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    def density(self) -> np.ndarray:
        """Counts normalised to a probability density per step (rows integrate to 1)."""
        width = np.diff(self.edges)
        total = self.counts.sum(axis=1, keepdims=True).clip(min=1)
        return self.counts / total / width


@dataclass
class Snapshot:
    step: int
    arrays: dict[str, np.ndarray]
    info: dict

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


class RunReader:
    """Read a run while it is being written. Every query sees the latest committed steps."""

    def __init__(self, run_dir: str | os.PathLike, stale_after: float = STALE_AFTER_S):
        self.run_dir = Path(run_dir)
        self.stale_after = stale_after
        try:
            self._con = _connect(self.run_dir / DB_NAME, readonly=True)
            self._con.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.DatabaseError as e:
            raise RunStoreError(f"{self.run_dir}: not a readable run store ({e})") from e

    def close(self) -> None:
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _query(self, sql: str, args: Iterable = ()) -> list[tuple]:
        return self._con.execute(sql, tuple(args)).fetchall()

    # ------------------------------------------------------------------ meta
    @property
    def meta(self) -> dict:
        return {k: _decode(v) for k, v in self._query("SELECT key, value FROM meta")}

    @property
    def config(self) -> dict:
        config = self.meta.get("config") or {}
        if not isinstance(config, dict):
            raise RunStoreError(f"{self.run_dir}: the stored config is not a mapping ({type(config).__name__})")
        return config

    @property
    def name(self) -> str:
        return self.run_dir.name

    def status(self) -> RunStatus:
        m = self.meta
        state = m.get("status", "unknown")
        age = time.time() - float(m.get("heartbeat") or 0)
        if state == "running" and (age > self.stale_after or self._process_gone(m)):
            state = "stale"
        return RunStatus(state, m.get("error") or "", int(m.get("step") or 0), age)

    @staticmethod
    def _process_gone(m: dict) -> bool:
        """True when the writer ran on this host and its pid no longer exists (a quicker answer than the
        heartbeat; pids can be reused, so the heartbeat stays the rule elsewhere)."""
        if m.get("hostname") != socket.gethostname() or not m.get("pid"):
            return False
        try:
            os.kill(int(m["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OSError):
            return False
        return False

    def last_step(self) -> int:
        row = self._query("SELECT max(step) FROM scalars")[0][0]
        return -1 if row is None else int(row)

    # ------------------------------------------------------------------ scalars
    def _has_latest(self) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='latest'"))

    def scalar_keys(self) -> list[str]:
        if self._has_latest():
            return [r[0] for r in self._query("SELECT key FROM latest ORDER BY key")]
        return [r[0] for r in self._query("SELECT DISTINCT key FROM scalars ORDER BY key")]

    def scalars(self, keys: Iterable[str] | None = None, after_step: int = -1) -> pd.DataFrame:
        """Wide frame: one row per step (the index), one column per key; rows after ``after_step`` only."""
        sql, args = "SELECT step, key, value FROM scalars WHERE step > ?", [after_step]
        if keys is not None:
            keys = list(keys)
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += keys
        long = pd.read_sql_query(sql, self._con, params=args)
        if long.empty:
            return pd.DataFrame(columns=keys or [], index=pd.Index([], name="step"), dtype=float)
        return long.pivot(index="step", columns="key", values="value").sort_index()

    def scalar(self, key: str, after_step: int = -1) -> pd.Series:
        rows = self._query("SELECT step, value FROM scalars WHERE key=? AND step > ? ORDER BY step", (key, after_step))
        steps, values = zip(*rows) if rows else ((), ())
        return pd.Series(values, index=pd.Index(steps, name="step"), name=key, dtype=float)

    BUCKET_COLUMNS = ["key", "bucket", "count", "min", "max", "sum", "first", "last"]

    def scalar_buckets(self, width: int, stop: int, keys: Iterable[str] | None = None,
                       start: int = 0) -> pd.DataFrame:
        """Scalars summarised over buckets of ``width`` consecutive steps, bucket ``b`` holding steps
        ``[b * width, (b + 1) * width)``, for the steps in ``[start, stop)``: one row per key and bucket that has
        values (missing / NaN values are left out), with the values' ``count``, ``min``, ``max`` and ``sum`` and the
        ``first`` and ``last`` step that has one. What a chart of a long run draws instead of every row.

        One query per bucket: each is a primary-key range over the bucket's rows, grouped by key in a small sort,
        which is several times faster than one GROUP BY over the whole table (a sort of every row) or reading
        every row into Python (about 1 µs a row)."""
        width = max(1, int(width))
        sql = ("SELECT key, count(value), min(value), max(value), sum(value), min(step), max(step) FROM scalars "
               "WHERE step >= ? AND step < ? AND value IS NOT NULL")
        extra: list = []
        if keys is not None:
            extra = list(keys)
            sql += f" AND key IN ({','.join('?' * len(extra))})"
        sql += " GROUP BY key"
        rows = []
        cur = self._con.cursor()
        for b in range(max(0, start) // width, -(-stop // width)):
            lo, hi = max(b * width, start), min((b + 1) * width, stop)
            rows += [(k, b) + tuple(r) for k, *r in cur.execute(sql, (lo, hi, *extra))]
        out = pd.DataFrame(rows, columns=self.BUCKET_COLUMNS)
        return out.astype({"bucket": np.int64, "count": np.int64, "min": float, "max": float, "sum": float,
                           "first": np.int64, "last": np.int64})

    def first_value(self, key: str) -> float | None:
        """The value of ``key`` at its first logged step (``None`` when it has none)."""
        row = self._query("SELECT value FROM scalars WHERE key=? AND value IS NOT NULL ORDER BY step LIMIT 1", (key,))
        return None if not row else float(row[0][0])

    def last_scalars(self) -> dict[str, float]:
        """The latest value of every key."""
        if self._has_latest():
            return dict(self._query("SELECT key, value FROM latest"))
        rows = self._query("SELECT key, value FROM scalars s WHERE step = (SELECT max(step) FROM scalars "
                           "WHERE key = s.key)")  # stores written before the latest table existed
        return dict(rows)

    # ------------------------------------------------------------------ histograms
    def histogram_keys(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT key FROM histograms ORDER BY key")]

    def histograms(self, key: str, after_step: int = -1) -> HistogramSeries:
        rows = self._query("SELECT step, lo, hi, counts, mean, var FROM histograms WHERE key=? AND step > ? "
                           "ORDER BY step", (key, after_step))
        if not rows:
            return HistogramSeries(key, np.zeros(0, int), np.zeros(0), np.zeros((0, 0), np.int64), np.zeros(0),
                                   np.zeros(0))
        steps, lo, hi, blobs, mean, var = zip(*rows)
        counts = np.stack([np.frombuffer(b, dtype=np.int64) for b in blobs])
        edges = np.linspace(lo[-1], hi[-1], counts.shape[1] + 1)
        return HistogramSeries(key, np.array(steps), edges, counts, np.array(mean), np.array(var))

    # ------------------------------------------------------------------ artifacts and events
    def artifacts(self, kind: str | None = None) -> pd.DataFrame:
        sql, args = "SELECT step, kind, path, info FROM artifacts", []
        if kind:
            sql, args = sql + " WHERE kind=?", [kind]
        df = pd.read_sql_query(sql + " ORDER BY step", self._con, params=args)
        df["path"] = [str(self.run_dir / p) for p in df["path"]]
        df["info"] = [json.loads(i or "{}") for i in df["info"]]
        return df

    def snapshot(self, kind: str = "embeddings", step: int | None = None) -> Snapshot | None:
        """The arrays of a side file: the latest of ``kind``, or the one at ``step``."""
        df = self.artifacts(kind)
        if step is not None:
            df = df[df["step"] == step]
        if df.empty:
            return None
        row = df.iloc[-1]
        with np.load(row["path"]) as z:
            return Snapshot(int(row["step"]), {k: z[k] for k in z.files}, row["info"])

    def events(self, after_id: int = 0) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM events WHERE id > ? ORDER BY id", self._con, params=[after_id])


def list_runs(runs_dir: str | os.PathLike = "runs", stale_after: float = STALE_AFTER_S) -> pd.DataFrame:
    """One row per run directory under ``runs_dir``; unreadable ones get a row with their ``problem``. ``knn_acc``
    (representation methods) and ``psnr`` (low-light methods) are the last logged values."""
    rows = []
    root = Path(runs_dir)
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir():
            continue
        if not (d / DB_NAME).exists():
            continue
        try:
            with RunReader(d, stale_after=stale_after) as r:
                m, st, last = r.meta, r.status(), r.last_scalars()
            if not isinstance(m.get("config") or {}, dict):
                raise ValueError(f"its stored config is not a mapping ({type(m['config']).__name__})")
            if not isinstance(m.get("created") or 0, (int, float)):
                raise ValueError(f"its creation time is not a number ({m['created']!r})")
            rows.append({"name": d.name, "method": m.get("method"), "dataset": m.get("dataset"),
                         "status": st.state, "step": st.step, "epoch": m.get("epoch"),
                         "epochs": (m.get("config") or {}).get("epochs"), "loss": last.get("loss"),
                         "knn_acc": last.get("knn_acc"), "psnr": last.get("psnr"),
                         "created": m.get("created"), "error": st.error,
                         "path": str(d), "problem": ""})
        except (RunStoreError, sqlite3.Error, ValueError, TypeError, AttributeError) as e:
            rows.append({"name": d.name, "status": "unreadable", "path": str(d), "problem": f"cannot be read: {e}"})
    cols = ["name", "method", "dataset", "status", "step", "epoch", "epochs", "loss", "knn_acc", "psnr", "created",
            "error", "path", "problem"]
    return pd.DataFrame(rows, columns=cols)
