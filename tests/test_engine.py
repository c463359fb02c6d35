"""Training engine end to end on the embedded digits."""
import os
import math
import time

import pytest
import torch

import workbench
from workbench import ConfigError
from workbench.engine import Callback, NonFiniteLoss, Trainer, resolve_device
from workbench.engine.optim import warmup_constant, warmup_cosine
from workbench.methods import SimCLR, StepOutput
from workbench.runs import RunReader


def test_train_logs_everything_the_dashboard_needs(quick):
    result = workbench.train(quick(epochs=2, run_name="e2e"))
    assert result.status == "finished" and result.epochs_done == 2
    steps_per_epoch = 1437 // 128
    assert result.step == 2 * steps_per_epoch
    with RunReader(result.run_dir) as r:
        df = r.scalars()
        for key in ("loss", "lr", "img_per_s", "pos_mean", "neg_mean", "neg_var", "align", "uniform",
                    "collapse_std", "effective_rank", "knn_acc", "tolerance", "probe_uniform", "kmeans_acc",
                    "kmeans_nmi", "kmeans_ari"):
            assert key in df, key
        assert df["loss"].notna().sum() == result.step
        # kNN before training (step 0) and after each epoch
        assert r.scalar("knn_acc").index.tolist() == [0, steps_per_epoch, 2 * steps_per_epoch]
        pos = r.histograms("pos")
        assert pos.counts.shape[1] == 100 and (pos.counts.sum(1) == 128).all()
        neg = r.histograms("neg")
        assert (neg.counts.sum(1) == 2 * 128 * (2 * 128 - 2)).all()
        snap = r.snapshot("embeddings")
        assert snap.step == result.step and snap["features"].shape == (200, 256)
        assert len(r.artifacts("embeddings")) == 3 and len(r.artifacts("views")) == 1
        assert snap["kmeans"].shape == (200,) and set(snap["kmeans"]) <= set(range(10))
        thumbs = r.snapshot("probe_images")
        assert thumbs["images"].shape == (200, 1, 8, 8) and (thumbs["index"] == snap["index"]).all()
        assert r.status().state == "finished"
        assert r.meta["epoch"] == 2
    assert (result.run_dir / "checkpoints" / "last.pt").exists()


def test_resume_continues_the_same_run_and_step_count(quick):
    first = workbench.train(quick(epochs=1, run_name="r"))
    state = torch.load(first.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == first.step
    second = workbench.train(quick(epochs=3, run_name="r", resume=True))
    assert second.run_dir == first.run_dir
    assert second.step == 3 * first.step and second.epochs_done == 3
    with RunReader(second.run_dir) as r:
        assert r.scalar("loss").index.tolist() == list(range(1, second.step + 1))
        assert "resumed from the checkpoint at step" in r.events()["message"].iloc[-1]


class StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, trainer):
        trainer.stop_event.set()  # as if the user pressed stop (or the process died) during epoch 2


def test_resume_is_exactly_the_uninterrupted_run(quick):
    straight = workbench.train(quick(epochs=2, run_name="straight"))
    stopped = workbench.train(quick(epochs=2, run_name="split"), callbacks=[StopAfterFirstEpoch()])
    assert stopped.status == "stopped" and stopped.epochs_done == 1
    split = workbench.train(quick(epochs=2, run_name="split", resume=True))
    with RunReader(straight.run_dir) as a, RunReader(split.run_dir) as b:
        torch.testing.assert_close(torch.tensor(a.scalar("loss").values), torch.tensor(b.scalar("loss").values),
                                   rtol=1e-4, atol=1e-5)


def test_existing_run_is_not_overwritten_and_resume_needs_a_checkpoint(quick):
    workbench.train(quick(run_name="taken"))
    with pytest.raises(ConfigError, match="already holds a run"):
        workbench.train(quick(run_name="taken"))
    with pytest.raises(ConfigError, match="no run folder to resume"):
        workbench.train(quick(run_name="never-ran", resume=True))


class WriteEvery(Callback):
    """Queue the run store's writes as the trainer does on a GPU (one host read per ``n`` steps)."""

    def __init__(self, n):
        self.n = n

    def on_fit_start(self, trainer):
        trainer.write_every = self.n


@pytest.mark.parametrize("write_every", [1, 4])
def test_nan_loss_stops_marks_failed_and_keeps_the_last_good_checkpoint(quick, monkeypatch, write_every):
    """Also when the steps' scalars reach the host in groups (a GPU): the bad step is named, the steps before it
    are kept, the steps after it in its group are not."""
    original = SimCLR.step
    calls = {"n": 0}

    def step(self, images, index, generator):
        out = original(self, images, index, generator)
        calls["n"] += 1
        if calls["n"] == 14:  # in the second epoch (11 steps per epoch)
            return StepOutput(loss=out.loss * float("nan"), z1=out.z1, z2=out.z2)
        return out

    monkeypatch.setattr(SimCLR, "step", step)
    cfg = quick(epochs=3, run_name="nan")
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 14 \(epoch 2\)") as e:
        Trainer(cfg, callbacks=[WriteEvery(write_every)]).fit()
    assert "last good checkpoint" in str(e.value)
    run = cfg.runs_dir + "/nan"
    with RunReader(run) as r:
        st = r.status()
        assert st.state == "failed" and "step 14" in st.error
        assert r.scalar("loss").index.max() == 13  # everything before the bad step is kept
        assert r.events()["level"].tolist()[-1] == "error"
    state = torch.load(f"{run}/checkpoints/last.pt", weights_only=True)
    assert state["epochs_done"] == 1 and state["step"] == 11
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_background_training_can_be_followed_and_stopped(quick):
    handle = workbench.start_training(quick(epochs=50, run_name="bg"))
    reader = None
    deadline = time.time() + 60
    while time.time() < deadline:
        if (handle.run_dir / "run.db").exists():
            reader = reader or RunReader(handle.run_dir)
            if reader.last_step() >= 3:
                break
        time.sleep(0.05)
    assert reader is not None and reader.status().state == "running"
    handle.stop()
    result = handle.join(timeout=60)
    assert result.status == "stopped" and not handle.is_alive()
    assert reader.status().state == "stopped"
    assert 3 <= result.step < 50 * 11


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="batch_size"):
        workbench.TrainConfig(batch_size=1)
    with pytest.raises(ConfigError, match="method.*one of"):
        workbench.TrainConfig(method="byol")
    with pytest.raises(ConfigError, match="optimizer"):
        workbench.TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="unknown config field"):
        workbench.TrainConfig.from_dict({"temperature": 0.1})


