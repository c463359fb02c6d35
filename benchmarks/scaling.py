"""How the training step scales on the CPU: images/s against batch size and against image size, and memory per
image; the workbench's precision (``--precision auto``: bf16 autocast here when the CPU has native bf16) beside
fp32, both with channels-last weights.

One step is what the engine's loop does for SimCLR with the SmallConvNet: the batched views of the ``uint8``
batch, the forward pass of both views, NT-Xent, backward and AdamW (the method's ``step`` under the run's
autocast). Each configuration runs in its own process (``--one``) so its peak resident memory is its own; memory
per image is the growth of that peak from the smallest batch, divided by the added images. Median of ``--reps``
steps after one warm-up step.

    python benchmarks/scaling.py [--reps 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import machine_line, markdown_table, median, setup_threads

import torch

BATCHES = (64, 128, 256, 512, 1024)
SIZES = (28, 32, 64)


def one(batch: int, size: int, channels: int, precision: str, reps: int, threads: int) -> dict:
    """Time ``reps`` steps of one configuration in this process; its peak RSS in MiB."""
    setup_threads(threads)
    from workbench import TrainConfig
    from workbench.data.registry import DatasetBundle, ImageSet
    from workbench.engine.build import build
    from workbench.engine.device import autocast, resolve_precision

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.zeros(batch, dtype=torch.long)
    bundle = DatasetBundle("synthetic", ImageSet(images, labels), ImageSet(images[:8], labels[:8]),
                           classes=["0"], crop_scale=(0.2, 1.0))
    cfg = TrainConfig(method="simclr", backbone="convnet", device="cpu", batch_size=batch, precision=precision,
                      progress=False)
    parts = build(cfg, torch.device("cpu"), bundle=bundle, callbacks=[])
    method, opt = parts.method, parts.optimizer
    dtype = resolve_precision(precision, torch.device("cpu"))
    aug = torch.Generator().manual_seed(1)
    times = []
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), dtype):
            out = method(images, rep, aug)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if rep:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"batch": batch, "size": size, "channels": channels, "precision": precision,
            "s_per_step": median(times), "images_per_s": batch / median(times), "peak_rss_mib": rss}


def run(batch, size, channels, precision, reps, threads) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps([batch, size, channels, precision]), "--reps", str(reps),
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(*json.loads(args.one), args.reps, args.threads)))
        return ""
    t0 = time.perf_counter()
    batches = [int(b) for b in args.batches.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    text = []
    for title, configs in (
            (f"images/s against batch size (28 px, 1 channel: Fashion-MNIST's shape)", [(b, 28, 1) for b in batches]),
            (f"images/s against image size (batch 256, 3 channels)", [(256, s, 3) for s in sizes])):
        rows, base = [], {}
        for batch, size, ch in configs:
            res = {prec: run(batch, size, ch, prec, args.reps, args.threads) for prec in ("auto", "fp32")}
            for prec, r in res.items():
                base.setdefault(prec, r)
            mem = {prec: ((r["peak_rss_mib"] - base[prec]["peak_rss_mib"]) / (r["batch"] - base[prec]["batch"]) * 1024
                          if r["batch"] > base[prec]["batch"] else float("nan")) for prec, r in res.items()}
            rows.append([str(batch), f"{size} px x {ch}", f"{res['auto']['images_per_s']:,.0f}",
                         f"{res['fp32']['images_per_s']:,.0f}",
                         f"{res['fp32']['s_per_step'] / res['auto']['s_per_step']:.2f}x",
                         f"{res['auto']['peak_rss_mib']:,.0f}", f"{res['fp32']['peak_rss_mib']:,.0f}",
                         f"{mem['auto']:.0f}" if mem["auto"] == mem["auto"] else "-",
                         f"{mem['fp32']:.0f}" if mem["fp32"] == mem["fp32"] else "-"])
            print("  " + " | ".join(rows[-1]), flush=True)
        text.append(f"#### {title}\n\n" + markdown_table(
            ["batch", "images", "images/s (auto precision)", "images/s (fp32)", "auto vs fp32", "peak RSS MiB (auto)",
             "peak RSS MiB (fp32)", "KiB per added image (auto)", "KiB per added image (fp32)"], rows))
    out = (f"### Training-step scaling on the CPU (SimCLR, SmallConvNet, channels-last, median of {args.reps} steps)"
           f"\n\n" + "\n\n".join(text) + f"\n\n'auto' is bf16 autocast on this CPU when it has native bf16 "
           f"(AVX512-BF16/AMX).\n{machine_line()}; whole script {time.perf_counter() - t0:.0f} s.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
