"""What low-light enhancement methods (TML, Zero-DCE) share: an image-to-image model trained on random patches of
normal-light images, with pseudo low-light inputs from a :class:`~workbench.lowlight.data.Degradation`.

The engine gives ``step`` a ``uint8`` batch of normal-light patches; ``augment`` scales it to [0, 1] and flips
each image at random (horizontally and vertically, per sample, batched). ``enhance`` maps low-light images in
[0, 1], any size, to enhanced images in [0, 1]; it is what evaluation, ``workbench enhance`` and the app call.
"""
from __future__ import annotations

import math

import torch

from workbench.lowlight.data import IMAGENET_MEAN, IMAGENET_STD, Degradation
from workbench.methods.base import Method


class LowLightMethod(Method):
    task = "lowlight"

    def __init__(self, degradation: Degradation | None = None):
        super().__init__(backbone=None)
        self.degradation = degradation or Degradation()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``uint8`` patches -> float [0, 1], each flipped horizontally and vertically with probability 1/2."""
        x = images.float() / 255
        flips = torch.rand(2, len(x), 1, 1, 1, generator=generator, device=generator.device).to(x.device) < 0.5
        x = torch.where(flips[0], x.flip(-1), x)
        return torch.where(flips[1], x.flip(-2), x)

    @classmethod
    def from_config(cls, cfg, bundle) -> "LowLightMethod":
        """Build the method from a run's configuration and the patches it will train on (``None`` when only its
        weights are loaded, e.g. to enhance images)."""
        raise NotImplementedError

    def stage_outputs(self, low: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """What :meth:`enhance_stages` returns; called in eval mode without gradients."""
        raise NotImplementedError

    @torch.no_grad()
    def enhance_stages(self, low: torch.Tensor) -> dict[str, torch.Tensor]:
        """Enhanced versions of ``low`` (N, 3, H, W) in [0, 1], one per stage of the method, the final last; in eval
        mode (batch-norm running statistics), the training mode restored afterwards."""
        was = self.training
        self.eval()
        try:
            return self.stage_outputs(low)
        finally:
            self.train(was)

    @torch.no_grad()
    def enhance(self, low: torch.Tensor) -> torch.Tensor:
        """The method's final output for low-light images ``low`` (N, 3, H, W) in [0, 1], any H, W."""
        return list(self.enhance_stages(low).values())[-1]

    def features(self, x):  # pragma: no cover - probes do not apply
        raise TypeError(f"{self.name} is an image enhancer: it has no representation for probes")


# ---------------------------------------------------------------------------- training-free baselines
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as workbench.diagnostics.image_quality's luminance


def gamma_correction(low: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """``low^(1/gamma)``: the fixed-curve brightening every photo tool has (``low`` (N, 3, H, W) in [0, 1])."""
    return low.clamp(0, 1) ** (1 / gamma)


def adaptive_gamma(low: torch.Tensor, target: float = 0.5) -> torch.Tensor:
    """``low^g`` with ``g = log(target) / log(mean luminance)`` per image, so that each image's mean luminance
    becomes about ``target``; no reference image is used."""
    luma = (low.clamp(0, 1) * torch.tensor(LUMA, dtype=low.dtype, device=low.device).view(1, 3, 1, 1)).sum(1)
    g = math.log(target) / luma.mean((1, 2)).clamp(1e-3, 0.999).log()
    return low.clamp(0, 1) ** g.view(-1, 1, 1, 1)
