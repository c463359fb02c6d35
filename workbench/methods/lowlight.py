"""What low-light enhancement methods (TML, Zero-DCE) share: an image-to-image model trained on random patches of
normal-light images, with pseudo low-light inputs from a :class:`~workbench.data.lowlight.Degradation`.

The engine gives ``step`` a ``uint8`` batch of normal-light patches; ``augment`` scales it to [0, 1] and flips
each image at random (horizontally and vertically, per sample, batched). ``enhance`` maps low-light images in
[0, 1], any size, to enhanced images in [0, 1]; it is what evaluation, ``workbench enhance`` and the app call.
"""
from __future__ import annotations

import torch

from workbench.data.lowlight import Degradation
from workbench.methods.base import Method

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LowLightMethod(Method):
    kind = "lowlight"

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

    def enhance_stages(self, low: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Enhanced versions of ``low`` (N, 3, H, W) in [0, 1], one per stage of the method, the final last."""
        raise NotImplementedError

    @torch.no_grad()
    def enhance(self, low: torch.Tensor) -> torch.Tensor:
        """The method's final output for low-light images ``low`` (N, 3, H, W) in [0, 1], any H, W."""
        return list(self.enhance_stages(low).values())[-1]

    def features(self, x):  # pragma: no cover - probes do not apply
        raise TypeError(f"{self.name} is an image enhancer: it has no representation for probes")
