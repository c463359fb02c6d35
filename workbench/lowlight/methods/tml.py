"""TML: Troublemaker Learning for Low-Light Image Enhancement.

Training sees normal-light images only. A troublemaker model (TM) makes pseudo low-light images from them, a
predicting model (PM) brightens those back, and an enhancing model (EM) refines PM's output by predicting a
residual that is subtracted (the public inference code)::

    stage 0  TM:  min  || TM(x, code) - D(x; theta) ||_1          (fit to the degradation family D, or to LOL pairs)
    stage 1  PM:  min  l(PM(x_low), x),         x_low = TM(x, code) + noise   (or D(x; theta) when TM is synthetic)
    stage 2  EM:  min  l(y - EM(y), x),         y = PM(x_low), PM frozen
    inference:    out = y - EM(y),  y = PM(x_low)

with ``l = L1 + w_ssim (1 - SSIM)`` (``pixel_loss`` "l1", the default; "mse" for the squared error): the official
repository has no training code and the paper's losses were not retrievable; L1 plus SSIM is the common choice of
the field. PM and EM are UGDC networks (a UNet with Global Dynamic Convolution blocks). Inputs to PM and EM are
normalised with ImageNet mean/std as in the public code; their outputs are images in [0, 1].

The learned TM (:mod:`workbench.lowlight.nn.troublemaker`) is fitted to the synthetic family, or to the user's
pairs (``lol_dir``), each target with its own darkness code; making training data, it draws codes from those it saw
and the family's Poisson-Gaussian noise is added to its output (it models the tone and colour of darkness).

Follows ``Rainbowman0/TML_LLIE`` (``models/UGDC.py``, ``gdcblock_parts.py``, the inference script: out = y - EM(y)).
Departs: the training losses and the TM network are ours (not published); UGDC's CPU default is width 16 with 3
levels and a 1x1 deepest token grid (the paper: 64, 5 and 5x8, what ``--ugdc-width 64 --ugdc-levels 5`` builds: the
official 17,580,103 / 4,720,679 parameters); GDC's own departures (any input size) are in ``nn/gdc.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import ConfigError, MethodOptions, option
from workbench.lowlight.data import Degradation, aligned_crops
from workbench.lowlight.losses.restoration import restoration_loss
from workbench.methods.base import StepOutput
from workbench.lowlight.methods.base import LowLightMethod
from workbench.lowlight.nn.troublemaker import Troublemaker, darkness_code
from workbench.lowlight.nn.ugdc import enhancing_model, parse_grid, predicting_model

STAGES = ("troublemaker", "predicting", "enhancing")


@dataclass
class TMLOptions(MethodOptions):
    troublemaker: str = option("learned", "learned: fit the TM network first; synthetic: the degradation family "
                               "itself", choices=("learned", "synthetic"))
    tm_epochs: float = option(1.0, "epochs fitting the troublemaker (learned TM only)", ge=0, le=100_000)
    em_epochs: float | None = option(None, "epochs of the enhancing model at the end; default: a third of what "
                                     "the TM leaves", ge=0)
    ugdc_width: int = option(16, "PM's first-level channels (EM uses half); doubles each level", ge=2,
                             note="the paper uses 64")
    ugdc_levels: int = option(3, "UNet levels of PM and EM", ge=1, le=7, note="the paper uses 5")
    gdc_grid: str = option("auto", "GDC query tokens at the deepest level, HxW (e.g. 5x8); each level above doubles "
                           "both; auto: the paper's 5x8 with 5 or more levels, else 1x1 (CPU-sized)")
    pixel_loss: str = option("l1", "pixel term of the loss: l1 (L1, mean absolute error) or mse (mean squared "
                             "error)", choices=("l1", "mse"))
    ssim_weight: float = option(0.2, "loss: pixel_loss (L1) + ssim_weight x (1 - SSIM)", ge=0)

    def __post_init__(self):
        super().__post_init__()
        if self.gdc_grid == "auto":
            self.gdc_grid = "5x8" if self.ugdc_levels >= 5 else "1x1"
        try:
            parse_grid(self.gdc_grid)
        except ValueError as e:
            raise ConfigError(f"gdc_grid={self.gdc_grid!r} is not allowed: {e}, or auto") from None


STAGE_SHARES = (0.1, 0.6, 0.3)  # TM, PM, EM of a budget too small for the plan (benchmarks/lowlight.py's split)


def fit_stages(plan: tuple[int, int, int], total: int, learned_tm: bool) -> tuple[tuple[int, int, int], str]:
    """The stage lengths in steps and a line saying them. When the planned stages leave the predicting or the
    enhancing model without a step inside the run's ``total`` steps (e.g. ``--epochs 1`` with ``--tm-epochs 1``),
    the run's steps are shared 10 / 60 / 30 % instead (no TM share with a synthetic troublemaker), so every stage
    trains; fewer steps than stages is a :class:`ConfigError`."""
    tm, pm, em = plan
    tm = tm if learned_tm else 0
    if pm >= 1 and tm + pm < total:  # each model gets a step (the enhancing stage runs to the end of the run)
        return (tm, pm, em), (f"TML plan: troublemaker {tm}, predicting {pm}, enhancing {total - tm - pm} steps "
                              f"of this run's {total}")
    needed = 3 if learned_tm else 2
    if total < needed:
        raise ConfigError(f"tml: the run has {total} training steps, fewer than its {needed} stages; give it more "
                          "--epochs (or more --patches)")
    shares = STAGE_SHARES if learned_tm else (0.0, 2 / 3, 1 / 3)
    tm_s = max(1, round(shares[0] * total)) if learned_tm else 0
    em_s = max(1, round(shares[2] * total))
    pm_s = total - tm_s - em_s
    return (tm_s, pm_s, em_s), (f"TML plan: the planned troublemaker {tm} / predicting {pm} / enhancing {em} steps "
                                f"leave a model untrained in this run's {total} steps; shared as {tm_s} / {pm_s} / "
                                f"{em_s} instead (set --tm-epochs and --em-epochs to choose)")


class TML(LowLightMethod):
    name = "tml"
    Options = TMLOptions

    def __init__(self, width: int = 16, levels: int = 3, grid=(1, 1), troublemaker: str = "learned",
                 stage_steps: tuple[int, int, int] = (100, 400, 200), ssim_weight: float = 0.2, pixel_loss="l1",
                 degradation: Degradation | None = None, pairs: list | None = None, patch_size: int = 64):
        super().__init__(degradation)
        self.predicting = predicting_model(width=width, levels=levels, grid=grid)
        self.enhancing = enhancing_model(width=max(2, width // 2), levels=levels, grid=grid)
        nn.init.zeros_(self.enhancing.head.weight)  # EM's residual starts at zero: stage 2 begins where PM ended
        nn.init.zeros_(self.enhancing.head.bias)
        self.learned_tm = troublemaker == "learned"
        self.troublemaker = Troublemaker() if self.learned_tm else None
        tm_steps = stage_steps[0] if self.learned_tm else 0
        ends = [tm_steps, tm_steps + stage_steps[1], tm_steps + stage_steps[1] + stage_steps[2]]
        self.register_buffer("stage_ends", torch.tensor(ends))  # in the checkpoint: a resume keeps the plan
        self.ssim_weight, self.pixel_loss, self.patch_size = ssim_weight, pixel_loss, patch_size
        self.pairs = pairs or []  # (low, high) float (3, H, W) tensors for fitting the TM to real darkness
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("codes", torch.zeros(4096, 2))  # darkness codes (c, s) seen while fitting the TM
        self.register_buffer("codes_seen", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, bundle):
        steps_per_epoch = bundle.steps_per_epoch(cfg.batch_size) if bundle is not None else 1
        tm = cfg.tm_epochs if cfg.troublemaker == "learned" else 0.0
        left = max(cfg.epochs - tm, 0.0)
        em = cfg.em_epochs if cfg.em_epochs is not None else left / 3
        pm = max(left - em, 0.0)
        pairs = []
        if cfg.troublemaker == "learned" and bundle is not None:  # the user's LOL pairs (read with the dataset)
            chw = lambda a: torch.from_numpy(a).permute(2, 0, 1).contiguous()  # noqa: E731
            pairs = [(chw(lo), chw(hi)) for _, lo, hi in bundle.pairs]
        steps, note = fit_stages(tuple(round(e * steps_per_epoch) for e in (tm, pm, em)),
                                 round(cfg.epochs * steps_per_epoch), cfg.troublemaker == "learned")
        method = cls(width=cfg.ugdc_width, levels=cfg.ugdc_levels, grid=parse_grid(cfg.gdc_grid),
                     troublemaker=cfg.troublemaker, stage_steps=steps, ssim_weight=cfg.ssim_weight,
                     pixel_loss=cfg.pixel_loss, pairs=pairs, patch_size=cfg.patch_size)
        method.notes_for_first_step.append(note)
        return method

    # ------------------------------------------------------------------ stages
    def stage(self, step: int | None = None) -> int:
        """0 troublemaker, 1 predicting, 2 enhancing (the last stage continues past its planned end)."""
        step = int(self.steps_done) if step is None else step
        return next((i for i, end in enumerate(self.stage_ends.tolist()) if step < end), 2)

    def end_stage(self) -> None:
        """End the current stage now; the later stages keep their planned lengths (e.g. a wall-clock budget)."""
        stage, now = self.stage(), int(self.steps_done)
        if stage < 2:
            self.stage_ends[stage:] -= int(self.stage_ends[stage]) - now

    @property
    def em_trained(self) -> bool:
        return int(self.steps_done) > int(self.stage_ends[1])

    # ------------------------------------------------------------------ pseudo low-light images
    def _record_codes(self, code: torch.Tensor) -> None:
        n = len(self.codes)
        pos = (int(self.codes_seen) + torch.arange(len(code), device=code.device)) % n
        self.codes[pos] = code.detach().float()
        self.codes_seen += len(code)

    @torch.no_grad()
    def make_low_light(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pseudo low-light versions of normal-light ``x``: the fitted TM plus sensor noise, or the family itself."""
        params = self.degradation.sample(len(x), generator, x.device)
        if self.troublemaker is None or int(self.codes_seen) == 0:
            return self.degradation.apply(x, params, generator)
        seen = min(int(self.codes_seen), len(self.codes))
        code = self.codes[torch.randint(seen, (len(x),), generator=generator, device=x.device)]
        was = self.troublemaker.training
        self.troublemaker.eval()
        dark = self.troublemaker(x, code)
        self.troublemaker.train(was)
        return self.degradation.add_noise(dark, params, generator)

    # ------------------------------------------------------------------ training
    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        x = self.augment(images, generator)
        stage = self.stage(step)
        notes = []
        if step == ([0] + self.stage_ends.tolist())[stage]:
            notes.append(f"TML stage {stage}: training the {STAGES[stage]} model")
        self.steps_done.fill_(step + 1)  # kept with the weights: whether EM has trained (inference reads it)
        if stage == 0:
            if self.pairs:
                low, high = aligned_crops(self.pairs, len(x), self.patch_size, generator, x.device)
                target, x = low, high
            else:
                target = self.degradation.noiseless(x, self.degradation.sample(len(x), generator, x.device))
            code = darkness_code(target, x)
            self._record_codes(code)
            loss = F.l1_loss(self.troublemaker(x, code), target)
            return StepOutput(loss=loss, logs={"stage": 0.0, "tm_l1": loss.item()}, notes=notes)
        low = self.make_low_light(x, generator)
        if stage == 1:
            out = self.predicting(self.normalize(low))
        else:
            with torch.no_grad():
                self.predicting.eval()  # frozen: its batch-norm statistics stay those of stage 1
                coarse = self.predicting(self.normalize(low)).clamp(0, 1)
            out = coarse - self.enhancing(self.normalize(coarse))
        loss = restoration_loss(out.float(), x.float(), self.ssim_weight, self.pixel_loss)
        with torch.no_grad():
            mse = F.mse_loss(out.float().clamp(0, 1), x.float()).clamp_min(1e-10)
        logs = {"stage": float(stage), "train_psnr": -10 * math.log10(mse.item())}
        return StepOutput(loss=loss, logs=logs, notes=notes)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.stage() == 2:
            self.predicting.eval()
        return self

    # ------------------------------------------------------------------ inference
    def stage_outputs(self, low: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"pm": PM(x), "pm+em": PM(x) - EM(PM(x))}`` (the second only once EM has trained), in [0, 1]."""
        coarse = self.predicting(self.normalize(low)).clamp(0, 1)
        out = {"pm": coarse}
        if self.em_trained:
            out["pm+em"] = (coarse - self.enhancing(self.normalize(coarse))).clamp(0, 1)
        return out
