"""Runs: every run with its status and last metrics; start a new run (a separate process), stop one, delete one."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from common import REFRESH, open_reader, readable_runs, runs_dir
from forms import option_widgets
from workbench.config import ConfigError, specs
from workbench.data.registry import DatasetUnavailable
from workbench.engine import launch
from workbench.engine.config import TrainConfig, option_sets
from workbench.engine.registry import task_of
from workbench.methods import METHODS
from workbench.runs import list_runs
from workbench.runs.store import RunStoreError, delete_run

st.header("Runs")


@st.fragment(run_every=REFRESH)
def runs_table() -> None:
    runs = list_runs(runs_dir())
    if runs.empty:
        st.info(f"No runs under `{runs_dir()}/` yet: start one below, or with `workbench train` in a terminal.")
    else:
        scores = [c for c in ("knn_acc", "psnr") if runs[c].notna().any()]  # a score no run has logged: no column
        columns = ["name", "method", "dataset", "status", "epoch", "epochs", "step", "loss", *scores]
        view = runs[columns].copy()
        view["progress"] = [f"{e}/{n}" if e == e and e is not None else "" for e, n in zip(runs["epoch"],
                                                                                           runs["epochs"])]
        st.dataframe(view.drop(columns=["epoch", "epochs"]), hide_index=True, width="stretch",
                     column_config={"knn_acc": st.column_config.NumberColumn("kNN acc", format="%.4f"),
                                    "psnr": st.column_config.NumberColumn("PSNR (dB)", format="%.2f",
                                                                          help="low-light runs: held-out pairs"),
                                    "loss": st.column_config.NumberColumn(format="%.4f")})
        for _, r in runs[runs["problem"].astype(bool)].iterrows():
            st.warning(f"`{r['name']}` cannot be read: {r['problem']}")
        for _, r in runs[(runs["status"] == "failed")].iterrows():
            st.error(f"`{r['name']}` failed: {r['error']}")
    for run_dir, proc in list(st.session_state.get("launched", {}).items()):
        rc = proc.poll()
        if rc not in (None, 0) and not (Path(run_dir) / "run.db").exists():
            log = (Path(run_dir) / "train.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            st.error(f"The run `{Path(run_dir).name}` could not start (exit code {rc}):\n\n```\n{tail}\n```")


runs_table()

st.subheader("Start a run")
names = sorted(METHODS)
method = st.selectbox("method", names, index=names.index("simclr"), key="new_method",
                      help="the form below shows the options of this method")
task = task_of(method)
common, task_set, method_set = (specs(group) for group in option_sets(method))
with st.form("new_run"):
    c1, c2 = st.columns(2)
    datasets = task.datasets() + ["folder:"]
    dataset = c1.selectbox("dataset", datasets, key="new_dataset",
                           help="the embedded and offline datasets of this task; folder: takes the path beside")
    folder = c2.text_input("image folder (for folder:)", "", key="new_folder")
    values = option_widgets([s for s in common if s.form and s.name not in ("method", "dataset")])
    with st.expander(f"{task.name} options"):
        values.update(option_widgets([s for s in task_set if s.form]))
    with st.expander(f"{method} options", expanded=bool(method_set)):
        values.update(option_widgets([s for s in method_set if s.form]))
        if not method_set:
            st.caption(f"{method} has no options of its own.")
    submitted = st.form_submit_button("Start training")

if submitted:
    name = f"folder:{folder}" if dataset == "folder:" else dataset
    try:
        if folder.strip() and dataset != "folder:":
            raise ConfigError(f"an image folder is given ({folder.strip()}) but the dataset is {dataset!r}: choose "
                              "'folder:' to train on the folder, or clear the folder field")
        cfg = TrainConfig(method=method, dataset=name, runs_dir=runs_dir(), **values)
        if cfg.run_name and (Path(cfg.runs_dir) / cfg.run_name / "run.db").exists():
            raise ConfigError(f"run name {cfg.run_name!r} is taken: choose another")
        if not cfg.download:  # fail here, not in the background
            task.load_data(cfg, probe=True)
        proc, run_dir = launch.launch(cfg)
        st.session_state.setdefault("launched", {})[str(run_dir)] = proc
        st.session_state["selected_run"] = run_dir.name
        st.success(f"Started `{run_dir.name}` (pid {proc.pid}); it appears above within seconds. "
                   "Open **Pos/neg scores** or **Training curves** to watch it.")
    except (ConfigError, DatasetUnavailable) as e:
        st.error(str(e))

st.subheader("Stop a run")
running = list_runs(runs_dir())
running = running[running["status"] == "running"]["name"].tolist()
if running:
    c1, c2 = st.columns([3, 1])
    victim = c1.selectbox("running runs", running, label_visibility="collapsed")
    if c2.button("Stop", type="primary"):
        st.info(f"`{victim}`: {launch.stop(Path(runs_dir()) / victim)}")
else:
    st.caption("No run is running.")

st.subheader("Details")
names = readable_runs()
if names:
    chosen = st.selectbox("run", names, key="details_run")
    reader = open_reader(chosen)
    if reader is not None:
        with reader:
            c1, c2 = st.columns(2)
            c1.markdown("**configuration**")
            c1.json(reader.config, expanded=False)
            events = reader.events()
            if len(events):
                c2.dataframe(events[["step", "level", "message"]], hide_index=True)
            else:
                c2.caption("No events (warnings, resumes) for this run.")

st.subheader("Delete a run")
deletable = [n for n in list_runs(runs_dir())["name"].tolist()]
if deletable:
    c1, c2, c3 = st.columns([3, 2, 1])
    doomed = c1.selectbox("run to delete", deletable, key="delete_run", label_visibility="collapsed")
    sure = c2.checkbox(f"yes, delete `{doomed}` with its checkpoints", key="delete_sure")
    if c3.button("Delete", disabled=not sure, key="delete_button"):
        try:
            delete_run(Path(runs_dir()) / doomed)
            st.success(f"Deleted `{doomed}`.")
        except RunStoreError as e:  # training (its lock is held), or not a run folder
            st.error(f"Not deleted: {e}")
else:
    st.caption("No runs to delete.")
