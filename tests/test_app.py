"""Every dashboard page under Streamlit's AppTest, over fixture run stores: a trained run, an empty folder, a run
that has just started, a failed run, a dead (stale) run, a corrupt database and a foreign file."""
import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import workbench
from workbench.runs import RunReader, RunWriter

APP = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
PAGES = ["views/runs.py", "views/curves.py", "views/scores.py", "views/embeddings.py", "views/clusters.py",
         "views/probes.py", "views/images.py"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    workbench.train(dataset="digits", epochs=2, batch_size=128, progress=False, runs_dir=str(d), run_name="good",
                    probe_size=200)
    return d / "good"


@pytest.fixture
def good_dir(tmp_path, trained_run):
    shutil.copytree(trained_run, tmp_path / "good")
    return tmp_path


@pytest.fixture
def messy_dir(good_dir):
    d = good_dir
    (d / "corrupt").mkdir()
    (d / "corrupt" / "run.db").write_bytes(b"garbage" * 500)
    (d / "README.txt").write_text("a foreign file")
    RunWriter(d / "just-started", {"method": "simclr", "dataset": "digits"})  # no steps yet, still running
    failed = RunWriter(d / "failed", {"method": "simclr", "dataset": "digits"})
    failed.log(1, {"loss": 5.0})
    failed.close("failed", "loss became nan at step 2 (epoch 1)")
    dead = subprocess.Popen([sys.executable, "-c", "import sys, time; from workbench.runs import RunWriter; "
                             "w = RunWriter(sys.argv[1]); w.log(1, {'loss': 4.0}); print('ok', flush=True); "
                             "time.sleep(60)", str(d / "dead")], stdout=subprocess.PIPE, text=True)
    assert dead.stdout.readline().strip() == "ok"
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    return d


def values(v) -> list:
    """A plotly trace array: a list, or plotly 6's typed-array encoding {'dtype', 'bdata' (base64)}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def matrix(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).reshape([int(n) for n in str(v["shape"]).split(",")])
    return np.array(v)


def images(at) -> list:
    return at.get("image")


def specs(at) -> dict[str, dict]:
    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        out[spec["layout"].get("title", {}).get("text", "")] = spec
    return out


def app_on(runs_dir, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["runs_dir"] = str(runs_dir)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_an_empty_folder_says_what_to_do(tmp_path, page):
    at = app_on(tmp_path, page)
    assert not at.exception
    assert any("No runs" in i.value for i in at.info)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_survives_bad_runs(messy_dir, page):
    at = app_on(messy_dir, page)
    assert not at.exception, at.exception
    for name in ("just-started", "failed", "dead", "good"):
        if page == "views/runs.py":
            break
        if len(at.sidebar.selectbox):
            at.sidebar.selectbox[0].select(name).run()
        else:
            at.sidebar.multiselect[0].set_value([name]).run()
        assert not at.exception, (name, at.exception)


def test_runs_page_lists_runs_and_explains_the_bad_ones(messy_dir):
    at = app_on(messy_dir)
    assert not at.exception
    table = at.dataframe[0].value
    status = dict(zip(table["name"], table["status"]))
    assert status == {"good": "finished", "just-started": "running", "failed": "failed", "dead": "stale",
                      "corrupt": "unreadable"}
    assert "knn_acc" in table.columns and "psnr" not in table.columns  # no low-light run here: no empty column
    assert any("corrupt" in w.value and "cannot be read" in w.value for w in at.warning)
    assert any("loss became nan" in e.value for e in at.error)


def test_scores_page_shows_histograms_heatmaps_curves_and_hints(good_dir):
    at = app_on(good_dir, "views/scores.py")
    assert not at.exception
    figs = specs(at)
    with RunReader(good_dir / "good") as r:
        pos = r.histograms("pos")
        tau = r.config["tau"]
    last = int(pos.steps[-1])
    hist = figs[f"pos/neg cosine similarity at step {last}"]
    assert [t["name"].split(" ")[0] for t in hist["data"]] == ["positive", "negative"]
    assert len(values(hist["data"][0]["x"])) == 100
    heat = figs["positive scores over time"]["data"][0]
    assert values(heat["x"]) == pos.steps.tolist()  # every logged step, none sampled away
    assert {"pos_mean", "neg_mean", "neg_var (per-query variance)"} <= set(figs)
    assert any(f"Temperature tau = {tau:g}" in i.value for i in at.info)
    # drive the step selection: stop following, pick the first logged step
    at.toggle[0].set_value(False).run()
    at.select_slider[0].set_value(int(pos.steps[0])).run()
    assert f"pos/neg cosine similarity at step {int(pos.steps[0])}" in specs(at)


def test_scores_page_overlays_only_the_runs_picked_besides_the_selected_one(good_dir, trained_run):
    shutil.copytree(trained_run, good_dir / "good-copy")
    at = app_on(good_dir, "views/scores.py")
    at.sidebar.selectbox[0].select("good").run()
    overlay = at.sidebar.multiselect[0]
    assert overlay.options == ["good-copy"] and overlay.value == []  # the selected run is drawn anyway
    assert [t["name"] for t in specs(at)["pos_mean"]["data"]] == ["good"]
    at.sidebar.multiselect[0].set_value(["good-copy"]).run()
    assert [t["name"] for t in specs(at)["pos_mean"]["data"]] == ["good", "good-copy"]
    at.sidebar.selectbox[0].select("good-copy").run()  # the other run selected: no run left over from before
    assert not at.exception
    assert at.sidebar.multiselect[0].options == ["good"] and at.sidebar.multiselect[0].value == []
    assert [t["name"] for t in specs(at)["pos_mean"]["data"]] == ["good-copy"]


def test_curves_page_overlays_several_runs(good_dir, trained_run):
    shutil.copytree(trained_run, good_dir / "good-copy")
    at = app_on(good_dir, "views/curves.py")
    at.sidebar.multiselect[0].set_value(["good", "good-copy"]).run()
    assert not at.exception
    figs = specs(at)
    assert [t["name"] for t in figs["loss"]["data"]] == ["good", "good-copy"]
    assert "kNN accuracy (held-out)" in figs
    collapse = [f for t, f in figs.items() if t.startswith("std of normalised")][0]
    assert any(s.get("type") == "line" for s in collapse["layout"].get("shapes", []))  # the 1/sqrt(d) level


def test_curves_page_draws_the_method_specific_curves_only_where_logged(tmp_path):
    w = RunWriter(tmp_path / "rot", {"method": "rotnet", "dataset": "digits"})
    for step in (1, 2):
        w.log(step, {"loss": 1.0 / step, "rotation_acc": 0.3 * step, "knn_acc_block1": 0.7, "knn_acc_block3": 0.9})
    w.close("finished")
    at = app_on(tmp_path, "views/curves.py")
    assert not at.exception
    figs = specs(at)
    assert "RotNet: rotation accuracy (the pretext task)" in figs
    blocks = figs["kNN accuracy of each backbone block"]["data"]
    assert [t["name"] for t in blocks] == ["rot · block 1", "rot · block 3"]
    assert not any(title.startswith("MoCo") or title.startswith("DEPICT") for title in figs)


def test_embeddings_page_pca_and_colourings(good_dir):
    at = app_on(good_dir, "views/embeddings.py")
    assert not at.exception
    fig = [f for t, f in specs(at).items() if t.startswith("PCA at step 22")][0]
    assert sum(len(values(t["x"])) for t in fig["data"]) == 200
    assert len(fig["data"]) == 10  # one trace per digit class
    at.sidebar.radio[1].set_value("kNN correct").run()
    fig = [f for t, f in specs(at).items() if t.startswith("PCA")][0]
    assert {t["name"] for t in fig["data"]} <= {"correct", "wrong"}
    at.sidebar.radio[1].set_value("k-means cluster").run()
    fig = [f for t, f in specs(at).items() if t.startswith("PCA")][0]
    assert all(t["name"].startswith("cluster ") for t in fig["data"])
    # an earlier epoch's snapshot
    at.toggle[0].set_value(False).run()
    at.select_slider[0].set_value(0).run()
    assert any(t.startswith("PCA at step 0 ") for t in specs(at))


def test_embeddings_page_umap_is_computed_in_the_background(good_dir):
    at = app_on(good_dir, "views/embeddings.py")
    at.sidebar.radio[0].set_value("UMAP").run()
    assert not at.exception
    deadline = time.time() + 240
    while time.time() < deadline and not any(t.startswith("UMAP at step") for t in specs(at)):
        assert any("being computed in the background" in i.value for i in at.info) or specs(at)
        time.sleep(2)
        at.run()  # AppTest has no timer: a rerun stands in for the fragment's refresh
    assert any(t.startswith("UMAP at step 22") for t in specs(at))


def test_clusters_page_matches_clusters_to_labels(good_dir):
    at = app_on(good_dir, "views/clusters.py")
    assert not at.exception
    figs = specs(at)
    conf = [f for t, f in figs.items() if t.startswith("matched confusion at step 22")][0]
    z = matrix(conf["data"][0]["z"])
    assert z.shape == (10, 10) and z.sum() == 200
    with RunReader(good_dir / "good") as r:
        acc = r.scalar("kmeans_acc").iloc[-1]
    assert f"ACC {acc:.3f}" in [t for t in figs if t.startswith("matched")][0]
    assert np.trace(z) / 200 == pytest.approx(acc)  # matched clusters sit on the diagonal
    assert "clustering quality over time" in figs and "cluster sizes (fraction, largest first)" in figs
    assert len(images(at)) >= 1  # the example images per cluster


def test_images_page_shows_the_augmented_views(good_dir):
    at = app_on(good_dir, "views/images.py")
    assert not at.exception
    assert len(images(at)) == 1


def test_live_refresh_reads_new_steps(tmp_path):
    w = RunWriter(tmp_path / "live", {"method": "simclr", "dataset": "digits", "total_steps": 100})
    w.log(1, {"loss": 6.0, "knn_acc": 0.5})
    at = app_on(tmp_path, "views/curves.py")
    assert values(specs(at)["loss"]["data"][0]["x"]) == [1]
    for s in range(2, 6):
        w.log(s, {"loss": 6.0 - s / 10})
    w.log(5, {"knn_acc": 0.6})  # a value logged later for an already-seen step is picked up too
    at.run()
    figs = specs(at)
    assert values(figs["loss"]["data"][0]["x"]) == [1, 2, 3, 4, 5]
    assert values(figs["kNN accuracy (held-out)"]["data"][0]["y"]) == [0.5, 0.6]
    w.close("finished")


def test_start_and_stop_a_run_from_the_runs_page(tmp_path):
    at = app_on(tmp_path)
    at.number_input(key="new_epochs").set_value(300)
    at.text_input(key="new_run_name").set_value("from-app")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    assert any("Started `from-app`" in s.value for s in at.success)
    db = tmp_path / "from-app" / "run.db"
    deadline = time.time() + 120
    while time.time() < deadline and not (db.exists() and RunReader(db.parent).last_step() >= 1):
        time.sleep(0.2)
    at.run()
    assert "from-app" in at.dataframe[0].value["name"].tolist()
    stop_buttons = [b for b in at.button if b.label == "Stop"]
    stop_buttons[0].click().run()
    assert any("stop requested" in i.value for i in at.info)
    deadline = time.time() + 60
    while time.time() < deadline and RunReader(db.parent).status().state == "running":
        time.sleep(0.2)
    assert RunReader(db.parent).status().state == "stopped"


def test_new_run_form_rejects_bad_values_and_missing_data(tmp_path):
    at = app_on(tmp_path)
    at.selectbox(key="new_dataset").select("cifar10")
    at.button[0].click().run()
    assert any("not on this machine" in e.value and "--download" in e.value for e in at.error)
    at.selectbox(key="new_dataset").select("folder:")  # and no path: it trained on the app's working directory
    at.button[0].click().run()
    assert any("give the path of your images" in e.value for e in at.error)
    at.selectbox(key="new_dataset").select("digits")
    at.text_input(key="new_folder").input(str(tmp_path / "photos"))  # a path, but another dataset chosen
    at.button[0].click().run()
    assert any("an image folder is given" in e.value and "choose 'folder:'" in e.value for e in at.error)
    assert not any(tmp_path.iterdir())


# the configuration a run of version 0.1 stored: one flat record of every method's options (56 fields)
LEGACY_CONFIG = {
    "method": "simclr", "dataset": "digits", "data_root": "data", "download": False, "image_size": None,
    "subset": None, "backbone": "auto", "proj_dim": 128, "tau": 0.2, "moco_momentum": 0.99, "queue_size": 4096,
    "symmetric": True, "split_bn": 8, "ft_pos": False, "ft_neg": False, "ft_alpha_pos": 2.0, "ft_alpha_neg": 1.6,
    "prototypes": None, "swav_eps": 0.05, "sinkhorn_iters": 3, "small_crops": None,
    "freeze_prototypes_epochs": 1.0, "n_clusters": None, "pretrain_epochs": 5.0, "feature_block": None,
    "patch_size": 64, "patches": 2048, "troublemaker": "learned", "tm_epochs": 1.0, "em_epochs": None,
    "ugdc_width": 16, "ugdc_levels": 3, "gdc_grid": 8, "ssim_weight": 0.2, "dce_iterations": 8, "lol_dir": None,
    "epochs": 2, "batch_size": 128, "optimizer": "adamw", "lr": None, "weight_decay": None, "momentum": 0.9,
    "warmup_epochs": 1.0, "amp": True, "device": "auto", "seed": 0, "log_every": 10, "hist_bins": 100,
    "knn_k": None, "knn_t": 0.1, "probe_size": 200, "eval_every": 1, "runs_dir": "runs", "run_name": "good",
    "resume": False, "progress": False,
}


def test_an_old_runs_flat_config_opens_on_every_page_and_loads(good_dir):
    """Runs of the first version stored every method's options; they still open, and load as their method's
    configuration (a resume or `workbench enhance` goes through TrainConfig.from_dict)."""
    assert len(LEGACY_CONFIG) == 56
    with sqlite3.connect(good_dir / "good" / "run.db") as con:  # the stored config as version 0.1 wrote it
        con.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(LEGACY_CONFIG),))
    cfg = workbench.TrainConfig.from_dict(LEGACY_CONFIG)
    assert cfg.method == "simclr" and cfg.batch_size == 128 and "queue_size" not in cfg.to_dict()
    assert set(cfg.to_dict()) == set(workbench.TrainConfig(method="simclr").to_dict())  # SimCLR's options alone
    assert cfg.tau == LEGACY_CONFIG["tau"]  # the old run's own value, not today's default
    with pytest.raises(workbench.ConfigError, match="unknown config field"):
        workbench.TrainConfig.from_dict({**LEGACY_CONFIG, "temperature": 0.1})
    for page in PAGES:
        at = app_on(good_dir, page)
        assert not at.exception, (page, at.exception)
    at = app_on(good_dir, "views/scores.py")
    assert any("tau 0.2" in c.value for c in at.caption)  # the status line reads the old config


# ---------------------------------------------------------------------------------------------- the Probes page
@pytest.fixture(scope="module")
def evaluated_run(trained_run, tmp_path_factory):
    """The trained run, copied and probed by `workbench eval` (every probe, few draws and episodes)."""
    from workbench.engine.evaluate import evaluate_run

    d = tmp_path_factory.mktemp("evaluated") / "good"
    shutil.copytree(trained_run, d)
    result = evaluate_run(d, draws=2, episodes=20, progress=False)
    return d, result


def test_probes_page_draws_what_workbench_eval_wrote(tmp_path, evaluated_run):
    run, result = evaluated_run
    shutil.copytree(run, tmp_path / "good")
    at = app_on(tmp_path, "views/probes.py")
    assert not at.exception, at.exception
    figs = specs(at)
    s = result.scalars
    budgets = figs["accuracy against labels per class"]
    lines = {t["name"]: t for t in budgets["data"] if not t.get("fill")}
    assert set(lines) == {"linear", "naive Bayes", "kNN"}
    assert [t["name"] for t in budgets["data"] if t.get("fill")] == ["linear ±std", "naive Bayes ±std", "kNN ±std"]
    assert budgets["layout"]["xaxis"]["type"] == "log" and budgets["layout"]["xaxis"]["ticktext"][-1] == "all"
    linear = lines["linear"]
    ns = [n for n in (1, 2, 5, 10, 20, 50) if f"linear_acc@{n}" in s]
    assert values(linear["x"])[:-1] == ns  # the budgets, then "all"
    assert values(linear["y"]) == pytest.approx([s[f"linear_acc@{n}"] for n in ns] + [s["linear_acc"]])
    assert values(lines["naive Bayes"]["y"])[0] == pytest.approx(s["nb_acc@1"])
    fewshot = figs["few-shot accuracy (95% interval)"]["data"][0]
    assert list(fewshot["x"]) == ["5-way 1-shot", "5-way 5-shot"]
    assert values(fewshot["y"]) == pytest.approx([s["fewshot_5w1s_acc"], s["fewshot_5w5s_acc"]])
    assert values(fewshot["error_y"]["array"]) == pytest.approx([s[f"fewshot_5w{k}s_acc_ci95"] for k in (1, 5)])
    blocks = figs["linear probe on each backbone block"]["data"][0]
    assert list(blocks["x"]) == [f"block {i}" for i in range(1, 5)]
    assert values(blocks["y"]) == pytest.approx([s[f"linear_acc_block{i}"] for i in range(1, 5)])
    spectrum = figs["singular values of the features"]
    assert spectrum["layout"]["yaxis"]["type"] == "log"
    evald = [t for t in spectrum["data"] if t["name"].startswith("good · eval")][0]
    assert len(values(evald["y"])) == len(result.spectrum)
    assert f"(RankMe {s['rankme']:.1f})" in evald["name"]
    assert [m.value for m in at.metric] == [f"{s['rankme']:.1f}"]
    assert any(c.value.startswith(f"Evaluated at step {result.step} (epoch 2)") for c in at.caption)
    assert [b.label for b in at.button] == ["Evaluate again"]
    text = " ".join(m.value for m in at.markdown)
    for hint in ("should win at the smallest budgets", "Dimensional collapse", "RankMe", "middle blocks beat the last",
                 "95% interval"):
        assert hint in text
    # several runs overlaid: colour = probe, dash = run
    shutil.copytree(run, tmp_path / "good-copy")
    at = app_on(tmp_path, "views/probes.py")
    at.sidebar.selectbox[0].select("good").run()
    at.sidebar.multiselect[0].set_value(["good-copy"]).run()
    assert not at.exception
    figs = specs(at)
    names = [t["name"] for t in figs["accuracy against labels per class"]["data"] if not t.get("fill")]
    assert names == [f"{r} · {p}" for r in ("good", "good-copy") for p in ("linear", "naive Bayes", "kNN")]
    assert [t["name"] for t in figs["few-shot accuracy (95% interval)"]["data"]] == ["good", "good-copy"]


def test_probes_page_runs_workbench_eval_with_progress_and_refreshes(good_dir):
    from workbench.engine import launch

    at = app_on(good_dir, "views/probes.py")
    assert not at.exception
    assert any("has not been evaluated yet" in i.value for i in at.info)
    assert "accuracy against labels per class" not in specs(at)
    at.multiselect(key="eval_probes").set_value(["linear", "nb", "spectrum"])
    at.number_input(key="eval_draws").set_value(1)
    at.number_input(key="eval_episodes").set_value(10)
    at.button(key="eval_button").click().run()
    assert not at.exception, at.exception
    assert any("`workbench eval` is running on `good`" in i.value for i in at.info)
    assert [b.label for b in at.button] == []  # no second start from the page while it runs
    with pytest.raises(launch.EvalRunning):  # nor from anywhere else
        launch.start_eval(good_dir / "good")
    deadline = time.time() + 240
    while time.time() < deadline and launch.eval_status(good_dir / "good").state == "running":
        time.sleep(1)
    at.run()  # the fragment's refresh
    assert not at.exception
    status = launch.eval_status(good_dir / "good")
    assert status.state == "finished", status.last_lines()
    assert any("workbench eval` finished on `good`" in m.value for m in at.success)
    log = (good_dir / "good" / "eval.log").read_text()
    assert "--probes linear,nb,spectrum --draws 1 --episodes 10" in log and "written to" in log
    figs = specs(at)
    lines = [t for t in figs["accuracy against labels per class"]["data"] if not t.get("fill")]
    assert [len(values(t["x"])) for t in lines] == [1, 1, 1]  # all labels only: the budgets were not asked for
    assert "few-shot accuracy (95% interval)" not in figs
    assert any(t["name"].startswith("good · eval") for t in figs["singular values of the features"]["data"])
    assert [b.label for b in at.button] == ["Evaluate again"]


def test_probes_page_says_why_an_evaluation_failed(good_dir):
    from workbench.engine import launch

    (good_dir / "good" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    launch.start_eval(good_dir / "good")
    deadline = time.time() + 120
    while time.time() < deadline and launch.eval_status(good_dir / "good").state == "running":
        time.sleep(0.5)
    at = app_on(good_dir, "views/probes.py")
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "failed (exit code 2)" in error and "cannot read the checkpoint" in error
    assert [b.label for b in at.button] == ["Run workbench eval"]  # try again


def test_probes_page_without_checkpoint_and_with_the_spectrum_over_training(tmp_path):
    w = RunWriter(tmp_path / "young", {"method": "simclr", "dataset": "digits", "epoch": 0})
    rng = np.random.default_rng(0)
    spectra = {}
    for step, rank in ((0, 4), (5, 8), (10, 12)):
        s = np.sort(rng.uniform(0.01, 0.3, 16))[::-1] * (np.arange(16) < rank)  # zeros past the rank: collapse
        spectra[step] = s
        w.add_arrays(step, "spectrum", {"epoch": step // 5, "source": "training", "rankme": float(rank), "n": 100},
                     singular_values=s)
        if step:
            w.log(step, {"online_linear_acc": 0.1 * step, "loss": 1.0})
    at = app_on(tmp_path, "views/probes.py")
    assert not at.exception, at.exception
    assert any("has no checkpoint yet" in i.value and "finished epoch" in i.value for i in at.info)
    assert not at.button
    figs = specs(at)
    heat = figs["young: spectrum over training"]["data"][0]
    assert list(heat["x"]) == ["0", "5", "10"]
    z = matrix(heat["z"])
    assert z.shape == (16, 3)
    assert z[:, 1] == pytest.approx(np.log10(np.maximum(spectra[5], 1e-7)))
    # not evaluated: the latest spectrum, any other on the slider
    assert [t["name"] for t in figs["singular values of the features"]["data"]] == ["young · step 10 (RankMe 12.0)"]
    assert values(figs["online linear probe accuracy (held-out)"]["data"][0]["y"]) == pytest.approx([0.5, 1.0])
    at.select_slider(key="spectrum_step").set_value(0).run()
    assert [t["name"] for t in specs(at)["singular values of the features"]["data"]] == ["young · step 0 (RankMe 4.0)"]
    w.close("finished")


def test_probes_page_says_why_a_lowlight_run_has_no_probes(tmp_path):
    w = RunWriter(tmp_path / "dark", {"method": "tml", "dataset": "photos"})
    w.log(1, {"psnr": 15.0})
    w.close("finished")
    at = app_on(tmp_path, "views/probes.py")
    assert not at.exception
    [info] = [i.value for i in at.info]
    assert "low-light enhancement run (tml)" in info and "apply to representation runs" in info
    assert "PSNR and SSIM" in info and "**Images**" in info
    assert not at.button and not specs(at)


def test_clusters_page_when_the_methods_own_clusters_start_late(tmp_path):
    """DEPICT logs its own assignments only after its first clustering (AC-PIC or k-means): earlier snapshots have
    none."""
    w = RunWriter(tmp_path / "depict", {"method": "depict", "dataset": "digits", "classes": [str(i) for i in range(3)]})
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    for step in (0, 5, 10):
        arrays = dict(features=rng.normal(size=(60, 4)).astype(np.float16), labels=labels, index=np.arange(60),
                      kmeans=rng.integers(0, 3, 60))
        if step >= 10:
            arrays["codes"] = labels.copy()
        w.add_arrays(step, "embeddings", {"epoch": step // 5}, **arrays)
        w.log(step, {"loss": 1.0})
    w.close("finished")
    at = app_on(tmp_path, "views/clusters.py")
    at.radio(key="cluster_source").set_value("codes").run()
    assert not at.exception
    assert any("start at step 10" in c.value for c in at.caption)
    assert any(t.startswith("matched confusion at step 10: ACC 1.000") for t in specs(at))


def test_curves_page_draws_depicts_own_curves(tmp_path):
    """Each stage's own curve: the held-out reconstruction of an early-stopped pre-training, the init stage's
    held-out NMI, then the clustering stage's share of moved images."""
    w = RunWriter(tmp_path / "depict", {"method": "depict", "dataset": "digits", "config": {"epochs": 2}})
    for step, rec in ((2, 0.9), (4, 0.7)):
        w.log(step, {"loss": 1.0, "pretrain_val_reconstruction": rec})
    for step, nmi in ((6, 0.8), (8, 0.85)):
        w.log(step, {"loss": 1.0, "init_val_nmi": nmi})
    for step, moved in ((10, 0.0), (20, 0.04)):
        w.log(step, {"loss": 1.0, "target_change": 1e-3, "moved_from_init": moved})
    w.close("finished")
    at = app_on(tmp_path, "views/curves.py")
    assert not at.exception
    charts = specs(at)
    for words, expected in (("held-out reconstruction", [0.9, 0.7]), ("held-out NMI", [0.8, 0.85])):
        [title] = [t for t in charts if words in t]
        assert [pytest.approx(values(d["y"])) for d in charts[title]["data"] if "y" in d] == [expected]
    [title] = [t for t in charts if "moved off the first clustering" in t]
    assert [pytest.approx(values(d["y"])) for d in charts[title]["data"] if "y" in d] == [[0.0, 0.04]]
    yaxis = charts[title]["layout"]["yaxis"]  # a share: from 0, in percent
    assert yaxis["rangemode"] == "tozero" and yaxis["tickformat"] == ".1%"
    [title] = [t for t in charts if "change of the epoch's target" in t]  # 0.07 down to 1e-6: a log axis
    assert charts[title]["layout"]["yaxis"]["type"] == "log"
    assert [shape["y0"] for shape in charts[title]["layout"]["shapes"]] == [1e-7]  # the stopping threshold
    [label] = charts[title]["layout"]["annotations"]  # at its line: plotly reads log10 on a log axis
    assert label["text"] == "stop: 1e-7" and label["y"] == pytest.approx(-7)


def test_curves_page_frames_a_constant_learning_rate_around_its_value(tmp_path):
    """A constant lr (Zero-DCE's and DEPICT's official schedule) was drawn on plotly's -1..1 range around 0, where
    1e-4 reads as 0: a flat curve gets half its value on either side; a varying one keeps plotly's autorange."""
    for name, lrs in (("constant", [1e-4] * 6), ("cosine", [1e-4, 9e-5, 7e-5, 4e-5, 1e-5, 0.0])):
        w = RunWriter(tmp_path / name / name, {"method": "zerodce", "dataset": "photos", "config": {"epochs": 1}})
        for step, lr in enumerate(lrs, 1):
            w.log(step, {"loss": 1.0, "lr": lr})
        w.close("finished")
        at = app_on(tmp_path / name, "views/curves.py")
        assert not at.exception
        [title] = [t for t in specs(at) if "learning rate" in t]
        yaxis = specs(at)[title]["layout"]["yaxis"]
        if name == "constant":
            assert yaxis["range"] == pytest.approx([5e-5, 1.5e-4])
        else:
            assert "range" not in yaxis


def test_curves_page_never_raises_on_an_odd_stored_reference(tmp_path):
    """The reference lines need the embedding size d: read from the run's config, and a value that cannot be a size
    (here collapse_ref = 1, i.e. d = 1, in a run without proj_dim) leaves the line out with a reason."""
    w = RunWriter(tmp_path / "odd", {"method": "simclr", "dataset": "digits", "config": {"epochs": 1}})
    for step in (1, 2):
        w.log(step, {"loss": 1.0, "uniform": -1.0, "collapse_std": 0.5, "collapse_ref": 1.0})
    w.close("finished")
    at = app_on(tmp_path, "views/curves.py")
    assert not at.exception
    assert any("d=1 is below 2" in c.value for c in at.caption)


def test_runs_page_deletes_a_run_only_when_confirmed_and_not_while_it_trains(tmp_path):
    for name in ("old", "busy"):
        w = RunWriter(tmp_path / name, {"method": "simclr", "dataset": "digits"})
        w.log(1, {"loss": 1.0})
        w.close("finished")
    at = app_on(tmp_path, "views/runs.py")
    assert at.button(key="delete_button").disabled  # nothing happens without the confirmation
    at.selectbox(key="delete_run").set_value("old").run()
    at.checkbox(key="delete_sure").check().run()
    at.button(key="delete_button").click().run()
    assert not at.exception and not (tmp_path / "old").exists()
    assert any("Deleted `old`" in m.value for m in at.success)
    from workbench.runs.store import RunLock

    at = app_on(tmp_path, "views/runs.py")  # a fresh visit of the page
    lock = RunLock(tmp_path / "busy")  # as a training process holds it
    try:
        at.selectbox(key="delete_run").set_value("busy").run()
        at.checkbox(key="delete_sure").check().run()
        at.button(key="delete_button").click().run()
        assert any("being written by process" in e.value for e in at.error) and (tmp_path / "busy").exists()
    finally:
        lock.release()


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory):
    """A run on a flat folder of 12 images: no class labels, so no kNN accuracy, probes or cluster scores, and a
    held-out split (the probe) of one image."""
    from PIL import Image

    folder, runs = tmp_path_factory.mktemp("photos"), tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    workbench.train(dataset=f"folder:{folder}", epochs=2, batch_size=8, progress=False, runs_dir=str(runs),
                    run_name="unlabelled", probe_size=20, image_size=16)
    return runs


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_a_run_on_unlabelled_images(unlabelled_run, page):
    at = app_on(unlabelled_run, page)
    assert not at.exception, at.exception
    with RunReader(unlabelled_run / "unlabelled") as r:
        assert "knn_acc" not in r.scalars().columns and r.status().state == "finished"
        assert any("has no class labels" in m for m in r.events().message)


