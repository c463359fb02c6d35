"""TML: Troublemaker Learning for Low-Light Image Enhancement.

Training sees normal-light images only. A troublemaker model (TM) makes pseudo low-light images from them, a
predicting model (PM) brightens those back, and an enhancing model (EM) refines PM's output by predicting a
residual that is subtracted (the public inference code)::

    stage 0  TM:  min  || TM(x, code) - D(x; theta) ||_1          (fit to the degradation family D, or to LOL pairs)
    stage 1  PM:  min  l(PM(x_low), x),         x_low = TM(x, code) + noise   (or D(x; theta) when TM is synthetic)
    stage 2  EM:  min  l(y - EM(y), x),         y = PM(x_low), PM frozen
    inference:    out = y - EM(y),  y = PM(x_low)

with ``l = smooth_L1 + w_ssim (1 - SSIM)`` (the paper's losses were not retrievable; a pixel loss plus SSIM is the
usual choice). PM and EM are UGDC networks (a UNet with Global Dynamic Convolution blocks). Inputs to PM and EM are
normalised with ImageNet mean/std as in the public code; their outputs are images in [0, 1].

The learned TM (:class:`Troublemaker`) is a global tone curve ``k x^s`` times a learned local correction
``exp(f([x, c, s]))`` (a small dilated convnet, zero at initialisation), conditioned on a two-number code of the
darkness it should produce (:func:`darkness_code`): the brightness ratio ``c = mean(x_low) / mean(x)`` and the
tone-curve exponent ``s``, the slope of ``log x_low`` against ``log x`` (``s = gamma`` for ``x_low = k x^gamma``).
It is fitted to the synthetic family (random exposure, gamma and colour shift), or to the user's paired images
(``lol_dir``), each target with its own code. When it makes training data it draws codes from those it saw while
fitting, and Poisson-Gaussian sensor noise of the family is added to its output (the TM models the tone and
colour of darkness, not the noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import MethodOptions, option
from workbench.lowlight.data import Degradation
from workbench.lowlight.losses.restoration import restoration_loss
from workbench.methods.base import StepOutput
from workbench.lowlight.methods.base import LowLightMethod
from workbench.lowlight.nn.ugdc import enhancing_model, predicting_model

STAGES = ("troublemaker", "predicting", "enhancing")


class Troublemaker(nn.Module):
    """A per-pixel, per-channel darkening of ``x`` (in [0, 1]) conditioned on ``code = (c, s)`` (N, 2) of
    :func:`darkness_code`::

        TM(x, c, s) = x * exp(-softplus(-(log t - log x + f([x, c, s]))))      a smooth min(t e^f, x)
        t = k x^s,   k = c mean(x) / mean(x^s)                                 the global tone curve of the code

    ``f`` starts at zero (last conv zero-initialised), so an untrained TM already has the code's brightness and
    contrast; training learns the colour and the local departures from one global curve. Dilations 1-2-4-8 give
    ``f`` a 31-pixel receptive field (local tone curves). The code is broadcast as two more input channels."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers, ch = [], 5
        for d in (1, 2, 4, 8):
            layers += [nn.Conv2d(ch, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            ch = width
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        cond = (code * CODE_SCALE.to(code)).view(-1, 2, 1, 1).expand(-1, 2, *x.shape[-2:]).to(x.dtype)
        c, s = (code[:, i].view(-1, 1, 1, 1).to(x.dtype) for i in (0, 1))
        log_x = x.clamp_min(1 / 255).log()
        log_k = (c.clamp_min(1e-4) * x.mean((1, 2, 3), keepdim=True)).log() - \
            (s * log_x).exp().mean((1, 2, 3), keepdim=True).log()
        return x * torch.exp(-F.softplus(-(log_k + (s - 1) * log_x + self.net(torch.cat([x, cond], dim=1)))))


CODE_SCALE = torch.tensor([1.0, 0.25])  # brings s (about 1 to 5) to the range of c as a network input


def brightness_ratio(dark: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``c = mean(dark) / mean(x)`` per image (N,), clamped to (0, 1]."""
    return (dark.mean(dim=(1, 2, 3)) / x.mean(dim=(1, 2, 3)).clamp_min(1e-3)).clamp(1e-3, 1.0)


def darkness_code(dark: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(c, s)`` per image (N, 2): the brightness ratio and the least-squares slope of ``log dark`` against
    ``log x`` over the pixels (``s = gamma`` when ``dark = k x^gamma``), clamped to [0.25, 8]; logs of values
    below 1/255 are floored there."""
    lx, ld = (t.float().clamp_min(1 / 255).log().flatten(1) for t in (x, dark))
    lx, ld = lx - lx.mean(1, keepdim=True), ld - ld.mean(1, keepdim=True)
    s = (lx * ld).sum(1) / (lx * lx).sum(1).clamp_min(1e-6)
    return torch.stack([brightness_ratio(dark, x), s.clamp(0.25, 8.0)], dim=1)


@dataclass
class TMLOptions(MethodOptions):
    troublemaker: str = option("learned", "learned: fit the TM network first; synthetic: the degradation family "
                               "itself", choices=("learned", "synthetic"))
    tm_epochs: float = option(1.0, "epochs fitting the troublemaker (learned TM only)", ge=0)
    em_epochs: float | None = option(None, "epochs of the enhancing model at the end; default: a third of what "
                                     "the TM leaves", ge=0)
    ugdc_width: int = option(16, "PM's first-level channels (EM uses half); doubles each level", ge=2,
                             note="the paper uses 64")
    ugdc_levels: int = option(3, "UNet levels of PM and EM", ge=1, le=7, note="the paper uses 5")
    gdc_grid: int = option(8, "GDC tokens: a grid x grid pooled query map", ge=1)
    ssim_weight: float = option(0.2, "loss: smooth L1 + ssim_weight x (1 - SSIM)", ge=0)


class TML(LowLightMethod):
    name = "tml"
    Options = TMLOptions

    def __init__(self, width: int = 16, levels: int = 3, grid: int = 8, troublemaker: str = "learned",
                 stage_steps: tuple[int, int, int] = (100, 400, 200), ssim_weight: float = 0.2,
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
        self.ssim_weight, self.patch_size = ssim_weight, patch_size
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
        return cls(width=cfg.ugdc_width, levels=cfg.ugdc_levels, grid=cfg.gdc_grid, troublemaker=cfg.troublemaker,
                   stage_steps=tuple(round(e * steps_per_epoch) for e in (tm, pm, em)), ssim_weight=cfg.ssim_weight,
                   pairs=pairs, patch_size=cfg.patch_size)

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

    def _pair_crops(self, n: int, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` aligned random crops (low, high) from the user's pairs (upscaled where a pair is smaller)."""
        p = self.patch_size
        pick = torch.randint(len(self.pairs), (n,), generator=generator, device=generator.device).tolist()
        lows, highs = [], []
        for i in pick:
            lo, hi = self.pairs[i]
            if min(lo.shape[-2:]) < p:
                scale = p / min(lo.shape[-2:])
                lo, hi = (F.interpolate(t[None], scale_factor=scale, mode="bilinear", align_corners=False)[0]
                          for t in (lo, hi))
            h, w = lo.shape[-2:]
            top = int(torch.randint(h - p + 1, (1,), generator=generator, device=generator.device))
            left = int(torch.randint(w - p + 1, (1,), generator=generator, device=generator.device))
            lows.append(lo[:, top:top + p, left:left + p])
            highs.append(hi[:, top:top + p, left:left + p])
        return torch.stack(lows).to(device), torch.stack(highs).to(device)

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
                low, high = self._pair_crops(len(x), generator, x.device)
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
        loss = restoration_loss(out.float(), x.float(), self.ssim_weight)
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
