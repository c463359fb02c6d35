"""Run store: atomic steps, readers that never block or fail during writes, crash safety, listing."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from workbench.runs import RunReader, RunStoreError, RunWriter, list_runs


def test_write_and_read_back(tmp_path):
    w = RunWriter(tmp_path / "r", {"method": "simclr", "config": {"tau": 0.2}})
    counts = np.arange(10)
    w.log(1, {"loss": 2.0, "lr": 0.1}, {"pos": (counts, 0.5, 0.01)})
    w.log(2, {"loss": 1.5})
    w.add_arrays(2, "embeddings", {"epoch": 1}, features=np.ones((3, 4), np.float16), labels=np.array([0, 1, 2]))
    w.event(2, "hello", "warning")
    with RunReader(tmp_path / "r") as r:
        assert r.config == {"tau": 0.2} and r.meta["method"] == "simclr"
        assert r.status().state == "running"
        df = r.scalars()
        assert df.loc[1, "loss"] == 2.0 and df.loc[2, "loss"] == 1.5 and np.isnan(df.loc[2, "lr"])
        assert r.scalars(after_step=1).index.tolist() == [2]
        h = r.histograms("pos")
        assert h.counts.tolist() == [counts.tolist()] and h.edges[0] == -1 and h.edges[-1] == 1
        assert np.allclose(h.density().sum(1) * np.diff(h.edges)[0], 1)
        snap = r.snapshot("embeddings")
        assert snap.step == 2 and snap["features"].shape == (3, 4) and snap.info["epoch"] == 1
        assert r.events()["message"].tolist() == ["hello"]
        assert r.last_scalars() == {"loss": 1.5, "lr": 0.1}
    w.close("finished")
    with RunReader(tmp_path / "r") as r:
        assert r.status().state == "finished"
    # no temporary files are left behind by atomic writes
    assert not [p for p in (tmp_path / "r" / "artifacts").iterdir() if p.name.endswith(".tmp")]


def test_reader_polling_during_writes_never_errors(tmp_path):
    w = RunWriter(tmp_path / "r")
    n_steps = 400
    done = threading.Event()

    def write():
        for s in range(1, n_steps + 1):
            w.log(s, {"loss": 1.0 / s, "x": s}, {"pos": (np.full(20, s), 0.1, 0.2)})
            if s % 50 == 0:
                w.add_arrays(s, "embeddings", features=np.random.rand(500, 32))
        done.set()

    t = threading.Thread(target=write)
    r = RunReader(tmp_path / "r")
    t.start()
    last, polls = -1, 0
    seen = []
    while not done.is_set() or last < n_steps:
        df = r.scalars(after_step=last)
        if len(df):
            assert df.index.min() > last and df.index.is_monotonic_increasing
            # a step is all-or-nothing: both keys of one transaction are there
            assert not df[["loss", "x"]].isna().any().any()
            seen += df.index.tolist()
            last = int(df.index.max())
        h = r.histograms("pos", after_step=max(0, last - 5))
        assert h.counts.shape[0] == len(h.steps)
        r.snapshot("embeddings")
        polls += 1
    t.join()
    assert seen == list(range(1, n_steps + 1))
    assert polls > 3
    w.close("finished")


WRITER = textwrap.dedent("""
    import sys, time
    from workbench.runs import RunWriter
    w = RunWriter(sys.argv[1], heartbeat_s=0.2)
    step = 0
    while True:
        step += 1
        w.log(step, {"loss": 1.0 / step, "acc": step / 1e6})
        print(step, flush=True)
        time.sleep(0.005)
""")


def test_sigkill_keeps_every_committed_step_and_reads_as_stale(tmp_path):
    run = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(run)], stdout=subprocess.PIPE, text=True)
    printed = 0
    for line in p.stdout:
        printed = int(line)
        if printed >= 200:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with RunReader(run) as r:
        steps = r.scalar("loss").index.tolist()
        # every step reported as written is there, in order, with nothing torn
        assert steps[:printed] == list(range(1, printed + 1))
        assert len(steps) <= printed + 1  # at most the step in flight beyond what was printed
        df = r.scalars()
        assert not df.isna().any().any()
        st = r.status()
        assert st.state == "stale"  # the pid is gone
    # the heartbeat rule alone (e.g. a writer on another host) also says stale once the beat is old
    time.sleep(0.6)
    r = RunReader(run, stale_after=0.5)
    r._process_gone = lambda meta: False
    assert r.status().state == "stale"
    live = RunWriter(tmp_path / "alive", heartbeat_s=0.1)
    time.sleep(0.7)
    assert RunReader(tmp_path / "alive", stale_after=0.5).status().state == "running"  # heartbeat keeps it fresh
    live.close("finished")


def test_list_runs_survives_foreign_and_corrupt_entries(tmp_path):
    RunWriter(tmp_path / "good", {"method": "simclr", "dataset": "digits"}).close("finished")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "run.db").write_bytes(b"this is not sqlite" * 100)
    (tmp_path / "stray.txt").write_text("not a run")
    (tmp_path / "empty-dir").mkdir()
    df = list_runs(tmp_path)
    assert set(df["name"]) == {"good", "corrupt"}
    good = df.set_index("name").loc["good"]
    assert good["status"] == "finished" and good["method"] == "simclr"
    bad = df.set_index("name").loc["corrupt"]
    assert bad["status"] == "unreadable" and bad["problem"]
    assert list_runs(tmp_path / "nothing-here").empty


def test_reader_on_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunReader(tmp_path / "nope")
