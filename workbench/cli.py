"""Command line: ``workbench train | runs | app | demo | enhance | eval | bench | datasets``."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from workbench.config import ConfigError

APP_ENTRY = Path(__file__).resolve().parent.parent / "app" / "Home.py"
UPLOAD_LIMIT_MB = 50  # the app's upload box (Streamlit's default is 200 MB); enhancement itself runs in tiles
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One ``--option`` per option of any method, grouped by the methods it applies to. Help text, type, default
    and choices come from the options dataclasses (common, task and method options): nothing is written here."""
    from workbench.engine.config import option_specs
    from workbench.methods import METHODS

    entries: dict[str, list] = {}
    for method in METHODS:
        for s in option_specs(method):
            entries.setdefault(s.name, []).append((method, s))
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, found in entries.items():
        methods = [m for m, _ in found]
        title = "options of every run" if len(methods) == len(METHODS) else f"options of {', '.join(methods)}"
        group = groups.get(title) or groups.setdefault(title, p.add_argument_group(title))
        s = found[0][1]
        bounded = s.choices is None and s.type in (int, float) and any(
            v is not None for v in (s.ge, s.gt, s.le, s.lt))
        allowed = f"; allowed: {s.allowed()}" if bounded or s.note else ""
        defaults = {m: spec.default for m, spec in found}
        if len(set(map(repr, defaults.values()))) == 1:
            default = "" if s.default is None else f" (default {str(s.default).lower() if s.type is bool else s.default})"
        else:  # the most common value, then the methods that differ (e.g. zerodce's own optimiser)
            usual = max(set(map(repr, defaults.values())), key=list(map(repr, defaults.values())).count)
            odd = ", ".join(f"{m}: {d}" for m, d in defaults.items() if repr(d) != usual)
            common = next(d for d in defaults.values() if repr(d) == usual)
            default = f" (default {'automatic' if common is None else common}; {odd})"
        text = (s.help + default + allowed).replace("%", "%%")  # argparse formats help with %
        if s.type is bool and s.default is False:
            group.add_argument(s.flag, action="store_true", default=None, help=s.help.replace("%", "%%"))
        elif s.type is bool:
            group.add_argument(s.flag, type=_bool, default=None, metavar="BOOL", help=text)
        else:
            choices = list(METHODS) if name == "method" else s.choices
            group.add_argument(s.flag, type=s.type, default=None, choices=choices, help=text)


def _config_from_args(args: argparse.Namespace):
    from workbench.engine.config import RESUMABLE, TrainConfig, owners

    given = {name: getattr(args, name) for name in owners() if getattr(args, name, None) is not None}
    if given.get("resume"):
        if not given.get("run_name"):
            raise ConfigError("resume: name the run to continue with --run-name")
        from workbench.runs import RunReader

        run_dir = Path(given.get("runs_dir", "runs")) / given["run_name"]
        try:
            with RunReader(run_dir) as r:
                stored = TrainConfig.from_dict(r.config).to_dict()
        except Exception as e:
            raise ConfigError(f"resume: cannot read run {run_dir}: {e}") from e
        changed = {k for k, v in given.items() if k not in RESUMABLE and stored.get(k) != v}
        if changed:
            raise ConfigError(f"resume: {sorted(changed)} cannot change when resuming; only {sorted(RESUMABLE)} can")
        return TrainConfig(**{**stored, **given})
    return TrainConfig(**given)


def _stop_on_sigterm(stop_event) -> None:
    """SIGTERM (``kill``, a closing terminal, ``workbench demo`` shutting down) asks the training loop to stop
    before its next step: it keeps its checkpoint and marks the run stopped. Setting a flag, not raising, means the
    signal can never land in the middle of writing the run store."""

    def request_stop(signum, frame):
        stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell without job control
        signal.signal(signal.SIGINT, request_stop)


