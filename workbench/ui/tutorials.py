"""``make tutorials``: run every tutorial notebook in full mode, write each executed as HTML and a table of each
notebook's time and its finding's numbers.

    python -m workbench.ui.tutorials [--out build/tutorials] [--only 02,07] [NOTEBOOK_DIR]

Each notebook's last cell calls :func:`workbench.ui.tutorial_charts.check_finding`, which writes its numbers to the
JSON file named by ``$WORKBENCH_TUTORIAL_REPORT``; this runner sets that variable per notebook, runs
``jupyter nbconvert --execute`` (errors are kept, not fatal), exports the executed notebook as HTML with its
plotly figures drawable offline (:func:`add_static_plotly`), times it and collects the
findings into ``index.md`` and ``index.html`` beside the HTML files (with ``--only``, the rows of the other
notebooks stay from earlier runs). The exit status is 1 when a notebook run now failed or its finding did not hold.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from workbench.ui.tutorial_charts import REPORT_ENV

ROOT = Path(__file__).resolve().parents[2]


PLOTLY_JSON = "application/vnd.plotly.v1+json"


def add_static_plotly(nb) -> int:
    """Give every plotly output of an executed notebook an HTML view (plotly.js inline once, then reused), so the
    exported page draws its figures offline: a kernel without a front end emits only plotly's JSON, which the HTML
    exporter cannot draw. Returns the number of figures. (Live ``FigureWidget`` outputs need a running kernel;
    the tutorials show their final state as a plain figure after each live cell.)"""
    import plotly.io as pio

    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_JSON in data and "text/html" not in data:
                data["text/html"] = pio.to_html(data[PLOTLY_JSON], include_plotlyjs=n == 0, full_html=False,
                                                validate=False)
                n += 1
    return n


def run_notebook(notebook: Path, out: Path, timeout: int = 1800, smoke: bool = False) -> dict:
    """Execute ``notebook`` (full mode unless ``smoke``) into ``out/NAME.html``; its time and its finding (or why
    there is none)."""
    import nbformat
    from nbconvert import HTMLExporter

    report = out / f"{notebook.stem}.json"
    report.unlink(missing_ok=True)
    executed = out / f"{notebook.stem}.executed.ipynb"
    env = {**os.environ, REPORT_ENV: str(report.resolve()), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("CI", None)
    if smoke:
        env["WORKBENCH_SMOKE"] = "1"
    else:
        env.pop("WORKBENCH_SMOKE", None)
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--allow-errors",
           f"--ExecutePreprocessor.timeout={timeout}", "--output-dir", str(out.resolve()), "--output",
           executed.name, str(notebook)]
    # nbconvert's (and its kernel's) output goes to a file, which keeps the whole story of a failed run. (The stalls
    # once blamed on captured pipes came from a cell drawing into an ipywidgets Output while it ran: see
    # workbench.ui.notebook.redraw_on_change.)
    log = out / f"{notebook.stem}.log"
    t0 = time.perf_counter()
    with open(log, "w") as sink:
        proc = subprocess.run(cmd, env=env, cwd=notebook.parent, stdout=sink, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    minutes = (time.perf_counter() - t0) / 60
    row = {"notebook": notebook.stem, "minutes": round(minutes, 2), "html": f"{notebook.stem}.html"}
    if proc.returncode != 0 or not executed.exists():
        lines = log.read_text(errors="replace").strip().splitlines()
        row.update(status="nbconvert failed", detail=(lines or [""])[-1] + f" (whole log: {log})")
        return row
    nb = nbformat.read(executed, as_version=4)
    row["figures"] = add_static_plotly(nb)
    row["errors"] = sum(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    body, _ = HTMLExporter().from_notebook_node(nb)
    (out / row["html"]).write_text(body, encoding="utf-8")
    if report.exists():
        found = json.loads(report.read_text())
        row.update(status="finding holds" if found["holds"] else "finding does NOT hold", claim=found["claim"],
                   numbers=found["numbers"])
    elif row["errors"]:
        row.update(status="no finding recorded (a cell failed: see the HTML)")
    else:
        row.update(status="ran, no finding checked (the notebook has no check cell)")
    return row


def _numbers(numbers: dict, limit: int = 4) -> str:
    items = list(numbers.items())[:limit]
    return "; ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in items)


def write_index(rows: list[dict], out: Path) -> str:
    """The table as Markdown (returned, and written to ``index.md``) and HTML (``index.html``)."""
    lines = ["| notebook | minutes | status | finding | numbers |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['notebook']} | {r['minutes']:.1f} | {r['status']} | {r.get('claim', '')} | "
                     f"{_numbers(r.get('numbers', {}))} |")
    md = "\n".join(lines)
    (out / "index.md").write_text(md + "\n")
    cells = "".join(
        f"<tr><td><a href='{html.escape(r['html'])}'>{html.escape(r['notebook'])}</a></td><td>{r['minutes']:.1f}</td>"
        f"<td>{html.escape(r['status'])}</td><td>{html.escape(r.get('claim', ''))}</td>"
        f"<td>{html.escape(_numbers(r.get('numbers', {}), limit=50))}</td></tr>" for r in rows)
    (out / "index.html").write_text(
        "<html><head><meta charset='utf-8'><title>workbench tutorials</title></head><body>"
        "<h1>Tutorials, executed in full mode</h1><table border=1 cellpadding=4><tr><th>notebook</th><th>minutes</th>"
        f"<th>status</th><th>finding</th><th>numbers</th></tr>{cells}</table></body></html>")
    (out / "index.json").write_text(json.dumps(rows, indent=1))
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="?", default=str(ROOT / "notebooks"))
    p.add_argument("--out", default=str(ROOT / "build" / "tutorials"))
    p.add_argument("--only", default="", help="comma-separated notebook numbers or names (default: all)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    p.add_argument("--smoke", action="store_true", help="run in smoke mode (seconds; checks the pipeline only)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    books = [nb for nb in sorted(Path(args.notebooks).glob("[0-9]*.ipynb"))
             if not wanted or any(nb.stem == w or nb.stem.startswith(w + "_") for w in wanted)]
    rows = []
    for nb in books:
        print(f"running {nb.name} ...", flush=True)
        rows.append(run_notebook(nb, out, args.timeout, args.smoke))
        print(f"  {rows[-1]['minutes']:.1f} min: {rows[-1]['status']}", flush=True)
    ok = all(r["status"] == "finding holds" for r in rows)  # of the notebooks run now
    previous = out / "index.json"  # rows of notebooks not run this time stay (``--only`` reruns a few)
    if previous.exists() and wanted:
        ran = {r["notebook"] for r in rows}
        existing = {nb.stem for nb in Path(args.notebooks).glob("[0-9]*.ipynb")}
        kept = [r for r in json.loads(previous.read_text()) if r["notebook"] not in ran and r["notebook"] in existing]
        rows = sorted(kept + rows, key=lambda r: r["notebook"])
    print(write_index(rows, out))
    print(f"\nHTML in {out.resolve()} (index.html)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
