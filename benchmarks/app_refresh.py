"""Dashboard cost against run size: a page's first render and a live refresh, for runs with 10k and 100k logged
steps (and the run store's size on disk); and UMAP of 5,000 points, first call against later ones.

Runs are synthetic (written in bulk) with the keys and shapes a real SimCLR run logs: 15 scalars per step, pos/neg
histograms over 100 bins every 10 steps. Pages are rendered with Streamlit's AppTest, which runs the page script
as the server does (without the browser's drawing time), each repetition in a new session with every cache
cleared (and then once more in another session of the same process, which may share what the first one read), in
a process of its own per tree and size; ``--browser`` also times a new browser tab's page until its
charts are drawn (Chromium via Playwright, against ``streamlit run``). ``--before REV`` times the app of git
revision REV (extracted with ``git archive``) on the same runs, side by side.

UMAP (``--umap``) runs in fresh processes: as umap-learn ships (numba compiles about a hundred functions in every
new process), with numba's on-disk cache turned on for all of them (``projection.cache_umap_compilation``: the
first process fills it, a later one loads it), and after ``warm_umap`` (what the Embeddings page starts in the
background).

    python benchmarks/app_refresh.py [--sizes 10000 100000] [--reps 3] [--before HEAD~1] [--browser] [--umap]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

KEYS = ["loss", "lr", "img_per_s", "pos_mean", "pos_var", "neg_mean", "neg_var", "pos_neg_gap", "align", "uniform",
        "collapse_std", "collapse_ref", "effective_rank", "knn_acc", "epoch"]
PAGES = ("views/curves.py", "views/scores.py", "views/runs.py")


def make_run(run_dir: Path, steps: int, points: int, seed: int = 0) -> None:
    from workbench.runs import RunWriter

    rng = np.random.default_rng(seed)
    w = RunWriter(run_dir, {"method": "simclr", "dataset": "digits", "total_steps": steps,
                            "config": {"tau": 0.2, "epochs": 100, "batch_size": 256, "proj_dim": 128},
                            "classes": list("0123456789")})
    con = w._con  # bulk load for the benchmark fixture; the trainer writes one transaction per step
    con.execute("BEGIN")
    rows = [(s, k, float(v)) for s in range(1, steps + 1) for k, v in zip(KEYS, rng.random(len(KEYS)))]
    rows = [(s, k, 128 ** -0.5 if k == "collapse_ref" else v) for s, k, v in rows]  # what a d = 128 run logs
    con.executemany("INSERT INTO scalars VALUES (?, ?, ?)", rows)
    con.executemany("INSERT OR REPLACE INTO latest VALUES (?, ?, ?)", [(k, s, v) for s, k, v in rows[-len(KEYS):]])
    hist = []
    for s in range(10, steps + 1, 10):
        for key in ("pos", "neg"):
            hist.append((s, key, -1.0, 1.0, rng.integers(0, 1000, 100).astype(np.int64).tobytes(), 0.1, 0.01))
    con.executemany("INSERT INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?)", hist)
    con.execute("COMMIT")
    labels = rng.integers(0, 10, points)
    centers = rng.normal(size=(10, 128))
    for epoch, step in enumerate(np.linspace(0, steps, 4).astype(int)):
        feats = centers[labels] * (0.3 + epoch) + rng.normal(size=(points, 128))
        w.add_arrays(int(step), "embeddings", {"epoch": epoch}, features=feats.astype(np.float16), labels=labels,
                     index=np.arange(points), kmeans=labels, knn_pred=labels)
    w.add_arrays(0, "probe_images", {}, images=rng.integers(0, 255, (points, 1, 8, 8), dtype=np.uint8),
                 labels=labels, index=np.arange(points))
    w.close("finished")


def store_mb(run_dir: Path) -> float:
    return sum(p.stat().st_size for p in run_dir.glob("run.db*")) / 2 ** 20


# ---------------------------------------------------------------------------------------------- pages (AppTest)
def time_pages(app_root: Path, runs_dir: Path, reps: int, pages=PAGES) -> dict[str, dict]:
    """In this process (run by :func:`pages_in_subprocess` with ``app_root`` first on the path): per page, the
    median seconds of a first render in a new session (caches cleared) and of a refresh after 10 more steps."""
    sys.path.insert(0, str(app_root / "app"))
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    from workbench.runs import RunWriter

    try:
        from workbench.ui.thin import _SHARED as shared  # summaries shared by a process's sessions (since 2026-12)
    except ImportError:
        shared = {}

    def session(page: str) -> tuple[AppTest, float]:
        at = AppTest.from_file(str(app_root / "app" / "Home.py"), default_timeout=600)
        at.session_state["runs_dir"] = str(runs_dir)
        at.run()
        t0 = time.perf_counter()
        at.switch_page(page).run()
        sec = time.perf_counter() - t0
        assert not at.exception, at.exception
        return at, sec

    out = {}
    for page in pages:
        firsts, refreshes, others, charts = [], [], [], 0
        for _ in range(reps):
            st.cache_data.clear()
            st.cache_resource.clear()
            shared.clear()
            at, sec = session(page)
            firsts.append(sec)
            charts = len(at.get("plotly_chart"))
            if page != "views/runs.py":
                assert charts > 0, f"{page} drew no chart"
            w = RunWriter(runs_dir / "run")
            last = int(w.get_meta("step") or 0)
            for s in range(last + 1, last + 11):
                w.log(s, {k: 0.5 for k in KEYS})
            w.close("finished")
            t0 = time.perf_counter()
            at.run()
            refreshes.append(time.perf_counter() - t0)
            others.append(session(page)[1])  # another session of the same process (a second tab)
        out[page] = {"first": statistics.median(firsts), "first_all": firsts, "other": statistics.median(others),
                     "refresh": statistics.median(refreshes), "charts": charts}
    return out


def pages_in_subprocess(app_root: Path, runs_dir: Path, reps: int) -> dict[str, dict]:
    env = dict(os.environ, PYTHONPATH=str(app_root), OMP_WAIT_POLICY="PASSIVE")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from app_refresh import time_pages; from pathlib "
            "import Path; print('RESULT', json.dumps(time_pages(Path(sys.argv[2]), Path(sys.argv[3]), "
            "int(sys.argv[4]))))")
    p = subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks"), str(app_root), str(runs_dir),
                        str(reps)], env=env, capture_output=True, text=True, cwd=app_root)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"page timing failed for {app_root}:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ---------------------------------------------------------------------------------------------- pages (browser)
def time_browser(app_root: Path, runs_dir: Path, charts: dict[str, int], reps: int) -> dict[str, tuple]:
    """Per page, median seconds until all its charts are drawn, with ``streamlit run`` of ``app_root``: from a
    click on the page in the sidebar of an open tab (which has loaded plotly.js once; the page's script runs
    afresh), and from opening the page in a new tab (a new session; loading Streamlit's frontend and plotly.js
    included, seconds of JavaScript that do not depend on the run)."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(app_root), OMP_WAIT_POLICY="PASSIVE")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app_root / "app" / "Home.py"),
                               "--server.port", str(port), "--server.headless", "true",
                               "--browser.gatherUsageStats", "false", "--", "--runs-dir", str(runs_dir)],
                              env=env, cwd=app_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    out = {}
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        chromium = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])

            drawn = ("() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(e => e.querySelector("
                     "'.main-svg')).length >= {n}")

            def click(page, path: str, n: int) -> float:
                t0 = time.perf_counter()
                page.locator(f"[data-testid=stSidebarNav] a[href='{url}/{path}']").click()
                if n:
                    page.wait_for_function(drawn.format(n=n), timeout=120_000, polling=20)
                else:
                    page.wait_for_function("() => !document.querySelector('.js-plotly-plot')", timeout=120_000)
                return time.perf_counter() - t0

            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.goto(url)
            tab.wait_for_selector("[data-testid=stSidebarNav] a", timeout=120_000)
            for page, n in charts.items():  # loads the page modules on the server, plotly.js in the tab
                click(tab, page, n)
            for page, n in charts.items():
                clicks, tabs = [], []
                for _ in range(reps):
                    click(tab, "", 0)  # from the Runs page (no charts) to the page: a new render of its charts
                    tab.wait_for_timeout(300)
                    clicks.append(click(tab, page, n))
                    fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    fresh.goto(f"{url}/{page}")
                    fresh.wait_for_function(drawn.format(n=n), timeout=120_000, polling=20)
                    tabs.append(time.perf_counter() - t0)
                    fresh.close()
                out[page] = (statistics.median(clicks), statistics.median(tabs))
            loads = []
            for _ in range(reps):  # the part of a new tab that is Streamlit's frontend: the Runs page, no chart
                fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                fresh.goto(url)
                fresh.wait_for_selector("[data-testid=stDataFrame]", timeout=120_000)
                loads.append(time.perf_counter() - t0)
                fresh.close()
            out["_frontend"] = (statistics.median(loads), statistics.median(loads))
            browser.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    return out