def cmd_train(args) -> int:
    from workbench.data.registry import DatasetUnavailable
    from workbench.engine import distributed
    from workbench.engine.trainer import NonFiniteLoss, Trainer

    try:
        cfg = _config_from_args(args)
        trainer = Trainer(cfg)
    except (ConfigError, DatasetUnavailable) as e:
        print(f"workbench train: {e}", file=sys.stderr)
        return 2
    _stop_on_sigterm(trainer.stop_event)
    model = "".join(f", {value} {key}" for key, value in trainer.parts.model_info.items())
    print(f"run: {trainer.run_dir}  ({cfg.method} on {cfg.dataset}{model}, "
          f"device {trainer.device}, {cfg.epochs} epochs x {trainer.steps_per_epoch} steps)", file=sys.stderr)
    clean = False
    try:
        result = trainer.fit()
        clean = True
    except NonFiniteLoss as e:
        print(f"workbench train: {e}", file=sys.stderr)
        return 3
    except ConfigError as e:  # found once training starts (e.g. a checkpoint that cannot be resumed)
        print(f"workbench train: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown(clean)
    m = result.metrics
    print(f"{result.status}: step {result.step}, epoch {result.epochs_done}, loss {m.get('loss', float('nan')):.4f}, "
          f"{cfg.task.summary(m)}  ->  {result.run_dir}")
    return 0 if result.status == "finished" else 130


def runs_dir_is_a_file(args) -> bool:
    """``--runs-dir`` names a file: say so (the listing and the dashboard would show an empty folder)."""
    if Path(args.runs_dir).exists() and not Path(args.runs_dir).is_dir():
        print(f"workbench {args.command}: --runs-dir {args.runs_dir} is a file, not a folder of runs",
              file=sys.stderr)
        return True
    return False


def cmd_runs(args) -> int:
    from workbench.runs import list_runs

    if runs_dir_is_a_file(args):
        return 2
    if args.delete:
        return _delete_run(args)
    df = list_runs(args.runs_dir)
    if df.empty:
        print(f"no runs under {args.runs_dir}/ yet: start one with `workbench train`")
        return 0
    scores = ["knn_acc"] + (["psnr"] if df["psnr"].notna().any() else [])
    view = df[["name", "method", "dataset", "status", "epoch", "epochs", "step", "loss", *scores]].copy()
    view["epoch"] = [f"{e}/{n}" if e == e and e is not None else "" for e, n in zip(df["epoch"], df["epochs"])]
    for col in ("loss", *scores):  # a metric a run has not logged (no labels, not evaluated yet) shows as "-"
        view[col] = [f"{v:.4f}" if v is not None and v == v else "-" for v in view[col]]
    print(view.drop(columns=["epochs"]).to_string(index=False))
    for _, r in df[df["problem"].astype(bool) | df["error"].fillna("").astype(bool)].iterrows():
        print(f"\n{r['name']}: {r['problem'] or r['error']}")
    return 0


def _delete_run(args) -> int:
    from workbench.config import check_run_name
    from workbench.runs.store import RunStoreError, delete_run

    try:
        check_run_name(args.delete)
    except ConfigError as e:
        print(f"workbench runs: {e}", file=sys.stderr)
        return 2
    run = Path(args.runs_dir) / args.delete
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"workbench runs: deleting {run} needs a confirmation: add --yes", file=sys.stderr)
            return 2
        if input(f"Delete the run {run} with its checkpoints and artifacts? [y/N] ").strip().lower() not in ("y",
                                                                                                             "yes"):
            print("not deleted", file=sys.stderr)
            return 1
    try:
        delete_run(run)
    except RunStoreError as e:
        print(f"workbench runs: {e}", file=sys.stderr)
        return 2
    print(f"deleted {run}")
    return 0


def app_command(runs_dir: str, address: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP_ENTRY), "--server.address", address,
            "--server.port", str(port), "--server.headless", str(headless).lower(),
            "--browser.gatherUsageStats", "false", "--server.maxUploadSize", str(UPLOAD_LIMIT_MB),
            "--", "--runs-dir", str(runs_dir)]


def cmd_app(args) -> int:
    if runs_dir_is_a_file(args):
        return 2
    if args.address not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.address}: anyone who can reach this address can see your runs and "
              f"start training", file=sys.stderr)
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    cmd = app_command(args.runs_dir, args.address, args.port, True)
    if hasattr(os, "execve") and os.name == "posix":
        # become the Streamlit server: a SIGTERM or Ctrl-C to `workbench app` then reaches it, and no child is
        # left serving the port after this process is gone
        os.execve(cmd[0], cmd, env)
    return subprocess.call(cmd, env=env)


