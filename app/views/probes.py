"""Probes: what ``workbench eval`` measured on a representation run's frozen features (label budgets, few-shot,
block-wise, the spectrum and RankMe), the spectrum over training and the online linear probe; a button that runs
``workbench eval`` on the run as its own process, with its progress."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import streamlit as st

from common import PAGE_TITLES, REFRESH, open_reader, pick_overlays, pick_run, runs_dir, scalar_follower
from workbench.engine import launch
from workbench.engine.evaluate import EVAL_SPECTRUM, PROBES
from workbench.engine.registry import task_of
from workbench.runs.store import CHECKPOINT
from workbench.ui import charts, probe_charts

st.header("Probes")
st.caption("How much a run's frozen features know about the labels, measured by `workbench eval` on its last "
           "checkpoint: a linear classifier, naive Bayes and kNN with 1 to 50 labels per class and with all of them, "
           "few-shot episodes, a linear probe on every backbone block, and the singular-value spectrum of the "
           "features. The method never saw a label; the probes use them only to score what it learned.")

PROBE_HELP = {"linear": "linear (logistic regression)", "nb": "naive Bayes",
              "budgets": "label budgets (1-50 per class)", "fewshot": "few-shot episodes",
              "blocks": "each backbone block", "spectrum": "spectrum + RankMe"}


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_data(max_entries=256, show_spinner=False)
def _records(path: str, mtime: float) -> list[dict]:
    with open(path) as f:
        return json.load(f)


@st.cache_data(max_entries=2048, show_spinner=False)
def _singular_values(path: str, mtime: float) -> np.ndarray:
    with np.load(path) as z:
        return z["singular_values"]


def records(path: str) -> list[dict]:
    return _records(path, _mtime(path))


def singular_values(path: str) -> np.ndarray:
    return _singular_values(path, _mtime(path))


def run_info(name: str) -> dict | None:
    """What the page needs of a run: its method and task, its epoch, its last evaluation, its spectra."""
    reader = open_reader(name)
    if reader is None:
        return None
    with reader:
        meta = reader.meta
        evals, spectra = reader.artifacts("probes"), reader.artifacts("spectrum")
        eval_spectra = reader.artifacts(EVAL_SPECTRUM)
        state = reader.status().state
    method = meta.get("method")
    return {"name": name, "method": method, "task": task_of(method), "epoch": meta.get("epoch") or 0,
            "epochs": (meta.get("config") or {}).get("epochs"), "state": state, "dataset": meta.get("dataset"),
            "labelled": meta.get("classes") != [],  # a folder without class sub-folders records no classes
            "eval": None if evals.empty else evals.iloc[-1], "spectra": spectra, "eval_spectra": eval_spectra,
            "path": Path(runs_dir()) / name}


def eval_control(run: dict) -> None:
    """The run's evaluation: running (progress), failed (the log's last lines), done, not yet; the button."""
    path, name = run["path"], run["name"]
    proc = launch.eval_status(path)
    started = st.session_state.setdefault("_evals_started", {})
    if proc.state == "running":
        took = time.time() - (proc.started or time.time())
        st.info(f"`workbench eval` is running on `{name}` (pid {proc.pid}, {took:.0f} s so far): features of the "
                "training and test splits, then the probes. The charts below update when it has finished.")
        if proc.progress:
            st.code(proc.progress, language=None)
        with st.expander("its output so far"):
            st.code(proc.last_lines(20) or "(nothing yet)", language=None)
        return
    if proc.state == "failed":
        code = f"exit code {proc.returncode}" if proc.returncode is not None else "it ended without writing results"
        st.error(f"The last `workbench eval` on `{name}` failed ({code}). The end of `{launch.EVAL_LOG}`:\n\n"
                 f"```\n{proc.last_lines(12)}\n```")
    elif proc.state == "finished" and str(path) in started and time.time() - _mtime(str(path / launch.EVAL_LOG)) < 60:
        st.success(f"`workbench eval` finished on `{name}` in "
                   f"{_mtime(str(path / launch.EVAL_LOG)) - proc.started:.0f} s: the charts below show its results.")
    if not (path / CHECKPOINT).exists():
        st.info(f"`{name}` has no checkpoint yet (`{CHECKPOINT}`): a run saves one at the end of every epoch, so the "
                "probes need a finished epoch. " + ("Come back when its first epoch is done."
                                                    if run["state"] == "running" else
                                                    "Continue it with `workbench train --resume --run-name "
                                                    f"{name}`."))
        return
    ev = run["eval"]
    if ev is None and not run["labelled"]:
        st.info(f"`{name}` trained on images without class labels (`{run['dataset']}`): the probes (linear, naive "
                "Bayes, kNN, few-shot) score how well the features separate classes, so they need labels. For "
                "them, put the images in one sub-folder per class. The spectrum below needs no labels.")
        return
    if ev is None:
        st.info(f"`{name}` has not been evaluated yet. **Run workbench eval** below probes its last checkpoint "
                f"(epoch {run['epoch']}) as a separate process; on digits on a CPU it takes about a minute. "
                f"In a terminal: `workbench eval {name} --runs-dir {runs_dir()}`.")
    else:
        info = ev["info"]
        took = sum((info.get("seconds") or {}).values())
        newer = (f" The run has trained to epoch {run['epoch']} since: evaluate again to probe the newer weights."
                 if run["epoch"] > (info.get("epoch") or 0) else "")
        st.caption(f"Evaluated at step {int(ev['step'])} (epoch {info.get('epoch')}) with "
                   f"{', '.join(info.get('probes') or [])}; {info.get('draws')} draws per label budget, "
                   f"{info.get('episodes')} few-shot episodes; took {took:.0f} s.{newer}")
    with st.expander("evaluation settings"):
        probes = st.multiselect("probes", list(PROBES), default=list(PROBES), format_func=PROBE_HELP.get,
                                key="eval_probes")
        c1, c2 = st.columns(2)
        draws = c1.number_input("draws per label budget", 1, 50, 5, key="eval_draws",
                                help="seeded label subsets each budget is averaged over (the std band)")
        episodes = c2.number_input("few-shot episodes", 10, 5000, 600, key="eval_episodes",
                                   help="more episodes, a narrower 95% interval")
    label = "Run workbench eval" if ev is None else "Evaluate again"
    st.button(label, type="primary" if ev is None else "secondary", key="eval_button", disabled=not probes,
              on_click=start, args=(str(path),))
    problem = st.session_state.pop("_eval_problem", None)
    if problem:
        st.warning(problem)


def start(path: str) -> None:
    """The button's callback: runs before the page reruns, so the rerun already shows the evaluation running."""
    try:
        launch.start_eval(path, st.session_state.get("eval_probes") or None, st.session_state.get("eval_draws"),
                          st.session_state.get("eval_episodes"))
        st.session_state.setdefault("_evals_started", {})[path] = time.time()
    except launch.EvalRunning as e:
        st.session_state["_eval_problem"] = str(e)