# ---------------------------------------------------------------------------------------------- UMAP
_UMAP_CODE = """
import json, sys, threading, time
t0 = time.perf_counter()
import numpy as np
from workbench.diagnostics import projection
import umap
out = {"import": time.perf_counter() - t0}
if sys.argv[2] == "warm":
    t0 = time.perf_counter(); projection.warm_umap(); out["warm"] = time.perf_counter() - t0
rng = np.random.default_rng(1)
labels = rng.integers(0, 10, int(sys.argv[1]))
feats = rng.normal(size=(10, 128))[labels] + rng.normal(size=(len(labels), 128))
t0 = time.perf_counter(); first = projection.umap_2d(feats); out["first"] = time.perf_counter() - t0
t0 = time.perf_counter(); projection.umap_2d(feats + 0.05 * rng.normal(size=feats.shape), previous=first)
out["second"] = time.perf_counter() - t0
t0 = time.perf_counter(); projection.umap_2d(feats); out["third"] = time.perf_counter() - t0
print("RESULT", json.dumps(out))
"""


def umap_in_fresh_process(points: int, env: dict, warm: bool = False) -> dict:
    p = subprocess.run([sys.executable, "-c", _UMAP_CODE, str(points), "warm" if warm else "-"],
                       env=dict(os.environ, **env), capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"UMAP timing failed:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def umap_table(points: int, tmp: Path) -> None:
    """Every process here uses one numba cache folder (``NUMBA_CACHE_DIR``), first filled as umap-learn ships it
    after one use (pynndescent caches most of its functions itself, umap-learn one), so that the rows differ only
    by what ``cache_umap_compilation`` adds."""
    cache = {"NUMBA_CACHE_DIR": str(tmp / "numba-cache")}
    shipped = dict(cache, WORKBENCH_NUMBA_CACHE="0")
    umap_in_fresh_process(points, shipped)  # fills the shipped caches (what any earlier use on the machine did)
    rows = [("as umap-learn ships, any process", shipped, False),
            ("compile cache on, the first process on the machine", cache, False),
            ("compile cache on, a later process", cache, False),
            ("compile cache on, a later process, after warm_umap() (the Embeddings page starts it)", cache, True)]
    print(f"| UMAP of {points:,} points, fresh process | import umap (s) | warm_umap (s) | first call (s) | "
          "next epoch, aligned (s) | again (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, env, warm in rows:
        r = umap_in_fresh_process(points, env, warm)
        warm_s = f"{r['warm']:.1f}" if "warm" in r else "-"
        print(f"| {what} | {r['import']:.1f} | {warm_s} | {r['first']:.1f} | {r['second']:.1f} | {r['third']:.1f} |",
              flush=True)


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--before", metavar="REV", help="also time the app of this git revision, side by side")
    ap.add_argument("--browser", action="store_true", help="also time the pages in Chromium (Playwright)")
    ap.add_argument("--umap", action="store_true", help="also time UMAP in fresh processes (minutes)")
    ap.add_argument("--no-pages", action="store_true", help="skip the page timings")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wb-app-bench-"))
    try:
        trees = {"now": ROOT}
        if args.before:
            before = tmp / "before"
            before.mkdir()
            archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
            trees = {args.before: before, "now": ROOT}
        if not args.no_pages:
            print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; medians of "
                  f"{args.reps}", flush=True)
            head = " | ".join(f"{t}: first render (s) | {t}: refresh (s) | {t}: another session (s)" for t in trees)
            head += (" | " + " | ".join(f"{t}: browser, sidebar click (s) | {t}: browser, new tab (s)" for t in trees)
                     if args.browser else "")
            print(f"| logged steps | run store (MB) | page | {head} |")
            print("|---:|---:|---|" + "---:|" * (3 * len(trees) + (2 * len(trees) if args.browser else 0)))
            for n in args.sizes:
                d = tmp / f"runs-{n}"
                make_run(d / "run", n, points=1000)
                mb = store_mb(d / "run")
                res = {t: pages_in_subprocess(root, d, args.reps) for t, root in trees.items()}
                web = {}
                if args.browser:
                    charts = {p.split("/")[1][:-3]: r["charts"] for p, r in res["now"].items() if r["charts"]}
                    web = {t: time_browser(root, d, charts, args.reps) for t, root in trees.items()}
                for page in PAGES:
                    cells = " | ".join(f"{res[t][page]['first']:.3f} | {res[t][page]['refresh']:.3f} | "
                                       f"{res[t][page]['other']:.3f}" for t in trees)
                    key = page.split("/")[1][:-3]
                    if args.browser:
                        cells += " | " + " | ".join(f"{web[t][key][0]:.2f} | {web[t][key][1]:.2f}" if key in web[t]
                                                    else "- | -" for t in trees)
                    print(f"| {n:,} | {mb:.1f} | {key} | {cells} |", flush=True)
                if args.browser:
                    empty = " | ".join(["-"] * 3 * len(trees))
                    front = " | ".join(f"- | {web[t]['_frontend'][1]:.2f}" for t in trees)
                    print(f"| {n:,} | {mb:.1f} | Runs page in a new tab (Streamlit's frontend alone) | {empty} | "
                          f"{front} |", flush=True)
            print()
        if args.umap:
            umap_table(args.points, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