def cmd_demo(args) -> int:
    """``make run``: the dashboard and a live SimCLR run on the embedded data; Ctrl-C stops both."""
    from workbench.data.registry import DatasetUnavailable
    from workbench.engine.config import TrainConfig

    if runs_dir_is_a_file(args):
        return 2
    try:  # the run's settings and data are checked before the dashboard starts, not after
        cfg = TrainConfig(dataset=args.dataset, epochs=args.epochs, runs_dir=args.runs_dir)
        cfg.task.load_data(cfg, probe=True)
    except (ConfigError, DatasetUnavailable) as e:
        print(f"workbench demo: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a SIGTERM to the demo shuts both down like Ctrl-C
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # two processes on few cores: avoid spin-wait slowdowns
    app = subprocess.Popen(app_command(args.runs_dir, args.address, args.port, True), env=env)
    print(f"\n  Dashboard: http://{args.address}:{args.port}  (Ctrl-C stops the app and the training run)\n",
          file=sys.stderr)
    train = None
    try:
        time.sleep(2)
        if app.poll() is not None:
            print(f"workbench demo: the dashboard did not start (exit code {app.returncode}); is port {args.port} "
                  f"taken? Try --port.", file=sys.stderr)
            return 1
        train_cmd = [sys.executable, "-m", "workbench", "train", "--dataset", args.dataset,
                     "--epochs", str(args.epochs), "--runs-dir", args.runs_dir]
        train = subprocess.Popen(train_cmd, env=env)
        rc = train.wait()
        what = "finished" if rc == 0 else f"ended with exit code {rc}"
        print(f"\n  Training {what}; the dashboard keeps running (Ctrl-C to quit).\n", file=sys.stderr)
        app.wait()
    except KeyboardInterrupt:
        pass
    finally:
        # Ctrl-C in a terminal reaches the whole process group: give both a moment to stop on their own (the
        # trainer writes "stopped" and keeps its checkpoint), then terminate what is left.
        for p in (train, app):
            if p is None:
                continue
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


def cmd_enhance(args) -> int:
    from workbench.data.imageio import ImageReadError
    from workbench.lowlight.enhance import enhance_files, load_enhancer

    run = _resolve_run(args.run, args.runs_dir)
    try:
        method = load_enhancer(run, args.device)
        written, failed = enhance_files(method, args.source, args.out, max_pixels=args.max_pixels)
    except (ConfigError, ImageReadError, FileNotFoundError) as e:
        print(f"workbench enhance: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    for path, why in failed:
        print(f"workbench enhance: skipped {path}: {why}", file=sys.stderr)
    print(f"{len(written)} enhanced into {args.out}/, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def _resolve_run(run: str, runs_dir: str) -> Path:
    """A run directory, or a run name under ``runs_dir``."""
    path = Path(run)
    return path if path.exists() or path.is_absolute() else Path(runs_dir) / run


def cmd_eval(args) -> int:
    """``workbench eval``: holds the run's evaluation lock while it runs (inherited from the app that started it,
    or taken here), so no two evaluations of a run overlap and the app knows one is running."""
    from workbench.engine.launch import EVAL_LOCK_FD, EVAL_RC, EvalRunning, hold_eval_lock, mark_eval_lock
    from workbench.runs.store import atomic_write_bytes

    run = _resolve_run(args.run, args.runs_dir)
    inherited = os.environ.pop(EVAL_LOCK_FD, None)  # started by the app, which took the lock for this process
    try:
        if inherited is not None:
            lock = int(inherited)
            mark_eval_lock(lock)
        else:
            lock = hold_eval_lock(run) if run.is_dir() else None
    except EvalRunning as e:
        print(f"workbench eval: {e}", file=sys.stderr)
        return 2
    rc = 1
    try:
        rc = _evaluate_and_report(args, run)
        return rc
    finally:
        if inherited is not None:  # the exit status is there before the lock stops saying "running"
            atomic_write_bytes(run / EVAL_RC, str(rc).encode())
        if lock is not None:
            os.close(lock)


def _evaluate_and_report(args, run: Path) -> int:
    from workbench.data.registry import DatasetUnavailable
    from workbench.engine.evaluate import evaluate_run
    from workbench.runs.store import RunStoreError

    try:
        result = evaluate_run(run, args.probes, args.checkpoint, args.device, draws=args.draws,
                              episodes=args.episodes, seed=args.seed, write=not args.no_write)
    except (ConfigError, DatasetUnavailable, RunStoreError) as e:
        print(f"workbench eval: {e}", file=sys.stderr)
        return 2
    table = result.table.drop(columns=["key"]).copy()
    table["labels_per_class"] = [("all" if n != n or n is None else str(int(n))) if p != "fewshot 5-way"
                                 else f"{int(n)}-shot" for p, n in zip(table["probe"], table["labels_per_class"])]
    table["block"] = ["" if b != b or b is None else str(int(b)) for b in table["block"]]
    print(table.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4f}"))
    if "rankme" in result.scalars:
        print(f"\nRankMe {result.scalars['rankme']:.1f} of at most {min(int(result.scalars['rankme_n']), len(result.spectrum))} "
              f"(on {int(result.scalars['rankme_n'])} training features)")
    took = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    where = f"written to {run} at step {result.step}" if not args.no_write else "not written (--no-write)"
    print(f"epoch {result.epoch}, step {result.step}: {where}; {took}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    if not BENCHMARKS.exists():
        print(f"workbench bench: {BENCHMARKS} not found: the benchmarks ship with the source checkout, not the package",
              file=sys.stderr)
        return 2
    extra = (["--full"] if args.full else []) + (["--only", args.only] if args.only else [])
    return subprocess.call([sys.executable, str(BENCHMARKS), *extra])


def cmd_datasets(args) -> int:
    from workbench.data.registry import describe_datasets

    print(describe_datasets())
    return 0


def port_number(text: str) -> int:
    """``--port``: a TCP port the dashboard can listen on, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: give an integer from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number: give an integer from 1 to 65535")
    return port


def positive_int(text: str) -> int:
    """An integer >= 1 (``--max-pixels``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: an integer >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="The contrastive-learning workbench.",
                                epilog="--debug anywhere on the line: show the full traceback of an error")
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("train", help="train a self-supervised model (every option has a default)")
    _add_config_options(t)
    t.set_defaults(func=cmd_train)
    r = sub.add_parser("runs", help="list runs with status and last metrics, or delete one")
    r.add_argument("--runs-dir", default="runs")
    r.add_argument("--delete", metavar="NAME", help="delete the run NAME (asks first; refused while it trains)")
    r.add_argument("--yes", action="store_true", help="with --delete: do not ask")
    r.set_defaults(func=cmd_runs)
    for name, func, helptext in (("app", cmd_app, "start the dashboard"),
                                 ("demo", cmd_demo, "the dashboard plus a live training run (make run)")):
        a = sub.add_parser(name, help=helptext)
        a.add_argument("--runs-dir", default="runs")
        a.add_argument("--address", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
        a.add_argument("--port", type=port_number, default=8501, help="port to serve on, 1-65535 (default 8501)")
        if name == "demo":
            a.add_argument("--dataset", default="digits")
            a.add_argument("--epochs", type=int, default=200)
        a.set_defaults(func=func)
    e = sub.add_parser("enhance", help="enhance low-light images with a trained tml or zerodce run")
    e.add_argument("source", metavar="IMAGE_OR_FOLDER")
    e.add_argument("--run", required=True, help="the run directory, or a run name under --runs-dir")
    e.add_argument("--out", required=True, help="folder for the enhanced images (<name>_enhanced.png)")
    e.add_argument("--runs-dir", default="runs")
    e.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto")
    e.add_argument("--max-pixels", type=positive_int, default=50_000_000,
                   help="refuse larger images (decompression-bomb guard; default 50 megapixels)")
    e.set_defaults(func=cmd_enhance)
    from workbench.engine.evaluate import PROBES

    v = sub.add_parser("eval", help="the papers' probes on a representation run: linear, naive Bayes, label budgets, "
                                    "few-shot, block-wise, spectrum (written into the run)")
    v.add_argument("run", metavar="RUN", help="the run directory, or a run name under --runs-dir")
    v.add_argument("--runs-dir", default="runs")
    v.add_argument("--checkpoint", help="weights to evaluate (default: the run's last checkpoint)")
    v.add_argument("--probes", default="all", help=f"comma-separated, of: {','.join(PROBES)} (default: all)")
    v.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto")
    v.add_argument("--draws", type=int, default=5, help="seeded label subsets per label budget (default 5)")
    v.add_argument("--episodes", type=int, default=600, help="few-shot episodes per setting (default 600)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--no-write", action="store_true", help="print the table only; leave the run's store alone")
    v.set_defaults(func=cmd_eval)
    b = sub.add_parser("bench", help="run the benchmarks (benchmarks/run_all.py) and print their tables")
    b.add_argument("--only", help="comma-separated: augment,simclr,diagnostics,app,zoo,lowlight,probes (default: all)")
    b.add_argument("--full", action="store_true", help="each script's own, longer settings")
    b.set_defaults(func=cmd_bench)
    d = sub.add_parser("datasets", help="list the known datasets and how to get each")
    d.set_defaults(func=cmd_datasets)
    return p


def main(argv: list[str] | None = None) -> int:
    """Every failure ends in one line on stderr and a nonzero exit; ``--debug`` (anywhere) shows the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if debug:
            raise
        what = str(e).splitlines()[0] if str(e) else ""
        print(f"workbench {args.command}: {type(e).__name__}: {what}\n(run it again with --debug to see the "
              "traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