def spectrum_section(primary: dict, runs: list[dict]) -> None:
    st.subheader("Spectrum of the features")
    evaluated = {}
    for r in runs:
        ev = r["eval_spectra"]
        if len(ev):
            row = ev.iloc[-1]
            evaluated[r["name"]] = (row, singular_values(row["path"]))
    sp = primary["spectra"]
    c1, c2 = st.columns(2)
    if len(sp) >= 2:
        steps = [int(s) for s in sp["step"]]
        c1.plotly_chart(probe_charts.spectrum_heatmap(steps, [singular_values(p) for p in sp["path"]],
                                                      f"{primary['name']}: spectrum over training"),
                        width="stretch", key="spectrum-heat")
    lines, dashed = {}, []
    for n, (row, s) in evaluated.items():
        rank = row["info"].get("rankme")
        lines[f"{n} · eval, step {int(row['step'])}" + (f" (RankMe {rank:.1f})" if rank is not None else "")] = s
    if len(sp):
        steps = [int(s) for s in sp["step"]]
        first = steps[0] if evaluated.get(primary["name"]) else steps[-1]  # evaluated: compare with the start
        at = c2.select_slider("dashed: the run's spectrum at step", steps, value=first, key="spectrum_step",
                              help="step 0 is the random initialisation") if len(steps) > 1 else steps[0]
        row = sp[sp["step"] == at].iloc[-1]
        label = f"{primary['name']} · step {at}" + (f" (RankMe {row['info']['rankme']:.1f})"
                                                    if row["info"].get("rankme") is not None else "")
        lines[label] = singular_values(row["path"])
        dashed.append(label)
    if not lines:
        st.info("No spectrum yet: `workbench eval` (with the spectrum probe) adds one, and runs trained with this "
                "version log one at every evaluation.")
        return
    (c2 if len(sp) >= 2 else c1).plotly_chart(probe_charts.spectrum_lines(lines, tuple(dashed)), width="stretch",
                                              key="spectrum-lines")
    if len(sp) < 2:
        c2.caption("This run logged no spectrum during training (runs trained before the live spectrum was added "
                   "have none): the heatmap over training needs two evaluations or more.")
    cols = st.columns(max(1, len(evaluated)) + 1)
    for c, (n, (row, s)) in zip(cols, evaluated.items()):
        rank = row["info"].get("rankme")
        if rank is not None:
            most = min(len(s), int(row["info"].get("n") or len(s)))
            c.metric(f"RankMe · {n}", f"{rank:.1f}", help=f"of at most {most} (the feature size or the number of "
                     "images, whichever is smaller)")
    st.markdown(
        "**How to read it.** The features of the training images are centred and L2-normalised; their singular "
        "values say how much of the spread lies along each direction. A healthy representation has a slowly "
        "decaying spectrum: many directions carry information. **Dimensional collapse** looks like a cliff: a few "
        "large values, then a sudden drop to numerical zero (the floor at 1e-7) — the embeddings live in a "
        "low-dimensional subspace however wide the layer is. **RankMe** (the exponential of the entropy of the "
        "normalised singular values) is roughly *how many directions are used*; over training it should rise, a "
        "falling RankMe warns of collapse. In the heatmap a healthy run brightens downwards (more large values), a "
        "collapsing one darkens from the bottom up.")