def test_embeddings_page_draws_a_one_point_probe_and_says_why_umap_cannot(unlabelled_run):
    at = app_on(unlabelled_run, "views/embeddings.py")
    assert not at.exception and not at.warning, (at.exception, at.warning)
    spec = next(iter(specs(at).values()))
    assert spec["layout"]["title"]["text"].startswith("PCA") and len(spec["data"]) == 1  # one point, "unlabelled"
    assert spec["data"][0]["name"] == "unlabelled"
    at.sidebar.radio[0].set_value("UMAP").run()
    for _ in range(20):  # UMAP runs (and here fails at once) in a background thread
        if at.warning:
            break
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    assert any("UMAP needs at least 4 points" in w.value for w in at.warning)
    assert next(iter(specs(at).values()))["layout"]["title"]["text"].startswith("PCA at step")


def test_probes_page_says_a_run_without_labels_cannot_be_probed(unlabelled_run):
    at = app_on(unlabelled_run, "views/probes.py")
    assert not at.exception, at.exception
    assert any("without class labels" in i.value and "one sub-folder per class" in i.value for i in at.info)
    assert not [b for b in at.button if b.label in ("Run workbench eval", "Evaluate again")]
    assert "spectrum over training" in " ".join(specs(at))  # what needs no labels is still drawn
