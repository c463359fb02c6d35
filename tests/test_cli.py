"""The command line end to end on digits, including a crash (SIGKILL) and --resume."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from workbench.runs import RunReader


def wb(*args, **kw):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=300,
                          **kw)


def test_train_then_list(runs_dir):
    p = wb("train", "--epochs", "2", "--batch-size", "128", "--runs-dir", str(runs_dir), "--run-name", "cli",
           "--progress", "false", "--probe-size", "100")
    assert p.returncode == 0, p.stderr
    assert "finished: step 22, epoch 2" in p.stdout and "kNN accuracy" in p.stdout
    p = wb("runs", "--runs-dir", str(runs_dir))
    assert p.returncode == 0
    line = [l for l in p.stdout.splitlines() if l.strip().startswith("cli")][0]
    assert "simclr" in line and "digits" in line and "finished" in line and "2/2" in line


def test_errors_exit_2_with_a_message(runs_dir):
    p = wb("train", "--dataset", "nope", "--runs-dir", str(runs_dir))
    assert p.returncode == 2 and "Known datasets" in p.stderr and "digits" in p.stderr
    p = wb("train", "--tau", "0", "--runs-dir", str(runs_dir))
    assert p.returncode == 2 and "tau=0.0" in p.stderr
    p = wb("train", "--resume", "--runs-dir", str(runs_dir))
    assert p.returncode == 2 and "--run-name" in p.stderr
    assert not list(runs_dir.iterdir())  # nothing was created by failed starts
    p = wb("runs", "--runs-dir", str(runs_dir))
    assert "no runs" in p.stdout
    p = wb("bench", "--only", "nope")  # the benchmarks' own runner answers, before running anything
    assert p.returncode == 2 and "unknown benchmark" in p.stderr and "lowlight" in p.stderr


def test_a_bad_port_or_runs_folder_is_refused_before_the_dashboard_starts(runs_dir):
    # streamlit itself ends in an OverflowError traceback from socket.bind
    for cmd, port in (("app", "99999"), ("demo", "0"), ("app", "http")):
        p = wb(cmd, "--port", port, "--runs-dir", str(runs_dir))
        assert p.returncode == 2 and "--port" in p.stderr and "from 1 to 65535" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
    assert not list(runs_dir.iterdir())  # the demo's training run never started
    for bad, why in ((("--epochs", "0"), "epochs=0 is not allowed"), (("--dataset", "cifar10"), "not on this machine")):
        p = wb("demo", *bad, "--runs-dir", str(runs_dir))  # the training run failed after the dashboard had started
        assert p.returncode == 2 and why in p.stderr and "Dashboard" not in p.stderr, p.stderr
    (runs_dir / "notes.txt").write_text("a file where the runs folder should be")
    for cmd in ("runs", "app", "demo"):  # they showed an empty runs folder
        p = wb(cmd, "--runs-dir", str(runs_dir / "notes.txt"))
        assert p.returncode == 2 and "is a file, not a folder of runs" in p.stderr, (cmd, p.stderr)


def test_training_on_a_folder_without_labels_says_what_it_cannot_measure(runs_dir, tmp_path):
    from PIL import Image

    (tmp_path / "photos" / "empty-sub-folder").mkdir(parents=True)  # holds no images: not a class
    for i in range(12):
        Image.fromarray(((i * 20) + np.zeros((10, 10, 3))).astype(np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    p = wb("train", "--dataset", f"folder:{tmp_path / 'photos'}", "--epochs", "1", "--batch-size", "4", "--runs-dir",
           str(runs_dir), "--progress", "false")
    assert p.returncode == 0, p.stderr
    assert "kNN accuracy not measured" in p.stdout and "nan" not in p.stdout
    p = wb("runs", "--runs-dir", str(runs_dir))
    row = [line for line in p.stdout.splitlines() if "folder:" in line][0].split()
    assert row[-1] == "-" and row[-2] != "-"  # kNN accuracy not logged, the loss logged


def test_killed_training_is_stale_then_resumes_with_the_same_step_count(runs_dir):
    args = ["train", "--epochs", "40", "--batch-size", "128", "--runs-dir", str(runs_dir), "--run-name", "crash",
            "--progress", "false", "--probe-size", "100"]
    p = subprocess.Popen([sys.executable, "-m", "workbench", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ckpt = runs_dir / "crash" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with RunReader(runs_dir / "crash") as r:
        assert r.status().state == "stale"
        logged = r.last_step()
        assert logged >= 11
    p = wb("train", "--resume", "--run-name", "crash", "--runs-dir", str(runs_dir), "--epochs", "3",
           "--progress", "false")
    assert p.returncode == 0, p.stderr
    assert "finished: step 33, epoch 3" in p.stdout
    with RunReader(runs_dir / "crash") as r:
        assert r.status().state == "finished"
        assert r.scalar("loss").index.tolist() == list(range(1, 34))
    p = wb("train", "--resume", "--run-name", "crash", "--runs-dir", str(runs_dir), "--tau", "0.9")
    assert p.returncode == 2 and "cannot change" in p.stderr


def test_sigterm_stops_cleanly_and_the_run_says_stopped(runs_dir):
    p = subprocess.Popen([sys.executable, "-m", "workbench", "train", "--epochs", "500", "--runs-dir", str(runs_dir),
                          "--run-name", "term", "--progress", "false"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    db = runs_dir / "term" / "run.db"
    deadline = time.time() + 60
    while time.time() < deadline:
        if db.exists() and RunReader(runs_dir / "term").last_step() >= 5:
            break
        time.sleep(0.05)
    p.terminate()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "stopped" in out
    with RunReader(runs_dir / "term") as r:
        st = r.status()
        assert st.state == "stopped" and "stopped by the user" in st.error


def test_launch_command_round_trips_every_config_field():
    """The app starts runs through `workbench train ...`: the command line must carry every non-default field."""
    from workbench import TrainConfig
    from workbench.cli import _config_from_args, build_parser
    from workbench.engine.launch import train_command

    configs = [TrainConfig(method="moco", dataset="digits", epochs=7, tau=0.1, ft_pos=True, ft_neg=True,
                           queue_size=512, moco_momentum=0.9, precision="bf16", channels_last=False, lr=0.01, run_name="x", download=True,
                           symmetric=False, backbone="convnet", knn_k=5),
               TrainConfig(method="swav", prototypes=12, small_crops=0, batch_size=64),
               TrainConfig(method="rotnet", feature_block=2),
               TrainConfig(method="tml", troublemaker="synthetic", ugdc_levels=2, patch_size=32, em_epochs=0.5)]
    for cfg in configs:
        argv = train_command(cfg)[3:]  # drop "python -m workbench"
        assert argv[0] == "train"
        assert _config_from_args(build_parser().parse_args(argv)) == cfg


def test_options_of_another_method_are_refused_by_name(runs_dir):
    p = wb("train", "--method", "simclr", "--queue-size", "64", "--runs-dir", str(runs_dir))
    assert p.returncode == 2 and "queue_size is not an option of simclr (it is one of moco)" in p.stderr
    assert not any(runs_dir.iterdir())


def test_help_lists_each_methods_options_with_their_ranges():
    p = wb("train", "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())  # argparse wraps lines
    assert "options of moco:" in text and "--queue-size" in text and "options of tml:" in text
    assert "--ugdc-levels UGDC_LEVELS UNet levels of PM and EM (default 3); allowed: an integer >= 1 and <= 7" in text


def test_the_readmes_gpu_recipes_are_valid_configurations():
    """Each recipe of the README's reference table, with the flags the table says they share, parses into a
    configuration its method accepts (a renamed option or a value out of range would fail here, not on a GPU)."""
    import re
    import shlex
    from pathlib import Path

    from workbench.cli import _config_from_args, build_parser

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shared = shlex.split(re.search(r"on a GPU, from the papers and peers\n\(`([^`]+)`\)", text).group(1))
    recipes = re.findall(r"^\| [^|]+ \| `(--[^`]+)`", text, re.M)
    methods = set()
    for recipe in recipes:
        cfg = _config_from_args(build_parser().parse_args(["train", *shared, *shlex.split(recipe)]))
        methods.add(cfg.method)
        assert cfg.device == "cuda" and cfg.epochs >= 100
    assert methods == {"simclr", "moco", "swav", "rotnet", "gsimclr", "depict"}
