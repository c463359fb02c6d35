"""The benchmark scripts' own paths, at tiny sizes (their numbers are measured by running them, not here)."""
import importlib
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message is for machines without CUDA")
def test_gpu_benchmark_without_cuda_says_so_and_exits_0(gpu, capsys):
    assert gpu.main([]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out


def test_gpu_benchmark_cpu_path_prints_epochs_table_and_breakdown(gpu, capsys, tmp_path):
    """The script's whole path on the CPU at a tiny size: an epoch line as each epoch ends, the table, the
    per-piece shares of a step (which add up to the whole)."""
    rc = gpu.main(["--device", "cpu", "--images", "128", "--batch", "64", "--epochs", "2", "--backbone", "convnet",
                   "--no-compile", "--lightly-epochs", "0", "--reps", "1", "--data-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "workbench epoch 1:" in out and "workbench epoch 2:" in out
    assert "| workbench" in out and "images/s" in out
    shares = [float(line.split("|")[3].strip().rstrip("%")) for line in out.splitlines()
              if line.startswith(("| views", "| model step", "| diagnostics"))]
    assert len(shares) == 3 and sum(shares) == pytest.approx(100, abs=0.5)


def test_diagnostics_overhead_benchmark_runs_through_on_the_real_engine(monkeypatch, capsys):
    """The whole path at a tiny size: it patches the trainer's step and flush, so an engine change that the patch
    does not follow (the flush gained an argument once and the script died at its first step) fails here."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("diagnostics_overhead")
    text = bench.main(["--cycles-digits", "1", "--cycles-fashion", "0", "--piece-reps", "2", "--eval-reps", "1"])
    first_table = text.split("all live diagnostics, % of a store-only step")[0]
    assert "| digits 8x8" in first_table and "fashion-mnist" not in first_table  # --cycles-fashion 0: not trained
    assert "total: from pieces" in text
