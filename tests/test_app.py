"""The dashboard under Streamlit's AppTest, over fixture run stores (good, empty, just started, failed, corrupt)."""
import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import workbench
from workbench.runs import RunReader, RunWriter

APP = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    workbench.train(dataset="digits", epochs=2, batch_size=128, progress=False, runs_dir=str(d), run_name="good",
                    probe_size=200)
    return d / "good"


def app_on(runs_dir) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["runs_dir"] = str(runs_dir)
    return at.run()


def values(v) -> list:
    """A plotly trace array: a list, or plotly 6's typed-array encoding {'dtype', 'bdata' (base64)}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def chart_titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_empty_runs_folder_says_how_to_start(tmp_path):
    at = app_on(tmp_path)
    assert not at.exception
    assert any("No runs" in i.value for i in at.info)


def test_a_finished_run_shows_its_charts(tmp_path, trained_run):
    shutil.copytree(trained_run, tmp_path / "good")
    at = app_on(tmp_path)
    assert not at.exception
    titles = chart_titles(at)
    assert "loss" in titles and "kNN accuracy (held-out)" in titles
    with RunReader(tmp_path / "good") as r:
        last_hist = int(r.histograms("pos").steps[-1])
    assert f"pos/neg cosine similarity at step {last_hist}" in titles
    assert any(t.startswith("embeddings (PCA) at step 22") for t in titles)
    posneg = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
              if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("pos/neg")][0]
    assert [t["name"].split(" ")[0] for t in posneg["data"]] == ["positive", "negative"]
    assert len(values(posneg["data"][0]["x"])) == 100
    assert at.selectbox[0].options == ["good"]


def test_bad_runs_give_messages_and_the_good_run_still_shows(tmp_path, trained_run):
    shutil.copytree(trained_run, tmp_path / "good")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "run.db").write_bytes(b"garbage" * 500)
    (tmp_path / "README.txt").write_text("a foreign file")
    RunWriter(tmp_path / "just-started", {"method": "simclr", "dataset": "digits"})  # no steps yet, still running
    failed = RunWriter(tmp_path / "failed", {"method": "simclr", "dataset": "digits"})
    failed.log(1, {"loss": 5.0})
    failed.close("failed", "loss became nan at step 2 (epoch 1)")
    at = app_on(tmp_path)
    assert not at.exception
    assert any("corrupt" in w.value and "cannot be read" in w.value for w in at.warning)
    assert set(at.selectbox[0].options) == {"good", "just-started", "failed"}
    at.selectbox[0].select("just-started").run()
    assert not at.exception
    assert any("waiting for its first logged step" in i.value for i in at.info)
    at.selectbox[0].select("failed").run()
    assert any("loss became nan" in e.value for e in at.error)
    at.selectbox[0].select("good").run()
    assert len(at.get("plotly_chart")) == 5 and not at.exception


def test_live_refresh_shows_new_steps(tmp_path):
    w = RunWriter(tmp_path / "live", {"method": "simclr", "dataset": "digits", "total_steps": 100})
    w.log(1, {"loss": 6.0})
    at = app_on(tmp_path)
    assert any("step 1/100" in c.value for c in at.caption)
    for s in range(2, 6):
        w.log(s, {"loss": 6.0 - s / 10})
    at.run()  # AppTest has no timer: a rerun stands in for the fragment's run_every tick
    assert any("step 5/100" in c.value for c in at.caption)
    loss = [json.loads(c.proto.spec) for c in at.get("plotly_chart")][0]
    assert values(loss["data"][0]["x"]) == [1, 2, 3, 4, 5]
    w.close("finished")
