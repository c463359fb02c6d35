"""Issue 15: no write outside the runs folder, one writer per run, nothing left behind by a failed start, a
checkpoint that is whole or absent."""
import os
import subprocess
import sys

import pytest
import torch

import workbench
from workbench import ConfigError
from workbench.runs import RunReader

BAD_NAMES = ["../escape", "/tmp/abs-run", "..", ".", ".hidden", "a/b", "x" * 101, "tab\tname", "sp ace", "q?x", ""]
GOOD_NAMES = ["run-1", "simclr_tau0.2", "A.b-c_d", "x" * 100]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_run_names_are_refused_before_anything_is_written(name, runs_dir, tmp_path, capsys):
    from workbench.cli import main

    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", "--run-name", name, "--runs-dir", str(runs_dir), "--epochs", "1", "--progress",
                 "false"]) == 2
    assert "run_name=" in capsys.readouterr().err
    assert not list(runs_dir.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(ConfigError, match="run_name"):  # notebooks and the app's form build the same config
        workbench.TrainConfig(run_name=name)


def test_a_runs_folder_that_cannot_hold_runs_is_named_as_runs_dir(tmp_path, capsys):
    from workbench.cli import main

    (tmp_path / "file").write_text("not a folder")
    for runs, why in ((tmp_path / "file", "is a file, not a folder"),
                      (tmp_path / "file" / "below", "cannot create the runs folder")):
        assert main(["train", "--runs-dir", str(runs), "--epochs", "1", "--progress", "false"]) == 2
        err = capsys.readouterr().err
        assert "runs_dir: " in err and why in err and "run_name" not in err, err


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_run_names_are_accepted(name):
    assert workbench.TrainConfig(run_name=name).run_name == name


def test_a_run_name_that_resolves_outside_the_runs_folder_is_refused(quick, runs_dir, tmp_path):
    (runs_dir / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the runs folder"):
        workbench.train(quick(run_name="link"))
    assert not (tmp_path / "elsewhere").exists()


def test_two_runs_started_together_with_one_name_give_one_winner(runs_dir):
    """Started at the same moment, several times: exactly one trains, the others are refused by name, and the
    store holds exactly one run's steps."""
    cmd = [sys.executable, "-m", "workbench", "train", "--epochs", "1", "--batch-size", "256", "--progress",
           "false", "--runs-dir", str(runs_dir), "--probe-size", "50"]
    for trial in range(2):
        name = f"same{trial}"
        procs = [subprocess.Popen(cmd + ["--run-name", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(3)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        codes = sorted(rc for rc, _ in results)
        assert codes == [0, 2, 2], results
        assert all("already" in err or "being written by process" in err for rc, err in results if rc == 2)
        with RunReader(runs_dir / name) as r:
            steps = r.scalar("loss").index.tolist()
            assert steps == list(range(1, len(steps) + 1)) and r.status().state == "finished"


def test_a_failed_build_leaves_no_run_folder_behind(quick, runs_dir):
    with pytest.raises((ConfigError, ValueError), match="feature_block"):
        workbench.train(quick(method="rotnet", feature_block=99, run_name="bad-block"))
    assert not (runs_dir / "bad-block").exists()
    workbench.train(quick(method="rotnet", run_name="bad-block"))  # the name is free


def test_a_leftover_stop_file_does_not_stop_the_resume(quick, runs_dir):
    first = workbench.train(quick(epochs=1, run_name="resumed"))
    (first.run_dir / "STOP").touch()  # as if the stopping process had been killed before removing it
    again = workbench.train(quick(epochs=2, run_name="resumed", resume=True))
    assert again.status == "finished" and again.epochs_done == 2
    with RunReader(again.run_dir) as r:
        assert "removed a STOP file" in " ".join(r.events()["message"])


def test_a_checkpoint_write_that_fails_leaves_the_previous_one_and_no_temp_file(quick, monkeypatch):
    from workbench.engine.trainer import Trainer

    trainer = Trainer(quick(epochs=1, run_name="disk"))
    trainer.fit()
    path = trainer.checkpoint_path
    good = path.read_bytes()

    def full_disk(obj, f, *a, **kw):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint()
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "empty dict", "folder"])
def test_resume_from_a_damaged_checkpoint_is_one_clear_line(damage, runs_dir):
    import os

    from workbench.cli import main

    args = ["--runs-dir", str(runs_dir), "--run-name", "r", "--progress", "false", "--probe-size", "50"]
    assert main(["train", "--epochs", "1", *args]) == 0
    ckpt = runs_dir / "r" / "checkpoints" / "last.pt"
    good = ckpt.read_bytes()
    if damage == "folder":
        ckpt.unlink()
        ckpt.mkdir()
    else:
        ckpt.write_bytes({"empty": b"", "truncated": good[: len(good) // 3], "random": os.urandom(4096)}.get(damage)
                         or b"")
        if damage == "empty dict":
            torch.save({}, ckpt)
    p = subprocess.run([sys.executable, "-m", "workbench", "train", "--resume", "--epochs", "2", *args],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "is not a readable checkpoint" in p.stderr.splitlines()[-1]
    # the failed resume released its claim: a repaired checkpoint resumes at once
    if damage == "folder":
        ckpt.rmdir()
    ckpt.write_bytes(good)
    assert main(["train", "--resume", "--epochs", "2", *args]) == 0


def test_a_store_with_malformed_meta_is_listed_as_unreadable_and_the_rest_still_work(quick, runs_dir):
    import sqlite3

    from workbench.cli import main
    from workbench.runs import list_runs

    workbench.train(quick(run_name="good"))
    workbench.train(quick(run_name="odd"))
    con = sqlite3.connect(runs_dir / "odd" / "run.db")
    con.execute("UPDATE meta SET value = '\"just text\"' WHERE key = 'config'")
    con.execute("UPDATE meta SET value = '\"yesterday\"' WHERE key = 'created'")
    con.commit()
    con.close()
    df = list_runs(runs_dir).set_index("name")
    assert df.loc["good", "status"] == "finished"
    assert df.loc["odd", "status"] == "unreadable" and "not a mapping" in df.loc["odd", "problem"]
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch, capsys):
    from workbench import cli

    def boom(args):
        raise RuntimeError("something odd\nsecond line")

    monkeypatch.setattr(cli, "cmd_datasets", boom)
    assert cli.main(["datasets"]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: something odd" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        cli.main(["datasets", "--debug"])


# the options whose values cost nothing to try (each example trains 2 steps on 32 digits); epochs, sizes and counts
# that make a run long are bounded by their ranges and covered by the range checks above
CHEAP_NUMERIC = ["--tau", "--lr", "--weight-decay", "--momentum", "--warmup-epochs", "--seed", "--log-every",
                 "--knn-t", "--knn-k", "--hist-bins", "--grad-clip", "--proj-dim", "--eval-every"]


def _values():
    from hypothesis import strategies as st

    return st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.integers(min_value=-2 ** 70, max_value=2 ** 70).map(str),
                     st.sampled_from(["nan", "inf", "-inf", "1e-30", "1e30", "0", "-0", "1e400", "", "x", "0x10"]))


def test_any_numeric_value_trains_or_is_one_line_never_a_traceback_or_a_leftover(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from workbench.cli import main

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(flag=st.sampled_from(CHEAP_NUMERIC), value=_values())
    def check(flag, value):
        runs = tmp_path_factory.mktemp("hyp")
        args = ["train", "--subset", "32", "--batch-size", "16", "--epochs", "1", "--probe-size", "20",
                "--progress", "false", "--runs-dir", str(runs), "--run-name", "h", flag, value]
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = main(args)
            except SystemExit as e:  # argparse's own refusal of a value that is not a number
                rc = e.code
        text = err.getvalue()
        assert "Traceback" not in text, (flag, value, text)
        if rc == 0:
            assert (runs / "h" / "checkpoints" / "last.pt").exists()
        else:
            assert rc in (2, 3) and text.strip(), (flag, value, rc, text)
            lines = [line for line in text.strip().splitlines() if not line.startswith(("usage:", "  ", "run:"))]
            assert len(lines) == 1, (flag, value, text)
            if rc == 2:  # refused before training: nothing left behind
                assert not (runs / "h").exists(), (flag, value, text)

    check()


def test_a_resume_discards_what_the_killed_process_logged_after_its_checkpoint(quick):
    from workbench.runs.store import RunWriter

    first = workbench.train(quick(epochs=1, batch_size=256, run_name="k"))
    assert first.step == 5
    w = RunWriter.annotate(first.run_dir)  # steps 6-8 as a process killed before its next checkpoint logged them
    for step in (6, 7, 8):
        w.log(step, {"loss": 123.0, "lr": 0.5})
    w.add_arrays(8, "embeddings", {}, features=torch.zeros(2, 2))
    w.close()
    same = workbench.train(quick(epochs=1, batch_size=256, run_name="k", resume=True))  # nothing left to train
    assert same.step == 5 and same.metrics["loss"] == pytest.approx(first.metrics["loss"])
    with RunReader(same.run_dir) as r:
        assert r.scalar("loss").index.max() == 5 and 8 not in r.artifacts()["step"].tolist()
        assert "3 steps logged after it by the interrupted process were discarded" in " ".join(r.events()["message"])
    more = workbench.train(quick(epochs=2, batch_size=256, run_name="k", resume=True))
    with RunReader(more.run_dir) as r:
        assert r.scalar("loss").index.tolist() == list(range(1, 11)) and (r.scalar("loss") < 100).all()


def test_a_run_can_be_deleted_but_not_while_it_trains_and_not_a_stranger_folder(quick, runs_dir, capsys):
    import time

    from workbench.cli import main

    r = workbench.train(quick(run_name="old"))
    assert main(["runs", "--runs-dir", str(runs_dir), "--delete", "old"]) == 2  # no terminal to ask: --yes needed
    assert "--yes" in capsys.readouterr().err and r.run_dir.exists()
    assert main(["runs", "--runs-dir", str(runs_dir), "--delete", "old", "--yes"]) == 0
    assert not r.run_dir.exists()
    assert main(["runs", "--runs-dir", str(runs_dir), "--delete", "../x", "--yes"]) == 2
    (runs_dir / "photos").mkdir()
    (runs_dir / "photos" / "holiday.jpg").write_bytes(b"x")
    assert main(["runs", "--runs-dir", str(runs_dir), "--delete", "photos", "--yes"]) == 2
    assert "does not look like a run" in capsys.readouterr().err and (runs_dir / "photos" / "holiday.jpg").exists()
    handle = workbench.start_training(quick(epochs=300, run_name="live"))
    try:
        time.sleep(1)
        assert main(["runs", "--runs-dir", str(runs_dir), "--delete", "live", "--yes"]) == 2
        assert "being written by process" in capsys.readouterr().err and handle.run_dir.exists()
    finally:
        handle.stop()
        handle.join(timeout=60)
    assert main(["runs", "--runs-dir", str(runs_dir), "--delete", "live", "--yes"]) == 0


def test_a_run_that_failed_before_its_first_checkpoint_says_how_to_free_its_name(quick, runs_dir):
    (runs_dir / "early").mkdir()
    (runs_dir / "early" / "run.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="--delete early"):
        workbench.train(quick(run_name="early", resume=True))


def test_stopping_workbench_app_leaves_nothing_serving_the_port(runs_dir):
    import os
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def serving() -> bool:
        with socket.socket() as c:
            return c.connect_ex(("127.0.0.1", port)) == 0

    p = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--runs-dir", str(runs_dir), "--port",
                          str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not serving():
            time.sleep(0.2)
        assert serving()
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
        deadline = time.time() + 15
        while time.time() < deadline and serving():
            time.sleep(0.2)
        assert not serving()
    finally:
        if p.poll() is None:
            p.kill()


def test_enhance_with_a_bad_checkpoint_or_an_out_file_is_one_line(tmp_path):
    import numpy as np

    from workbench.data.imageio import save_image
    from workbench.engine.config import TrainConfig

    run = tmp_path / "low"
    (run / "checkpoints").mkdir(parents=True)
    image = tmp_path / "dark.png"
    save_image(image, np.full((16, 16, 3), 0.1))

    def enhance(*extra):
        return subprocess.run([sys.executable, "-m", "workbench", "enhance", str(image), "--run", str(run), *extra],
                              capture_output=True, text=True, timeout=300)

    for damage in (b"", b"not a checkpoint at all", None):
        ckpt = run / "checkpoints" / "last.pt"
        if damage is None:
            torch.save({"config": TrainConfig(method="zerodce").to_dict(), "model": {"nonsense": torch.zeros(1)}},
                       ckpt)
        else:
            ckpt.write_bytes(damage)
        p = enhance("--out", str(tmp_path / "out"))
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert ("not a readable checkpoint" if damage is not None else "does not fit") in p.stderr
    (tmp_path / "taken").write_text("a file")
    from workbench.config import ConfigError
    from workbench.lowlight.enhance import enhance_files

    with pytest.raises(ConfigError, match="is a file"):
        enhance_files(None, image, tmp_path / "taken")


def test_tml_with_one_epoch_trains_every_stage_and_says_so(quick, runs_dir):
    from workbench.lowlight.methods.tml import fit_stages

    assert fit_stages((10, 0, 0), 10, True)[0] == (1, 6, 3)  # --epochs 1 --tm-epochs 1 at 10 steps an epoch
    assert fit_stages((0, 50, 25), 75, False)[0] == (0, 50, 25)  # a plan that fits is kept
    with pytest.raises(ConfigError, match="fewer than its 3 stages"):
        fit_stages((1, 0, 0), 2, True)
    r = workbench.train(workbench.TrainConfig(method="tml", dataset="photos", epochs=1, patches=64, patch_size=32,
                                              batch_size=16, run_name="tml1", runs_dir=str(runs_dir), progress=False))
    with RunReader(r.run_dir) as reader:
        stages = reader.scalar("stage")
        assert set(stages.unique()) == {0.0, 1.0, 2.0}, stages.tolist()  # TM, PM and EM all trained
        assert any("TML plan" in m and "instead" in m for m in reader.events()["message"])


def test_large_images_are_enhanced_in_tiles_with_bounded_memory_and_no_seams(tmp_path):
    import numpy as np

    from workbench.diagnostics.image_quality import psnr
    from workbench.engine.config import TrainConfig
    from workbench.lowlight.enhance import enhance_array
    from workbench.methods import METHODS

    # seams: tiles against one whole pass on a mid-size photo, both networks (random but non-trivial weights)
    from skimage import data, transform

    image = (transform.resize(data.astronaut(), (600, 900)) * 0.2).astype(np.float32)
    torch.manual_seed(0)
    for name in ("zerodce", "tml"):
        m = METHODS[name].from_config(TrainConfig(method=name), None).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.02 * torch.randn_like(p))
        whole, tiled = enhance_array(m, image, tile=4096), enhance_array(m, image, tile=256, overlap=32)
        as_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
        assert float(psnr(as_t(tiled), as_t(whole)).min()) > 40, name
    # memory: a 2500 x 2500 image in one piece takes ~8 GB with Zero-DCE; in tiles it stays near one tile's
    script = ("import resource, numpy as np; from workbench.engine.config import TrainConfig; "
              "from workbench.methods import METHODS; from workbench.lowlight.enhance import enhance_array; "
              "m = METHODS['zerodce'].from_config(TrainConfig(method='zerodce'), None).eval(); "
              "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
              "enhance_array(m, np.zeros((2500, 2500, 3), np.float32)); "
              "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert float(p.stdout.strip()) < 1024, p.stdout  # MB above the process's baseline


def test_a_patch_larger_than_the_training_images_is_refused_and_leaves_nothing(runs_dir, capsys):
    from workbench.cli import main

    assert main(["train", "--method", "zerodce", "--patch-size", "100000", "--epochs", "1", "--runs-dir",
                 str(runs_dir), "--progress", "false"]) == 2
    assert "patch_size=100000 is larger than the training images allow" in capsys.readouterr().err
    assert not list(runs_dir.iterdir())


def test_gsimclr_pretraining_longer_than_the_run_leaves_simclr_steps_and_says_so(quick):
    r = workbench.train(quick(method="gsimclr", epochs=2, batch_size=256, pretrain_epochs=5, run_name="g"))
    with RunReader(r.run_dir) as reader:
        stages = reader.scalar("stage")
        assert set(stages.unique()) == {1.0, 2.0}, stages.tolist()  # the autoencoder, then SimCLR
        assert any(m.startswith("G-SimCLR plan") for m in reader.events()["message"])


def test_depict_refuses_more_clusters_than_pairs_warns_far_above_the_classes_and_fits_its_pretraining(quick):
    with pytest.raises(ConfigError, match="n_clusters=5000 is not allowed"):
        workbench.train(quick(method="depict", n_clusters=5000, run_name="d1"))
    r = workbench.train(quick(method="depict", n_clusters=50, epochs=2, batch_size=256, pretrain_epochs=20,
                              init_epochs=0, run_name="d2"))
    with RunReader(r.run_dir) as reader:
        events = reader.events()
        assert any(m.startswith("DEPICT plan") for m in events["message"])
        warned = events[events["level"] == "warning"]["message"].tolist()
        assert any("more than 4x the dataset's 10 classes" in m for m in warned), warned
        assert len(set(reader.scalar("stage").unique())) >= 2  # reconstruction, then clustering


def test_eval_lock_is_held_by_the_evaluating_process_until_it_dies(tmp_path):
    """`workbench eval` holds an OS lock on the run for its whole life: the app reads "running" from the lock, so
    a process killed with -9 is never reported running (no pid file to go stale, no /proc parsing)."""
    import subprocess
    import sys

    from workbench.engine import launch

    run = tmp_path / "r"
    run.mkdir()
    assert launch.eval_lock_holder(run) is None and launch.eval_status(run).state == "none"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom workbench.engine.launch import "
                               "hold_eval_lock\nhold_eval_lock(sys.argv[1])\nprint('held', flush=True)\n"
                               "time.sleep(60)", str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert launch.eval_lock_holder(run) == holder.pid
        status = launch.eval_status(run)
        assert status.state == "running" and status.pid == holder.pid  # started from a terminal: no pid record
        with pytest.raises(launch.EvalRunning, match=f"pid {holder.pid}"):
            launch.hold_eval_lock(run)
        cli = subprocess.run([sys.executable, "-m", "workbench", "eval", str(run)], capture_output=True, text=True)
        assert cli.returncode == 2 and "already running" in cli.stderr
    finally:
        holder.kill()
        holder.wait()
    assert launch.eval_lock_holder(run) is None  # kill -9 released it
    fd = launch.hold_eval_lock(run)  # and it can be taken again
    os.close(fd)
