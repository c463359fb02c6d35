"""Dashboard cost against run size: a page's first render and a live refresh, for runs with 1k, 10k and 100k
logged steps; and the embeddings page's projections for 5,000 points (PCA, UMAP first and cached).

Runs are synthetic (written in bulk) with the keys and shapes a real SimCLR run logs: 15 scalars per step, pos/neg
histograms over 100 bins every 10 steps. Pages are rendered with Streamlit's AppTest, which runs the page script
as the server does (without the browser's drawing time).

    python benchmarks/app_refresh.py [--sizes 1000 10000 100000] [--points 5000]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

KEYS = ["loss", "lr", "img_per_s", "pos_mean", "pos_var", "neg_mean", "neg_var", "pos_neg_gap", "align", "uniform",
        "collapse_std", "collapse_ref", "effective_rank", "knn_acc", "epoch"]


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


def time_page(runs_dir: Path, page: str, reps: int = 3) -> tuple[float, float]:
    """Median seconds of (first render of the page, a refresh after 10 more steps were written)."""
    from streamlit.testing.v1 import AppTest
    from workbench.runs import RunWriter

    firsts, refreshes = [], []
    for rep in range(reps):
        at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=600)
        at.session_state["runs_dir"] = str(runs_dir)
        at.run()
        t0 = time.perf_counter()
        at.switch_page(page).run()
        firsts.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
        if page != "views/runs.py":
            assert len(at.get("plotly_chart")) > 0, f"{page} drew no chart"
        w = RunWriter(runs_dir / "run")
        last = int(w.get_meta("step") or 0)
        for s in range(last + 1, last + 11):
            w.log(s, {k: 0.5 for k in KEYS})
        w.close("finished")
        t0 = time.perf_counter()
        at.run()
        refreshes.append(time.perf_counter() - t0)
    return statistics.median(firsts), statistics.median(refreshes)


def time_projections(points: int) -> list[tuple[str, float]]:
    from workbench.diagnostics.projection import pca_2d, umap_2d

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, points)
    feats = rng.normal(size=(10, 128))[labels] + rng.normal(size=(points, 128))
    out = []
    t0 = time.perf_counter()
    pca_2d(feats)
    out.append((f"PCA, {points} points", time.perf_counter() - t0))
    t0 = time.perf_counter()
    first = umap_2d(feats)
    out.append((f"UMAP, {points} points, first in process (numba compile)", time.perf_counter() - t0))
    t0 = time.perf_counter()
    umap_2d(feats + 0.05 * rng.normal(size=feats.shape), previous=first)
    out.append((f"UMAP, {points} points, next epoch (warm, aligned)", time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wb-app-bench-"))
    try:
        print("| logged steps | page | first render (s) | live refresh (s) |")
        print("|---:|---|---:|---:|")
        for n in args.sizes:
            d = tmp / f"runs-{n}"
            make_run(d / "run", n, points=1000)
            for page in ("views/curves.py", "views/scores.py", "views/runs.py"):
                first, refresh = time_page(d, page, args.reps)
                print(f"| {n:,} | {page.split('/')[1][:-3]} | {first:.3f} | {refresh:.3f} |", flush=True)
        print()
        d = tmp / "runs-emb"
        make_run(d / "run", 1000, points=args.points)
        first, refresh = time_page(d, "views/embeddings.py", reps=1)
        print("| embeddings page / projection | seconds |")
        print("|---|---:|")
        print(f"| embeddings page (PCA), {args.points} points, first render | {first:.3f} |")
        print(f"| embeddings page (PCA), {args.points} points, refresh (cached layout) | {refresh:.3f} |")
        for what, sec in time_projections(args.points):
            print(f"| {what} | {sec:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