def test_device_selection():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("tpu9")


def test_warmup_then_cosine_schedule():
    f = [warmup_cosine(s, total_steps=110, warmup_steps=10) for s in range(111)]
    assert f[0] == pytest.approx(0.01) and f[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:11]))
    assert f[60] == pytest.approx(0.5) and f[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))


def test_constant_schedule_keeps_the_peak_lr_after_the_warm_up(quick):
    """``--lr-schedule constant`` (DEPICT's and Zero-DCE's official training): the warm-up, then the peak lr up to
    the last step, as the run records it."""
    f = [warmup_constant(s, total_steps=110, warmup_steps=10) for s in range(111)]
    assert f[0] == pytest.approx(0.01) and f[5] == pytest.approx(0.01 + 0.99 * 5 / 10) and f[10:] == [1.0] * 101
    r = workbench.train(quick(epochs=2, run_name="constant", lr=0.02, lr_schedule="constant", probe_size=0))
    steps_per_epoch = 1437 // 128
    with RunReader(r.run_dir) as reader:
        lr = reader.scalar("lr").to_numpy()
    assert len(lr) == 2 * steps_per_epoch and lr[0] == pytest.approx(0.02 * 0.01)  # warm-up over the first epoch
    assert lr[1] == pytest.approx(0.02 * (0.01 + 0.99 / steps_per_epoch))
    assert lr[steps_per_epoch:] == pytest.approx([0.02] * steps_per_epoch)  # no decay, the last step included


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_other_optimizers_train(quick, optimizer):
    r = workbench.train(quick(optimizer=optimizer, run_name=optimizer, probe_size=0))
    assert r.status == "finished" and math.isfinite(r.metrics["loss"])


def test_stop_file_stops_a_run_in_this_process_without_killing_it(quick):
    """The app's stop button on a run trained inside a notebook kernel: the kernel must survive."""
    from workbench.engine.launch import stop

    handle = workbench.start_training(quick(epochs=200, run_name="nb"))
    deadline = time.time() + 60
    while time.time() < deadline and not ((handle.run_dir / "run.db").exists()
                                          and RunReader(handle.run_dir).last_step() >= 2):
        time.sleep(0.05)
    assert stop(handle.run_dir) == "stop requested"
    result = handle.join(timeout=60)
    assert result.status == "stopped"  # and this test process is still alive to say so
    assert not (handle.run_dir / "STOP").exists()  # cleaned up, so --resume does not stop at once
    assert stop(handle.run_dir) == "not running (stopped)"


def test_live_run_cannot_be_resumed_twice(quick):
    handle = workbench.start_training(quick(epochs=300, run_name="live"))
    deadline = time.time() + 60
    while time.time() < deadline and not (handle.run_dir / "checkpoints" / "last.pt").exists():
        time.sleep(0.05)
    try:
        with pytest.raises(ConfigError, match=rf"being written by process {os.getpid()}"):  # the lock's holder
            workbench.train(quick(epochs=300, run_name="live", resume=True))
    finally:
        handle.stop()
        handle.join(timeout=60)


def test_runs_folders_with_uri_characters_work(quick, runs_dir):
    """Run names are conservative (issue 15), but the runs folder is the user's: '#', '?' and spaces in its path
    must not break the store's read-only URI."""
    odd = runs_dir / "tau0.2#a?b c"
    r = workbench.train(quick(run_name="tau0.2_ab", runs_dir=str(odd)))
    assert r.status == "finished" and r.metrics["loss"] > 0
    assert sorted(p.name for p in odd.iterdir()) == ["tau0.2_ab"]


def test_queued_writes_keep_every_step_and_the_stopped_runs_last_steps(quick):
    """With the writes queued (a GPU), every step's loss and the methods' tensor logs still reach the store, also
    those of a run stopped between two writes."""
    result = Trainer(quick(method="moco", epochs=1, run_name="queued"), callbacks=[WriteEvery(4)]).fit()
    with RunReader(result.run_dir) as r:
        df = r.scalars()
    assert df["loss"].notna().sum() == result.step == 1437 // 128
    assert df["queue_self_frac"].notna().sum() == result.step  # a 0-d tensor in the method's logs

    class StopAt(Callback):
        def on_step_end(self, trainer, out):
            if trainer.step == 6:
                trainer.stop_event.set()

    result = Trainer(quick(epochs=1, run_name="stopped"), callbacks=[WriteEvery(4), StopAt()]).fit()
    assert result.status == "stopped" and result.step == 6
    with RunReader(result.run_dir) as r:
        assert r.scalar("loss").index.tolist() == list(range(1, 7))  # steps 5 and 6 were still queued
