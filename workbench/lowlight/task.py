"""The low-light enhancement task: an image-to-image network trained on random patches of normal-light images
(TML, Zero-DCE), judged by PSNR/SSIM on held-out pairs (:mod:`workbench.lowlight.evaluation`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.config import Options, option
from workbench.engine.task import Task
from workbench.lowlight.data import load_lowlight_dataset
from workbench.lowlight.evaluation import LowLightEvaluation


@dataclass
class LowLightOptions(Options):
    patch_size: int = option(64, "training crops (pixels)", ge=8)
    patches: int = option(2048, "random crops drawn per run from the training images (an epoch)", ge=2)
    lol_dir: str | None = option(None, "a LOL-style folder of low/high pairs: the troublemaker is fitted to them, "
                                 "and the run is evaluated on them too")


class LowLightTask(Task):
    name = "lowlight"
    title = "low-light enhancement"
    Options = LowLightOptions
    default_dataset = "photos"
    default_batch_size = 16
    pages = ("curves", "images")
    score = ("psnr", "PSNR")
    bf16_on_cpu = False  # Zero-DCE's 8 iterated curves and the UGDC's dynamic kernels stay fp32 on a CPU

    def datasets(self) -> list[str]:
        return ["photos"]

    def load_data(self, cfg, probe: bool = False):
        return load_lowlight_dataset(cfg.dataset, patch_size=cfg.patch_size, n_train=8 if probe else cfg.patches,
                                     seed=cfg.seed, lol_dir=None if probe else cfg.lol_dir)

    def build_method(self, cfg, bundle, device: torch.device):
        from workbench.methods import METHODS

        return METHODS[cfg.method].from_config(cfg, bundle), {}

    def callbacks(self, cfg) -> list:
        return [LowLightEvaluation(cfg.eval_every)]

    def summary(self, metrics: dict) -> str:
        nan = float("nan")
        return (f"PSNR {metrics.get('psnr', nan):.2f} dB (dark input {metrics.get('psnr_input', nan):.2f}), "
                f"SSIM {metrics.get('ssim', nan):.4f}")

    def knob(self, config: dict) -> str:
        return f"{config.get('patch_size')} px patches"


LOWLIGHT = LowLightTask()
