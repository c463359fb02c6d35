"""TML: Troublemaker Learning for Low-Light Image Enhancement.

Training sees normal-light images only. A troublemaker model (TM) makes pseudo low-light images from them, a
predicting model (PM) brightens those back, and an enhancing model (EM) refines PM's output by predicting a
residual that is subtracted (the public inference code)::

    stage 0  TM:  min  || TM(x, c) - D(x; theta) ||_1          (fit to the degradation family D, or to LOL pairs)
    stage 1  PM:  min  l(PM(x_low), x),         x_low = TM(x, c) + noise   (or D(x; theta) when TM is synthetic)
    stage 2  EM:  min  l(y - EM(y), x),         y = PM(x_low), PM frozen
    inference:    out = y - EM(y),  y = PM(x_low)

with ``l = smooth_L1 + w_ssim (1 - SSIM)`` (the paper's losses were not retrievable; a pixel loss plus SSIM is the
usual choice). PM and EM are UGDC networks (a UNet with Global Dynamic Convolution blocks). Inputs to PM and EM are
normalised with ImageNet mean/std as in the public code; their outputs are images in [0, 1].

The learned TM is a small dilated convnet ``TM(x, c) = x * exp(-softplus(-(log c + f([x, c]))))`` (it can only
darken; with ``f = 0``, its initialisation, it is about ``c * x``) conditioned on the target brightness ratio
``c = mean(x_low) / mean(x)``: fitted to the synthetic family (random
exposure, gamma and colour shift), or to the user's paired images (``lol_dir``), where ``c`` is each pair's own
ratio. When it makes training data it draws ``c`` from the ratios it saw while fitting, and Poisson-Gaussian sensor
noise of the family is added to its output (the TM models the tone and colour of darkness, not the noise).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.lowlight import Degradation
from workbench.losses.restoration import restoration_loss
from workbench.methods.base import StepOutput
from workbench.methods.lowlight import LowLightMethod
from workbench.nn.ugdc import enhancing_model, predicting_model

STAGES = ("troublemaker", "predicting", "enhancing")


class Troublemaker(nn.Module):
    """``TM(x, c) = x * exp(-softplus(-(log c + f([x, c]))))``: a per-pixel, per-channel darkening of ``x`` (in
    [0, 1]) conditioned on the brightness ratio ``c`` (N,), broadcast as a fourth input channel. The exponent is a
    smooth ``min(log c + f, 0)``: ``f`` starts at zero (last conv zero-initialised), so an untrained TM already
    scales by about ``c`` and training learns the tone curve and colour around it. Dilations 1-2-4-8 give ``f`` a
    31-pixel receptive field so the darkening can depend on the neighbourhood (local tone curves)."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers, ch = [], 4
        for d in (1, 2, 4, 8):
            layers += [nn.Conv2d(ch, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            ch = width
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        cond = c.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]).to(x.dtype)
        log_c = cond.clamp_min(1e-4).log()
        return x * torch.exp(-F.softplus(-(log_c + self.net(torch.cat([x, cond], dim=1)))))


def brightness_ratio(dark: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``c = mean(dark) / mean(x)`` per image (N,), clamped to (0, 1]."""
    return (dark.mean(dim=(1, 2, 3)) / x.mean(dim=(1, 2, 3)).clamp_min(1e-3)).clamp(1e-3, 1.0)


class TML(LowLightMethod):
    name = "tml"

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
        self.register_buffer("ratios", torch.zeros(4096))  # brightness ratios seen while fitting the TM
        self.register_buffer("ratios_seen", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        n = bundle and len(bundle.train) or cfg.patches
        steps_per_epoch = max(1, n // min(cfg.batch_size, n))
        tm = cfg.tm_epochs if cfg.troublemaker == "learned" else 0.0
        left = max(cfg.epochs - tm, 0.0)
        em = cfg.em_epochs if cfg.em_epochs is not None else left / 3
        pm = max(left - em, 0.0)
        pairs = []
        if cfg.lol_dir and cfg.troublemaker == "learned" and bundle is not None:
            from workbench.data.lowlight import load_lol_pairs

            good, _ = load_lol_pairs(cfg.lol_dir)
            pairs = [(torch.from_numpy(lo).permute(2, 0, 1).contiguous(), torch.from_numpy(hi).permute(2, 0, 1)
                      .contiguous()) for _, lo, hi in good]
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
    def _record_ratios(self, c: torch.Tensor) -> None:
        n = len(self.ratios)
        pos = (int(self.ratios_seen) + torch.arange(len(c), device=c.device)) % n
        self.ratios[pos] = c.detach().float()
        self.ratios_seen += len(c)

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
        if self.troublemaker is None or int(self.ratios_seen) == 0:
            return self.degradation.apply(x, params, generator)
        seen = min(int(self.ratios_seen), len(self.ratios))
        c = self.ratios[torch.randint(seen, (len(x),), generator=generator, device=x.device)]
        was = self.troublemaker.training
        self.troublemaker.eval()
        dark = self.troublemaker(x, c)
        self.troublemaker.train(was)
        return self.degradation.add_noise(dark, params, generator)

    # ------------------------------------------------------------------ training
    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        x = self.augment(images, generator)
        stage = self.stage()
        notes = []
        if int(self.steps_done) == ([0] + self.stage_ends.tolist())[stage]:
            notes.append(f"TML stage {stage}: training the {STAGES[stage]} model")
        self.steps_done += 1
        if stage == 0:
            if self.pairs:
                low, high = self._pair_crops(len(x), generator, x.device)
                target, x = low, high
            else:
                target = self.degradation.noiseless(x, self.degradation.sample(len(x), generator, x.device))
            c = brightness_ratio(target, x)
            self._record_ratios(c)
            loss = F.l1_loss(self.troublemaker(x, c), target)
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
    @torch.no_grad()
    def enhance_stages(self, low: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"pm": PM(x), "pm+em": PM(x) - EM(PM(x))}`` (the second only once EM has trained), in [0, 1]."""
        was = self.training
        self.eval()
        try:
            coarse = self.predicting(self.normalize(low)).clamp(0, 1)
            out = {"pm": coarse}
            if self.em_trained:
                out["pm+em"] = (coarse - self.enhancing(self.normalize(coarse))).clamp(0, 1)
            return out
        finally:
            self.train(was)