@st.fragment(run_every=REFRESH)
def show(name: str, compare: list[str]) -> None:
    primary = run_info(name)
    if primary is None:
        return
    if primary["task"].name != "representation":
        pages = " and ".join(f"**{PAGE_TITLES[p]}**" for p in primary["task"].pages)
        st.info(f"`{name}` is a {primary['task'].title} run ({primary['method']}): this page stays empty for it. The "
                "probes (linear, naive Bayes, kNN, few-shot, the spectrum) measure how well frozen features separate "
                "classes, so they apply to representation runs. A low-light run is evaluated by PSNR and SSIM of its "
                f"enhanced images against the reference images: see the {pages} pages, and `workbench enhance`.")
        return
    eval_control(primary)
    runs, skipped = [primary], []
    for n in compare:
        r = run_info(n)
        if r is None:
            continue
        if r["task"].name != "representation":
            skipped.append(f"`{n}` (a {r['task'].title} run)")
        else:
            runs.append(r)
    tables = {r["name"]: records(r["eval"]["path"]) for r in runs if r["eval"] is not None}
    missing = [f"`{r['name']}` (not evaluated yet)" for r in runs[1:] if r["eval"] is None]
    if skipped or missing:
        st.caption("Not overlaid: " + ", ".join(skipped + missing) + ".")
    if tables:
        budgets = {n: recs for n, recs in tables.items() if probe_charts.budget_records(recs)}
        if budgets:
            st.subheader("Label budgets")
            st.plotly_chart(probe_charts.label_budget_curves(budgets), width="stretch", key="budgets")
            st.markdown(
                "**How to read it.** Each point is a probe trained on *n* labelled images per class (the mean over "
                "seeded draws, the band ±1 standard deviation), scored on the held-out split; *all* uses every "
                "training label. Better features lift every curve, most at the left. **Naive Bayes** (a Gaussian per "
                "class with one shared diagonal covariance) has few parameters and reaches its plateau with few "
                "labels, so it should win at the smallest budgets and lose with many labels, where **linear** "
                "(logistic regression, which models only the boundary) catches up and passes it (*Revisiting "
                "Discriminative vs. Generative Classifiers*). **kNN** usually lies in between. A wide band means the "
                "result depends on which few images were labelled.")
        c1, c2 = st.columns(2)
        fewshot = {n: recs for n, recs in tables.items() if probe_charts.fewshot_records(recs)}
        if fewshot:
            c1.plotly_chart(probe_charts.fewshot_bars(fewshot), width="stretch", key="fewshot")
            c1.markdown("**How to read it.** Each episode draws 5 classes of the test split, 1 or 5 labelled images "
                        "of each (the support) and 15 queries per class; k-means on support and queries together, "
                        "with the support's labels clamped, labels the queries (*Clustering is All You Need?*). "
                        "Chance is 0.2. The error bar is the 95% interval of the mean over the episodes: two runs "
                        "whose intervals overlap are not shown to differ.")
        blocks = {n: recs for n, recs in tables.items() if probe_charts.block_records(recs)}
        if blocks:
            c2.plotly_chart(probe_charts.block_bars(blocks), width="stretch", key="blocks")
            c2.markdown("**How to read it.** The same linear probe on the pooled features of each backbone block, "
                        "from the input (block 1) to the last. Contrastive methods usually peak at the last block. "
                        "A pretext task such as RotNet's makes the last block specific to rotations: its **middle "
                        "blocks beat the last** (the RotNet paper's finding, `--feature-block` picks one).")
    spectrum_section(primary, runs)
    frames = {r["name"]: f for r in runs if (f := scalar_follower(r["name"], ("online_linear_acc",))) is not None}
    if any("online_linear_acc" in f for f in frames.values()):
        st.subheader("Online linear probe")
        st.plotly_chart(charts.overlay(frames, "online_linear_acc", "online linear probe accuracy (held-out)"),
                        width="stretch", key="online")
        st.markdown("**How to read it.** A linear classifier trained during the run on the detached features of the "
                    "training batches (its gradient never reaches the backbone), scored at every evaluation. It sees "
                    "augmented views and a moving backbone, so it sits below the offline linear probe above: read "
                    "its trend and the ranking of runs, not its value.")


name = pick_run()
if name:
    show(name, pick_overlays(name, "probes_compare"))
