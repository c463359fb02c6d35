"""UGDC: the UNet with Global Dynamic Convolution of TML ("Troublemaker Learning for Low-Light Image Enhancement").

A UNet (max-pool down, transposed-conv up, skip concatenation, batch-norm) whose deeper double-convs start with a
:class:`~workbench.lowlight.nn.gdc.GlobalDynamicConv` block instead of their first 3x3 conv::

    DoubleConv(in, out)    = ReLU(BN(Conv3x3(ReLU(BN(Conv3x3(x))))))        levels 0 .. gdc_from-1
    GDCDoubleConv(in, out) = ReLU(BN(Conv3x3_{in->out}(ReLU(BN(GDC(x))))))  levels gdc_from .. L-1 (and the decoder
                                                                            blocks at the same depths)
    e_0 = D_0(x),  e_i = D_i(MaxPool2(e_{i-1})),  d_{L-1} = e_{L-1}
    d_i = D'_i(cat(e_i, ConvT2x2_s2(d_{i+1}))),   y = Conv1x1(d_0)

TML uses two of these: the predicting model PM (:func:`predicting_model`, channels 64..1024) and the enhancing model
EM (:func:`enhancing_model`, 32..512). Any input size works: the input is reflect-padded (replicate-padded when it is
too small to reflect) at the bottom/right to a multiple of ``stride = 2^(L-1)`` and the output cropped back.
Nothing inside normalises the input or bounds the output: callers normalise (TML: ImageNet mean/std) and clamp.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.lowlight.nn.gdc import GlobalDynamicConv


class DoubleConv(nn.Sequential):
    """``[Conv3x3 - BN - ReLU] x 2`` (in -> out -> out)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True))


class GDCDoubleConv(nn.Sequential):
    """``GDC(in) - BN - ReLU - Conv3x3(in -> out) - BN - ReLU``: the first conv of a double conv replaced by GDC."""

    def __init__(self, in_channels: int, out_channels: int, grid: int = 8):
        super().__init__(
            GlobalDynamicConv(in_channels, grid=grid), nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True))


class UGDC(nn.Module):
    """UNet with GDC double-convs at levels ``>= gdc_from``; ``(N, in, H, W) -> (N, out, H, W)`` for any H, W.

    ``widths[i]`` is the width of level ``i`` (``len(widths)`` levels, ``len(widths) - 1`` poolings). In training
    mode batch-norm needs more than one value per channel at the deepest level: ``N * (H / stride) * (W / stride)
    > 1`` after padding (eval mode has no such limit).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 widths: tuple[int, ...] = (64, 128, 256, 512, 1024), gdc_from: int = 2, grid: int = 8):
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one level")
        self.widths, self.gdc_from, self.grid = tuple(widths), gdc_from, grid
        self.stride = 2 ** (len(widths) - 1)

        def block(i: int, cin: int, cout: int) -> nn.Module:
            return GDCDoubleConv(cin, cout, grid) if i >= gdc_from else DoubleConv(cin, cout)

        self.encoder = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            self.encoder.append(block(i, c, w))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(widths) - 1)):  # deepest first
            self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2))
            self.decoder.append(block(i, 2 * widths[i], widths[i]))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.stride, -w % self.stride
        if ph == 0 and pw == 0:
            return x
        mode = "reflect" if ph < h and pw < w else "replicate"  # reflect needs pad < size
        return F.pad(x, (0, pw, 0, ph), mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self._pad(x)
        skips = []
        for i, enc in enumerate(self.encoder):
            y = enc(y if i == 0 else self.pool(y))
            skips.append(y)
        skips.pop()  # the deepest level is the bottleneck, not a skip
        for up, dec in zip(self.up, self.decoder):
            y = dec(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)[..., :h, :w]


def _widths(width: int, levels: int) -> tuple[int, ...]:
    if levels < 1 or width < 1:
        raise ValueError(f"width and levels must be >= 1, got width={width}, levels={levels}")
    return tuple(width * 2 ** i for i in range(levels))


def _gdc_from(levels: int) -> int:
    """The paper's 5-level nets use GDC from level 2 on; shallower ones keep at least the bottleneck's GDC."""
    return min(2, levels - 1)


def predicting_model(width: int = 64, levels: int = 5, grid: int = 8) -> UGDC:
    """TML's predicting model PM: UGDC with widths ``width * 2^i`` (paper: 64..1024, 5 levels)."""
    return UGDC(3, 3, _widths(width, levels), gdc_from=_gdc_from(levels), grid=grid)


def enhancing_model(width: int = 32, levels: int = 5, grid: int = 8) -> UGDC:
    """TML's enhancing model EM: the same layout with a narrower stem (paper: 32..512, 5 levels)."""
    return UGDC(3, 3, _widths(width, levels), gdc_from=_gdc_from(levels), grid=grid)
