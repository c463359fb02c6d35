"""The run store: one directory per run, ``run.db`` (SQLite, WAL) plus side files. Written only by the training
process; read by the app, the notebooks and the CLI while training runs."""
from workbench.runs.follow import RunFollower
from workbench.runs.store import RunWriter, RunReader, RunStatus, HistogramSeries, Snapshot, list_runs, RunStoreError

__all__ = ["RunWriter", "RunReader", "RunStatus", "HistogramSeries", "Snapshot", "list_runs", "RunStoreError", "RunFollower"]
