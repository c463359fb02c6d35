"""Evaluation of low-light enhancement runs: PSNR/SSIM on fixed held-out pairs, every stage of the method, and the
images the app shows."""
from __future__ import annotations

import numpy as np
import torch

from workbench.diagnostics import image_quality as iq
from workbench.engine.callbacks import Callback
from workbench.lowlight.data import HELD_OUT_SEED, held_out_pairs


class EvalSet:
    """Fixed evaluation pairs (lists of (1, 3, H, W) tensors: sizes may differ) and the dark inputs' own per-image
    scores, computed once: the floor every evaluation is shown against."""

    def __init__(self, lows: list[torch.Tensor], refs: list[torch.Tensor]):
        self.lows, self.refs = lows, refs
        self.psnr_input = np.concatenate([iq.psnr(x, r) for x, r in zip(lows, refs)])
        self.ssim_input = np.concatenate([iq.ssim(x, r) for x, r in zip(lows, refs)])


class LowLightEvaluation(Callback):
    """Before training and every ``every`` epochs, for low-light enhancement methods: PSNR and SSIM (the protocol of
    :mod:`workbench.diagnostics.image_quality`) of the method's output on fixed held-out synthetic pairs (the test
    images darkened once by the degradation family under a fixed seed), with the dark input's own scores logged
    beside them as the floor to beat (``psnr_input``); each stage of the method (TML: ``psnr_pm`` before the
    enhancing model); mean brightness and exposure error of the output; the same on the user's LOL pairs when
    the dataset carries them (``lol_dir``: ``lol_psnr``, ...); LPIPS (``lpips``) only where its weights are already on disk (an info
    event says why not otherwise); and input / enhanced / reference images of the first ``n_show`` pairs, stored as
    arrays for the app."""

    SEED = HELD_OUT_SEED

    def __init__(self, every: int = 1, n_show: int = 6, batch_size: int = 8):
        self.every, self.n_show, self.batch_size = every, n_show, batch_size
        self.sets: dict[str, EvalSet] = {}  # by metric prefix: "" (synthetic pairs), "lol_"
        self.lpips = False

    def on_fit_start(self, trainer) -> None:
        from workbench.data.views import image_grid
        why_not = iq.perceptual_metrics_available()["lpips"]
        self.lpips = why_not is None
        if why_not and trainer.step == 0:
            trainer.writer.event(0, f"LPIPS not computed: {why_not}", "info")

        low, ref = held_out_pairs(trainer.bundle.test.images, trainer.method.degradation, self.SEED)
        self.sets = {"": EvalSet(list(low.split(1)), list(ref.split(1)))}
        for path, why in trainer.bundle.pair_failures:
            trainer.writer.event(trainer.step, f"LOL pairs: skipped {path}: {why}", "warning")
        if trainer.bundle.pairs:
            as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
            self.sets["lol_"] = EvalSet([as_tensor(lo) for _, lo, _ in trainer.bundle.pairs],
                                        [as_tensor(hi) for _, _, hi in trainer.bundle.pairs])
        if trainer.step == 0:
            self.evaluate(trainer)
            trainer.flush()
            # what the run trains on: normal-light patches and their pseudo low-light inputs
            x = trainer.bundle.train.images[:8].to(trainer.device).float() / 255
            dark = trainer.method.degradation(x, torch.Generator(x.device).manual_seed(self.SEED))[0]
            grid = image_grid(torch.cat([x, dark]), nrow=len(x))
            trainer.writer.add_image(0, "views", grid, {"rows": ["normal-light patch", "synthetic low-light"]})

    def on_epoch_end(self, trainer) -> None:
        if (trainer.epoch + 1) % self.every == 0 or trainer.epoch + 1 == trainer.cfg.epochs:
            self.evaluate(trainer)

    @torch.no_grad()
    def _enhance(self, trainer, lows: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Every stage's output for every image (images of one set may differ in size: batched when they match)."""
        out: dict[str, list[torch.Tensor]] = {}
        i = 0
        while i < len(lows):
            j = i + 1
            while j < len(lows) and j - i < self.batch_size and lows[j].shape == lows[i].shape:
                j += 1
            batch = torch.cat(lows[i:j]).to(trainer.device)
            for key, y in trainer.method.enhance_stages(batch).items():
                out.setdefault(key, []).extend(y.float().cpu().split(1))
            i = j
        return out

    def evaluate(self, trainer) -> None:
        result, arrays = {}, {}
        for prefix, s in self.sets.items():
            lows, refs = s.lows, s.refs
            per_image = lambda fn, xs: np.concatenate([fn(x, r) for x, r in zip(xs, refs)])  # noqa: E731
            result[f"{prefix}psnr_input"] = float(s.psnr_input.mean())
            result[f"{prefix}ssim_input"] = float(s.ssim_input.mean())
            stages = self._enhance(trainer, lows)
            final = list(stages)[-1]
            for key, outs in stages.items():
                suffix = "" if key == final else "_" + key.replace("+", "_")
                psnr, ssim = per_image(iq.psnr, outs), per_image(iq.ssim, outs)
                result[f"{prefix}psnr{suffix}"] = float(psnr.mean())
                result[f"{prefix}ssim{suffix}"] = float(ssim.mean())
                if key == final:
                    result[f"{prefix}brightness"] = float(np.mean([iq.mean_brightness(y).mean() for y in outs]))
                    result[f"{prefix}exposure_error"] = float(np.mean([iq.exposure_error(y).mean() for y in outs]))
                    if self.lpips:
                        result[f"{prefix}lpips"] = float(per_image(iq.lpips, outs).mean())
                    if prefix == "":
                        n = min(self.n_show, len(outs))
                        to8 = lambda xs: (torch.cat(xs[:n]) * 255).round().clamp(0, 255).to(torch.uint8)  # noqa
                        arrays = dict(input=to8(lows), enhanced=to8(outs), reference=to8(refs),
                                      psnr=psnr[:n], ssim=ssim[:n], psnr_input=s.psnr_input[:n])
                        if len(stages) > 1:
                            arrays["first_stage"] = to8(list(stages.values())[0])
        trainer.pending["scalars"].update(result)
        if arrays:
            trainer.writer.add_arrays(trainer.step, "lowlight", {"epoch": trainer.epochs_done,
                                                                 "stages": list(stages), **result}, **arrays)
