"""Runs: every run with its status and last metrics; start a new run (a separate process) and stop one."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from common import REFRESH, open_reader, readable_runs, runs_dir
from workbench.config import ConfigError, TrainConfig
from workbench.data.lowlight import load_lowlight_dataset
from workbench.data.registry import DATASETS, DatasetUnavailable, load_dataset
from workbench.methods import METHODS
from workbench.engine import launch
from workbench.runs import list_runs

st.header("Runs")


@st.fragment(run_every=REFRESH)
def runs_table() -> None:
    runs = list_runs(runs_dir())
    if runs.empty:
        st.info(f"No runs under `{runs_dir()}/` yet: start one below, or with `workbench train` in a terminal.")
    else:
        columns = ["name", "method", "dataset", "status", "epoch", "epochs", "step", "loss", "knn_acc", "psnr"]
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
with st.form("new_run"):
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("method", sorted(METHODS), index=sorted(METHODS).index("simclr"))
    dataset = c2.selectbox("dataset", list(DATASETS) + ["photos", "folder:"],
                           help="photos: scikit-image's photographs, for the low-light methods (tml, zerodce); "
                                "folder: takes the path below")
    folder = c3.text_input("image folder (for folder:)", "")
    c4, c5, c6, c7 = st.columns(4)
    defaults = TrainConfig()
    epochs = c4.number_input("epochs", 1, 10000, 50)
    batch_size = c5.number_input("batch size (0 = the method's default)", 0, 8192, 0,
                                 help="256 for contrastive methods, 16 for low-light methods")
    tau = c6.number_input("temperature tau", 0.001, 10.0, defaults.tau, step=0.05, format="%.3f")
    lr = c7.number_input("learning rate (0 = default)", 0.0, 10.0, 0.0, format="%.5f")
    c8, c9, c10, c11 = st.columns(4)
    optimizer = c8.selectbox("optimizer", TrainConfig.CHOICES["optimizer"])
    log_every = c9.number_input("log every (steps)", 1, 10000, defaults.log_every)
    device = c10.selectbox("device", ["auto", "cpu", "cuda", "mps"])
    run_name = c11.text_input("run name (optional)", "")
    download = st.checkbox("allow downloading the dataset (needs internet)", value=False)
    with st.expander("method options (used by the method they belong to)"):
        m1, m2, m3, m4 = st.columns(4)
        moco_momentum = m1.number_input("MoCo momentum m", 0.0, 1.0, defaults.moco_momentum, format="%.4f")
        queue_size = m2.number_input("MoCo queue size", 1, 1_000_000, defaults.queue_size)
        ft_pos = m3.checkbox("MoCo: positive extrapolation (FT)")
        ft_neg = m4.checkbox("MoCo: negative interpolation (FT)")
        m5, m6, m7, m8 = st.columns(4)
        prototypes = m5.number_input("SwAV prototypes (0 = 3 x classes)", 0, 100_000, 0)
        swav_eps = m6.number_input("SwAV Sinkhorn eps", 0.001, 1.0, defaults.swav_eps, format="%.3f")
        pretrain_epochs = m7.number_input("DEPICT / G-SimCLR autoencoder epochs", 0.0, 1000.0,
                                          defaults.pretrain_epochs)
        feature_block = m8.number_input("RotNet feature block (0 = last)", 0, 4, 0)
        l1, l2, l3, l4 = st.columns(4)
        troublemaker = l1.selectbox("TML troublemaker", TrainConfig.CHOICES["troublemaker"])
        ugdc_width = l2.number_input("TML UGDC width (paper 64)", 2, 256, defaults.ugdc_width)
        ugdc_levels = l3.number_input("TML UGDC levels (paper 5)", 1, 7, defaults.ugdc_levels)
        patch_size = l4.number_input("low-light patch size", 8, 1024, defaults.patch_size)
    submitted = st.form_submit_button("Start training")

if submitted:
    name = f"folder:{folder}" if dataset == "folder:" else dataset
    try:
        cfg = TrainConfig(method=method, dataset=name, epochs=int(epochs), batch_size=int(batch_size) or None,
                          tau=float(tau), troublemaker=troublemaker, ugdc_width=int(ugdc_width),
                          ugdc_levels=int(ugdc_levels), patch_size=int(patch_size),
                          lr=float(lr) or None, optimizer=optimizer, log_every=int(log_every), device=device,
                          run_name=run_name.strip() or None, runs_dir=runs_dir(), download=download,
                          moco_momentum=float(moco_momentum), queue_size=int(queue_size), ft_pos=ft_pos,
                          ft_neg=ft_neg, prototypes=int(prototypes) or None, swav_eps=float(swav_eps),
                          pretrain_epochs=float(pretrain_epochs), feature_block=int(feature_block) or None)
        if cfg.run_name and (Path(cfg.runs_dir) / cfg.run_name / "run.db").exists():
            raise ConfigError(f"run name {cfg.run_name!r} is taken: choose another")
        if cfg.lowlight:  # fail here, not in the background
            load_lowlight_dataset(cfg.dataset, patch_size=cfg.patch_size, n_train=8)
        elif not download:
            load_dataset(cfg.dataset, cfg.data_root, False, cfg.image_size)
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
