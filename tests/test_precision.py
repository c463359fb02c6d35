"""--precision: the autocast dtype each device gets, the fp32 islands (losses, scores) inside mixed precision,
and old configurations (``amp``) still loading."""
import math

import pytest
import torch
import torch.nn.functional as F

from workbench import TrainConfig
from workbench.config import ConfigError
from workbench.engine.device import autocast, cpu_has_native_bf16, needs_grad_scaler, resolve_precision
from workbench.losses.infonce import info_nce
from workbench.losses.ntxent import nt_xent
from workbench.losses.swav import sinkhorn_knopp

CPU = torch.device("cpu")


def naive_nt_xent(z1, z2, tau):
    """Loop over anchors in float64: -log(exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau))."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        s = z @ z[i]
        denom = sum(math.exp(s[k].item() / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(s[j].item() / tau) / denom)
    return total / (2 * n)


def test_losses_stay_fp32_under_bf16_autocast():
    """Under autocast a matmul of fp32 inputs runs in bf16 (8-bit mantissa): with tau 0.1 the logits would be off
    by ~1e-2. The losses run in fp32 islands, so they match a float64 loop to fp32 accuracy."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    expected = naive_nt_xent(z1, z2, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nt_xent(z1, z2, 0.1)
        bare = (F.normalize(z1) @ F.normalize(z2).T)  # what autocast does to an unprotected product
    assert got.dtype == torch.float32
    assert abs(got.item() - expected) < 1e-5
    assert bare.dtype == torch.bfloat16  # the hazard is real on this torch

    q, k, neg = (F.normalize(torch.randn(8, 16, generator=g), dim=1) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pos, scores = info_nce(q, k, neg, 0.07)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ neg.T], 1).double() / 0.07
    assert scores.dtype == torch.float32
    assert abs(loss.item() - F.cross_entropy(logits, torch.zeros(8, dtype=torch.long)).item()) < 1e-5

    s = torch.randn(12, 5, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = sinkhorn_knopp(s, eps=0.05)
    torch.testing.assert_close(codes, sinkhorn_knopp(s, eps=0.05))


def test_resolve_precision_per_device():
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("auto", CPU) is (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert resolve_precision("auto", CPU, bf16_on_cpu=False) is None  # the low-light task
    assert resolve_precision("auto", CPU, image_size=8) is None  # 8 px digits: bf16 gains nothing there
    assert resolve_precision("bf16", CPU, image_size=8) is torch.bfloat16  # asked for by name
    assert resolve_precision("auto", torch.device("mps")) is None
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="precision='bf16'.*mps"):
        resolve_precision("bf16", torch.device("mps"))
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="int8")
    assert needs_grad_scaler(torch.float16) and not needs_grad_scaler(torch.bfloat16)
    assert not needs_grad_scaler(None)
    with autocast(CPU, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
    with autocast(CPU, None):
        assert not torch.is_autocast_enabled("cpu")


def test_old_configs_with_amp_load_as_precision():
    """Runs stored before --precision carried ``amp``: amp=True was autocast on CUDA only, so a CPU run was fp32."""
    assert TrainConfig.from_dict({"method": "simclr", "amp": True, "device": "cpu"}).precision == "fp32"
    assert TrainConfig.from_dict({"method": "simclr", "amp": False}).precision == "fp32"
    assert TrainConfig.from_dict({"method": "simclr", "amp": True, "device": "auto"}).precision == "auto"


def test_bf16_training_step_runs_and_logs_fp32_scores(tmp_path):
    """A SimCLR run in bf16 on the CPU: finite loss, fp32 histograms, features for the probes in fp32."""
    import workbench
    from workbench.runs.store import RunReader

    res = workbench.train(method="simclr", dataset="digits", epochs=1, batch_size=128, precision="bf16",
                          runs_dir=str(tmp_path), progress=False, probe_size=100, log_every=2)
    assert res.status == "finished" and math.isfinite(res.metrics["loss"])
    with RunReader(res.run_dir) as r:
        assert r.meta["config"]["precision"] == "bf16"
    assert 0.1 < res.metrics["knn_acc"] <= 1.0


def test_compile_falls_back_to_eager_when_the_compiler_fails_or_is_missing(tmp_path, monkeypatch):
    """--compile: a compiler that fails at the first call (here the start-of-run evaluation) leaves the run
    training eager with a warning event, not a traceback; a missing compiler is said before training."""
    import workbench
    from workbench.engine import trainer as trainer_mod
    from workbench.runs.store import CHECKPOINT, RunReader
    from torch._dynamo.exc import BackendCompilerFailed

    calls = []

    def broken_compile(fn, *args, **kwargs):
        def fail(*a, **k):
            calls.append(1)
            raise BackendCompilerFailed(fn, RuntimeError("inductor broke"), None)
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(trainer_mod, "compiler_missing", lambda device: None)
    res = workbench.train(method="simclr", dataset="digits", epochs=1, batch_size=256, compile=True,
                          runs_dir=str(tmp_path), run_name="broken", progress=False, probe_size=100)
    assert res.status == "finished" and calls == [1]  # tried once, then eager for good
    with RunReader(res.run_dir) as r:
        messages = r.events()["message"].tolist()
    assert any("--compile failed (BackendCompilerFailed" in m and "eager" in m for m in messages), messages
    state = torch.load(res.run_dir / CHECKPOINT, weights_only=True)["model"]
    assert "backbone.features.0.weight" in state  # the state-dict keys are the eager model's

    monkeypatch.setattr(trainer_mod, "compiler_missing", lambda device: "no C++ compiler (test)")
    res = workbench.train(method="simclr", dataset="digits", epochs=1, batch_size=256, compile=True,
                          runs_dir=str(tmp_path), run_name="missing", progress=False, probe_size=100)
    with RunReader(res.run_dir) as r:
        assert any("--compile: no C++ compiler (test); training runs eager" in m for m in r.events()["message"])



def test_cpu_threads_leave_a_core_free_for_bf16_and_are_restored_after_the_run(tmp_path):
    import os

    import workbench
    from workbench.engine.device import cpu_threads
    from workbench.runs.store import RunReader

    assert cpu_threads(0, CPU, torch.bfloat16) == max(1, os.cpu_count() - 1)
    assert cpu_threads(0, CPU, None) is None  # fp32: torch's own setting
    assert cpu_threads(3, CPU, None) == 3 and cpu_threads(3, CPU, torch.bfloat16) == 3  # the user's choice
    assert cpu_threads(0, torch.device("cuda"), torch.bfloat16) is None
    before = torch.get_num_threads()
    seen = []

    class Seen(workbench.engine.Callback):
        def on_step_end(self, trainer, out):
            seen.append(torch.get_num_threads())

    from workbench.engine.trainer import Trainer

    res = Trainer(workbench.TrainConfig(method="simclr", dataset="digits", epochs=1, batch_size=512, threads=1,
                                        runs_dir=str(tmp_path), progress=False, probe_size=100),
                  callbacks=[Seen()]).fit()
    assert set(seen) == {1} and torch.get_num_threads() == before
    with RunReader(res.run_dir) as r:
        assert r.meta["threads"] == 1 and r.meta["precision"] in ("bfloat16", "float32")


def test_split_batch_norm_keeps_channels_last_and_its_values():
    """Split-BN reshapes the batch into splits; on channels-last activations it hands the next layer
    channels-last again (a layout flip made MoCo's step 1.65x slower), with the same numbers, gradients included."""
    from workbench.nn.splitbn import SplitBatchNorm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, 5, 5, generator=g)
    outs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        bn = SplitBatchNorm(8, 4).to(memory_format=layout)
        xi = x.clone().contiguous(memory_format=layout).requires_grad_()
        y = bn(xi)
        (y * torch.arange(y.numel()).view_as(y)).sum().backward()
        outs.append((y.detach(), xi.grad, y.is_contiguous(memory_format=torch.channels_last), bn.running_mean,
                     bn.running_var))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    # the two layouts' kernels sum in different orders: float32 rounding of gradients of size ~10
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=2e-4)
    assert outs[1][2]  # channels-last in, channels-last out
    torch.testing.assert_close(outs[0][3], outs[1][3])  # running statistics: the splits' average
    torch.testing.assert_close(outs[0][4], outs[1][4])
    # each split (samples k, k + 4, ...) normalised on its own
    split = x.view(4, 4, 8, 5, 5)[:, 1]
    torch.testing.assert_close(outs[0][0].view(4, 4, 8, 5, 5)[:, 1],
                               F.batch_norm(split, None, None, training=True), rtol=1e-4, atol=1e-5)


def test_intra_op_threads_sets_the_count_for_the_block_and_restores_it_on_error():
    from workbench.threads import intra_op_threads

    before = torch.get_num_threads()
    inside = 1 if before != 1 else 2
    with pytest.raises(RuntimeError, match="boom"):
        with intra_op_threads(inside):
            assert torch.get_num_threads() == inside
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    for leave_alone in (None, 0):
        with intra_op_threads(leave_alone):
            assert torch.get_num_threads() == before
