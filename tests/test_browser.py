"""The dashboard in a real browser: Debian's Chromium driven by Playwright (never `playwright install`).

Starts `streamlit run` on a free port and a SimCLR training run on digits, opens every page, checks that the
pos/neg and embedding charts render and that the step shown advances while training writes. Screenshots of each
page go to test-artifacts/ (git-ignored).
"""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
# Debian's package (`make test` installs it when it runs as root with apt-get), or any Chrome/Chromium binary
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = {"runs": "", "curves": "curves", "scores": "scores", "embeddings": "embeddings", "clusters": "clusters",
         "probes": "probes", "images": "images"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_chromium() -> None:
    """Skip where no Chromium is installed, but fail where one was promised: a WORKBENCH_CHROMIUM that is not an
    executable, or WORKBENCH_REQUIRE_CHROMIUM=1 (set by .ci/run, whose `make test` installs it), so CI can never
    pass by skipping the browser tests."""
    if "WORKBENCH_CHROMIUM" in os.environ and not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"WORKBENCH_CHROMIUM={CHROMIUM} is not an executable file")
    if not os.access(CHROMIUM, os.X_OK):
        why = ("Chromium not found (no chromium on PATH, no /usr/bin/chromium): install the Debian package chromium "
               "(sudo apt-get install chromium) or set WORKBENCH_CHROMIUM=/path/to/chrome")
        if os.environ.get("WORKBENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail(why)
        pytest.skip(why)


def serve(tmp_path, train_args: list[str] | None):
    """The app on a free port and a training run (``workbench train`` + ``train_args``; none for ``None``) it
    follows, over ``tmp_path/runs`` (made if missing)."""
    require_chromium()
    port = free_port()
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    app = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--runs-dir", str(runs), "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    train = None if train_args is None else subprocess.Popen(
        [sys.executable, "-m", "workbench", "train", "--runs-dir", str(runs), "--progress", "false", *train_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        pytest.fail("streamlit did not come up within 120 s")
    return url, (train, app)


def stop(processes) -> None:
    """Stop the training run and the app: the app's whole process group (its own session), since `workbench app`
    runs `streamlit run` as a child that a signal to `workbench app` alone would leave serving."""
    train, app = processes
    if train is not None:
        train.terminate()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(app.pid, signal.SIGTERM)
    for p in (train, app):
        if p is None:
            continue
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    deadline = time.time() + 20
    with contextlib.suppress(ProcessLookupError):
        while time.time() < deadline:
            os.killpg(app.pid, 0)  # raises once the group is empty
            time.sleep(0.2)
        os.killpg(app.pid, signal.SIGKILL)


@pytest.fixture
def live_app(tmp_path):
    url, processes = serve(tmp_path, ["--run-name", "browser", "--epochs", "400", "--log-every", "5"])
    yield url
    stop(processes)


@pytest.fixture
def live_lowlight_app(tmp_path):
    url, processes = serve(tmp_path, ["--method", "tml", "--run-name", "lowlight", "--epochs", "400", "--patches",
                                      "64", "--patch-size", "32", "--ugdc-width", "4", "--ugdc-levels", "2",
                                      "--tm-epochs", "2", "--em-epochs", "2"])
    yield url
    stop(processes)


@pytest.fixture
def evaluated_app(tmp_path):
    """The app over a finished SimCLR run that `workbench eval` has probed (a few probes, to stay fast)."""
    import workbench
    from workbench.engine.evaluate import evaluate_run

    require_chromium()  # before training, so a machine without a browser does not pay for the run
    workbench.train(dataset="digits", epochs=1, batch_size=256, progress=False, runs_dir=str(tmp_path / "runs"),
                    run_name="probed", probe_size=200)
    evaluate_run(tmp_path / "runs" / "probed", probes="linear,nb,fewshot,spectrum", draws=1, episodes=20,
                 progress=False)
    url, processes = serve(tmp_path, None)
    yield url
    stop(processes)


@contextlib.contextmanager
def chromium_page(height: int):
    """A page of Debian's Chromium (driven by Playwright, never `playwright install`), 1400 px wide; the artefacts
    folder exists."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": height})
        finally:
            browser.close()


def shown_step(page) -> int:
    text = page.locator("[data-testid=stCaptionContainer]").filter(has_text=re.compile(r"step \d+/")).first.inner_text()
    return int(re.search(r"step (\d+)/", text).group(1))


def shown_evaluation(page) -> int:
    """The step of the low-light evaluation the Images page shows ("**Step N** (epoch ...)")."""
    text = page.get_by_text(re.compile(r"Step \d+ \(epoch")).first.inner_text()
    return int(re.search(r"Step (\d+)", text).group(1))


def advances(read, timeout: float = 60) -> tuple[int, int]:
    """``(first, last)`` values of ``read()``, polled every second until it grows or ``timeout`` s pass."""
    first = later = read()
    deadline = time.time() + timeout
    while time.time() < deadline and later <= first:
        time.sleep(1)
        later = read()
    return first, later


def test_pages_render_and_follow_training(live_app):
    with chromium_page(height=1500) as page:
        page.goto(f"{live_app}/scores")
        page.wait_for_selector("[data-testid=stPlotlyChart]", timeout=120_000)
        page.get_by_text(re.compile(r"pos/neg cosine similarity at step")).first.wait_for(timeout=60_000)
        first, later = advances(lambda: shown_step(page))
        assert later > first, "the step shown did not advance while training wrote"
        page.screenshot(path=str(ARTIFACTS / "scores.png"), full_page=True)

        page.goto(f"{live_app}/embeddings")
        page.get_by_text(re.compile(r"PCA at step \d+")).first.wait_for(timeout=60_000)
        assert page.locator("[data-testid=stPlotlyChart]").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "embeddings.png"), full_page=True)

        for name, path in PAGES.items():
            if name in ("scores", "embeddings"):
                continue
            page.goto(f"{live_app}/{path}")
            page.wait_for_selector("[data-testid=stMain]", timeout=60_000)
            page.wait_for_timeout(3000)
            assert page.locator("[data-testid=stException]").count() == 0, f"{name} page shows a traceback"
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert {f"{n}.png" for n in PAGES} <= {f.name for f in ARTIFACTS.glob("*.png")}


def test_images_page_follows_a_lowlight_run(live_lowlight_app):
    """Input / enhanced / reference with PSNR, the wipe, and the evaluation shown advancing as TML trains."""
    with chromium_page(height=1800) as page:
        page.goto(f"{live_lowlight_app}/images")
        page.get_by_text(re.compile(r"enhanced · PSNR")).first.wait_for(timeout=120_000)
        assert page.get_by_text("before / after").count() >= 1
        assert page.locator("[data-testid=stImage]").count() >= 4
        first, later = advances(lambda: shown_evaluation(page))
        assert later > first, "the evaluation shown did not advance while training wrote"
        assert page.locator("[data-testid=stException]").count() == 0
        page.screenshot(path=str(ARTIFACTS / "images_lowlight.png"), full_page=True)

        # upload a dark photo: it is enhanced with the run's checkpoint and offered for download
        dark = ARTIFACTS / "upload_dark.png"
        Image.fromarray((data.coffee()[:90, :120] * 0.15).astype(np.uint8)).save(dark)
        page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(dark))
        page.get_by_text("Download the enhanced image").first.wait_for(timeout=60_000)
        assert page.get_by_text("upload_dark.png: enhanced left, input right").count() == 1
        assert page.locator("[data-testid=stException]").count() == 0
        page.get_by_text("Download the enhanced image").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "images_lowlight_upload.png"))

        page.goto(f"{live_lowlight_app}/probes")  # says why it stays empty, offers no evaluation
        page.get_by_text(re.compile(r"apply to representation runs")).first.wait_for(timeout=60_000)
        assert page.get_by_role("button", name="Run workbench eval").count() == 0
        assert page.locator("[data-testid=stPlotlyChart]").count() == 0
        assert page.locator("[data-testid=stException]").count() == 0


def test_probes_page_draws_an_evaluated_run(evaluated_app):
    with chromium_page(height=2600) as page:
        page.goto(f"{evaluated_app}/probes")
        for title in ("accuracy against labels per class", "few-shot accuracy (95% interval)",
                      "singular values of the features"):
            page.get_by_text(title).first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        assert page.locator("[data-testid=stPlotlyChart]").count() >= 4
        assert page.get_by_role("button", name="Evaluate again").count() == 1
        assert page.locator("[data-testid=stException]").count() == 0, "the Probes page shows a traceback"
        page.screenshot(path=str(ARTIFACTS / "probes_evaluated.png"), full_page=True)
