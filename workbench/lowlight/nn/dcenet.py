"""DCE-Net of Zero-DCE ("Zero-Reference Deep Curve Estimation for Low-Light Image Enhancement", Guo et al. 2020).

Seven 3x3 convs (32 channels, ReLU, padding 1) with symmetric skip concatenations estimate ``n`` curve maps::

    x1 = conv1(x),  x2 = conv2(x1),  x3 = conv3(x2),  x4 = conv4(x3)
    x5 = conv5([x3, x4]),  x6 = conv6([x2, x5]),  r = tanh(conv7([x1, x6]))       # r: N x 3n x H x W, in [-1, 1]

and the light-enhancement curve is applied once per 3-channel group ``r_k``, in order::

    LE_0 = x,   LE_k = LE_{k-1} + r_k (LE_{k-1}^2 - LE_{k-1})

With 32 channels and n = 8 the net has 79,416 parameters (the paper's). The input is an image in [0, 1] (no
normalisation inside); for x in [0, 1] every LE_k stays in [0, 1]. Conv weights start from N(0, 0.02) as the
official ``weights_init`` (``Li-Chongyi/Zero-DCE``, ``lowlight_train.py``) sets them; biases keep torch's default.
"""
from __future__ import annotations

import torch
from torch import nn


def apply_curves(x: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """``LE(x) = x + r (x^2 - x)`` once per ``x.shape[1]``-channel group of ``curves``, in order."""
    c = x.shape[1]
    if curves.shape[1] % c != 0:
        raise ValueError(f"curves has {curves.shape[1]} channels, not a multiple of the image's {c}")
    for r in torch.split(curves, c, dim=1):
        x = x + r * (x * x - x)
    return x


class DCENet(nn.Module):
    """``x (N, 3, H, W) in [0, 1] -> (enhanced, curves)``, curves ``(N, 3 * iterations, H, W)``; any H, W."""

    def __init__(self, channels: int = 32, iterations: int = 8):
        super().__init__()
        self.iterations = iterations
        conv = lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1)  # noqa: E731
        self.conv1, self.conv2 = conv(3, channels), conv(channels, channels)
        self.conv3, self.conv4 = conv(channels, channels), conv(channels, channels)
        self.conv5, self.conv6 = conv(2 * channels, channels), conv(2 * channels, channels)
        self.conv7 = conv(2 * channels, 3 * iterations)
        self.relu = nn.ReLU(inplace=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.relu(self.conv1(x))
        x2 = self.relu(self.conv2(x1))
        x3 = self.relu(self.conv3(x2))
        x4 = self.relu(self.conv4(x3))
        x5 = self.relu(self.conv5(torch.cat([x3, x4], dim=1)))
        x6 = self.relu(self.conv6(torch.cat([x2, x5], dim=1)))
        return torch.tanh(self.conv7(torch.cat([x1, x6], dim=1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.curves(x)
        return apply_curves(x, r), r
