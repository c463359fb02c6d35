"""TML's troublemaker model (TM): a learned, conditioned darkening of normal-light images.

``TM(x, c, s)`` is a global tone curve ``k x^s`` of a two-number darkness code (:func:`darkness_code`: brightness
ratio ``c`` and tone exponent ``s``) times a learned local correction ``exp(f([x, c, s]))``, zero at
initialisation. :mod:`workbench.lowlight.methods.tml` fits it and then uses it to make pseudo low-light inputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
