"""What every page shares: the runs folder, the run pickers, opening runs with clear messages, the status line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

from workbench.engine.registry import task_of
from workbench.runs import RunReader, RunStoreError, list_runs
from workbench.runs.follow import RunFollower
from workbench.ui.thin import ScalarFollower
from layouts import run_created

REFRESH = "2s"
PAGE_TITLES = {"runs": "Runs", "curves": "Training curves", "scores": "Pos/neg scores", "embeddings": "Embeddings",
               "clusters": "Clusters", "probes": "Probes",
               "images": "Images"}  # page key (Task.pages) -> title in the sidebar


def runs_dir() -> str:
    if "runs_dir" not in st.session_state:
        p = argparse.ArgumentParser()
        p.add_argument("--runs-dir", default="runs")
        args, _ = p.parse_known_args(sys.argv[1:])
        st.session_state["runs_dir"] = args.runs_dir
    return st.session_state["runs_dir"]


def readable_runs() -> list[str]:
    df = list_runs(runs_dir())
    df = df[df["status"] != "unreadable"].sort_values("created", ascending=False, kind="stable")
    return df["name"].tolist()  # newest first


def pick_run(label: str = "Run", key: str = "run") -> str | None:
    """One run, remembered across pages (``st.session_state['run']``)."""
    names = readable_runs()
    if not names:
        st.info(f"No runs under `{runs_dir()}/` yet. Start one on the **Runs** page or with `workbench train`.")
        return None
    current = st.session_state.get("selected_run")
    index = names.index(current) if current in names else 0
    choice = st.sidebar.selectbox(label, names, index=index, key=f"{key}_picker")
    st.session_state["selected_run"] = choice
    return choice


def run_task(name: str):
    """The task of run ``name`` (from its method), or ``None`` after saying why the run cannot be opened."""
    reader = open_reader(name)
    if reader is None:
        return None
    with reader:
        return task_of(reader.meta.get("method"))


def page_applies(name: str, page: str, what: str) -> bool:
    """Whether page ``page`` shows run ``name`` (its task lists the page); if not, a note says that the run has no
    ``what`` and which pages show it."""
    reader = open_reader(name)
    if reader is None:
        return False
    with reader:
        method = reader.meta.get("method")
    task = task_of(method)
    if page in task.pages:
        return True
    pages = " and ".join(f"**{PAGE_TITLES[p]}**" for p in task.pages)
    st.info(f"`{name}` is a {task.title} run ({method}): it has no {what}. Its results are on the {pages} "
            f"page{'s' if len(task.pages) > 1 else ''}.")
    return False


def pick_runs(label: str = "Runs to compare", key: str = "compare") -> list[str]:
    names = readable_runs()
    if not names:
        st.info(f"No runs under `{runs_dir()}/` yet. Start one on the **Runs** page or with `workbench train`.")
        return []
    default = [n for n in st.session_state.get("compared_runs", []) if n in names]
    if not default:
        default = [st.session_state.get("selected_run")] if st.session_state.get("selected_run") in names else names[:1]
    chosen = st.sidebar.multiselect(label, names, default=default, key=f"{key}_picker")
    st.session_state["compared_runs"] = chosen
    return chosen


def pick_overlays(name: str, key: str, label: str = "overlay other runs") -> list[str]:
    """Other runs to draw beside run ``name`` (always drawn): none until the user picks some; the choice is kept
    per page while the selected run changes (the selected run itself is never offered)."""
    others = [n for n in readable_runs() if n != name]
    chosen = st.sidebar.multiselect(label, others, default=[n for n in st.session_state.get(key, []) if n in others],
                                    key=f"{key}_picker")
    st.session_state[key] = chosen
    return chosen


def follower(name: str) -> RunFollower | None:
    """A cached :class:`RunFollower` per run and session: each refresh reads only the new rows."""
    cache = st.session_state.setdefault("_followers", {})
    path = str(Path(runs_dir()) / name)
    key = (path, run_created(path))  # a run deleted and made again under the same name is a new run
    if key not in cache:
        for old in [k for k in cache if k[0] == path]:
            cache.pop(old).close()
        try:
            cache[key] = RunFollower(path)
        except RunStoreError as e:
            st.error(f"Cannot open run `{name}`: {e}")
            return None
    return cache[key]


def scalar_follower(name: str, keys: tuple[str, ...] | None = None) -> ScalarFollower | None:
    """A cached :class:`ScalarFollower` per run, keys and session, refreshed: a run's scalars at chart resolution
    (a long run's older steps summarised per bucket of steps, read with one cheap query per bucket), each refresh
    reading only the new rows."""
    cache = st.session_state.setdefault("_scalar_followers", {})
    path = str(Path(runs_dir()) / name)
    key = (path, run_created(path), keys)
    if key not in cache:
        for old in [k for k in cache if k[0] == path and k[2] == keys]:
            cache.pop(old).close()
        try:
            cache[key] = ScalarFollower(path, list(keys) if keys is not None else None)
        except RunStoreError as e:
            st.error(f"Cannot open run `{name}`: {e}")
            return None
    return cache[key].refresh()


def open_reader(name: str) -> RunReader | None:
    try:
        return RunReader(Path(runs_dir()) / name)
    except RunStoreError as e:
        st.error(f"Cannot open run `{name}`: {e}")
        return None


def status_line(reader: RunReader) -> None:
    """Status, progress and the one message a user must see (failed, stale, not started)."""
    status, meta = reader.status(), reader.meta
    cfg = meta.get("config") or {}
    total = meta.get("total_steps") or 0
    knob = task_of(meta.get("method")).knob(cfg)
    model = f" · {meta['backbone']}" if meta.get("backbone") else ""
    st.caption(f"**{status.state}** · step {status.step}/{total} · epoch {meta.get('epoch', 0)}/"
               f"{cfg.get('epochs', '?')} · {meta.get('method')} on {meta.get('dataset')}"
               f"{' · ' + knob if knob else ''} · batch {cfg.get('batch_size')}{model} on {meta.get('device', '?')}")
    if total:
        st.progress(min(1.0, status.step / total))
    if status.state == "failed":
        st.error(f"The run failed: {status.error}")
    elif status.state == "stale":
        st.warning(f"The training process stopped answering {status.heartbeat_age:.0f} s ago (killed or crashed); "
                   "what it logged is shown. Continue it with `workbench train --resume --run-name "
                   f"{reader.name}`.")
    elif status.state == "stopped":
        st.info(f"Stopped at step {status.step}; continue with `workbench train --resume --run-name {reader.name}`.")


def snapshots(name: str):
    """``(snapshot index frame, class names)`` of a run's embedding snapshots, or ``None`` after saying why not."""
    reader = open_reader(name)
    if reader is None:
        return None
    with reader:
        snaps = reader.artifacts("embeddings")
        classes = reader.meta.get("classes") or []
    if snaps.empty:
        st.info("No embedding snapshot yet: the first is taken before training starts.")
        return None
    return snaps, classes
