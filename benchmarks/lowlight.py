"""Low-light enhancement: the dark input, gamma baselines, Zero-DCE and TML (PM, PM+EM) on held-out synthetic pairs.

Normal-light training patches are random crops of scikit-image's sample photographs (``load_lowlight_dataset(
"photos")``: ``--patches`` crops of ``--patch-size`` pixels); the held-out pairs are the test crops of the held-out
photos darkened once by the default degradation family under the seed the engine's evaluation uses (so the numbers
match a run's logged ``psnr``/``ssim``). Scores follow ``workbench.diagnostics.image_quality.PROTOCOL``.

* dark input: the low-light image itself; gamma 2.2: ``x^(1/2.2)``; adaptive gamma: ``x^g`` per image with ``g`` chosen
  so that the mean luminance becomes 0.5 (no reference used).
* Zero-DCE and TML are trained by the real engine (``Trainer(TrainConfig(method=..., device="cpu"))``, batch 16,
  AdamW, peak lr ``--lr``) for the same wall-clock ``--budget`` each, on a cosine schedule in time (:class:`StageBudget`);
  TML splits the budget 10 / 60 / 30 % over its troublemaker, predicting and enhancing stages (``TML.end_stage``
  when a share is used), each with its own cosine. The per-epoch evaluation callback is
  removed so it does not eat into the budget; scoring happens after the stop.

Parameters are those used at inference (TML: PM + EM; the troublemaker is listed apart). ms/megapixel: median of 3
enhancements of one 512 x 512 image, on the CPU threads of the run.

    python benchmarks/lowlight.py [--budget 120] [--patches 2048] [--width 16] [--levels 3] [--lr 2e-3] [--quick]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import Budget, machine_line, markdown_table, median, setup_threads

import numpy as np
import torch

from workbench import TrainConfig
from workbench.lowlight.data import held_out_pairs, load_lowlight_dataset
from workbench.diagnostics import image_quality as iq
from workbench.engine.build import build
from workbench.engine.trainer import Trainer
from workbench.lowlight.methods.base import adaptive_gamma, gamma_correction


class StageBudget(Budget):
    """A wall-clock budget split into stages by ``shares`` (TML: troublemaker, predicting, enhancing; one stage for
    Zero-DCE), each trained on its own cosine learning-rate schedule in time, ``lr * (1 + cos(pi t)) / 2`` with
    ``t`` the fraction of the stage's time used: a cosine over steps cannot be planned when the number of steps is
    not known in advance, and each TML model is trained as a separate optimisation in the paper."""

    def __init__(self, budget: float, shares=(1.0,)):
        super().__init__(budget)
        self.bounds = np.concatenate([[0.0], np.cumsum(shares) / np.sum(shares) * budget])

    def on_fit_start(self, trainer) -> None:
        super().on_fit_start(trainer)
        trainer.scheduler.lr_lambdas = [self.lr_factor] * len(trainer.optimizer.param_groups)
        for group, base in zip(trainer.optimizer.param_groups, trainer.scheduler.base_lrs):
            group["lr"] = base * self.lr_factor(0)  # the first step's learning rate comes from this schedule too

    def stage_index(self) -> int:
        return int(min(np.searchsorted(self.bounds, self.elapsed(), side="right") - 1, len(self.bounds) - 2))

    def lr_factor(self, _step: int) -> float:
        i = self.stage_index()
        t = (self.elapsed() - self.bounds[i]) / (self.bounds[i + 1] - self.bounds[i])
        return max(0.005, 0.5 * (1 + np.cos(np.pi * min(t, 1.0))))

    def on_step_end(self, trainer, out) -> None:
        method = trainer.method
        if hasattr(method, "end_stage") and method.stage() < min(self.stage_index(), 2):
            method.end_stage()
        super().on_step_end(trainer, out)


def params(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def ms_per_megapixel(fn, size: int = 512) -> float:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.2
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000 * median(times) / (size * size / 1e6)


def train(method: str, args, runs_dir: str, budget: Budget):
    cfg = TrainConfig(method=method, dataset="photos", epochs=10_000, device="cpu", progress=False, runs_dir=runs_dir,
                      patches=args.patches, patch_size=args.patch_size, ugdc_width=args.width,
                      ugdc_levels=args.levels, em_epochs=1.0, lr=args.lr, seed=0)
    # no per-epoch evaluation: the benchmark scores every method itself, after the same budget
    trainer = Trainer(cfg, callbacks=[budget], parts=build(cfg, torch.device("cpu"), callbacks=[]))
    result = trainer.fit()
    return trainer.method.eval(), result


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=120.0, help="wall-clock seconds of training per method")
    p.add_argument("--patches", type=int, default=2048)
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=16, help="TML PM width (EM: half)")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate of every stage")
    p.add_argument("--quick", action="store_true", help="budget 20 s, 512 patches")
    args = p.parse_args(argv)
    if args.quick:
        args.budget, args.patches = 20.0, 512
    setup_threads(2)
    bundle = load_lowlight_dataset("photos", patch_size=args.patch_size, n_train=args.patches, seed=0)
    lows, refs = held_out_pairs(bundle.test.images)
    rows = []

    def add(name, n_params, steps, outs, ms, note=""):
        q = iq.quality(outs, refs)
        rows.append([name, f"{n_params:,}" if n_params else "-", steps, f"{q['psnr']:.2f}", f"{q['ssim']:.4f}",
                     f"{ms:.0f}" if ms == ms else "-", note])

    add("dark input", 0, "-", lows, float("nan"))
    add("gamma 2.2", 0, "-", gamma_correction(lows), float("nan"))
    add("adaptive gamma (mean luminance 0.5)", 0, "-", adaptive_gamma(lows), float("nan"))
    with tempfile.TemporaryDirectory() as runs:
        dce, res = train("zerodce", args, runs, StageBudget(args.budget))
        with torch.no_grad():
            add("Zero-DCE", params(dce.net), f"{res.step} / {args.budget:.0f} s", dce.enhance(lows),
                ms_per_megapixel(dce.enhance))
        tml, res = train("tml", args, runs, StageBudget(args.budget, (0.1, 0.6, 0.3)))
        ends = tml.stage_ends.tolist()
        with torch.no_grad():
            stages = tml.enhance_stages(lows)
            pm = lambda x: tml.enhance_stages(x)["pm"]  # noqa: E731
            plan = f"TM {ends[0]}, PM {ends[1] - ends[0]}, EM {res.step - ends[1]} steps"
            add("TML: PM", params(tml.predicting), f"{res.step} / {args.budget:.0f} s", stages["pm"],
                ms_per_megapixel(pm), plan)
            if "pm+em" in stages:
                add("TML: PM + EM", params(tml.predicting) + params(tml.enhancing), "(same run)", stages["pm+em"],
                    ms_per_megapixel(tml.enhance), f"troublemaker {params(tml.troublemaker):,} parameters")
    headers = ["method", "parameters", "training steps / budget", "PSNR (dB)", "SSIM", "ms / megapixel", "notes"]
    out = "\n".join([
        f"Low-light enhancement on {len(refs)} held-out synthetic pairs ({refs.shape[-1]} px crops of "
        f"{bundle.source}); training on {args.patches} patches of {args.patch_size} px, batch 16, CPU, "
        f"{args.budget:.0f} s per method, AdamW peak lr {args.lr:g} on a cosine in time; TML UGDC width {args.width}, "
        f"{args.levels} levels.",
        f"Protocol: {iq.PROTOCOL}", machine_line(), "", markdown_table(headers, rows)])
    print(out)
    return out


if __name__ == "__main__":
    main()
