"""UGDC: the UNet with Global Dynamic Convolution of TML ("Troublemaker Learning for Low-Light Image Enhancement").

Follows ``Rainbowman0/TML_LLIE`` (``models/UGDC.py``: ``UGDC`` and ``UGDC_Enhance``; ``models/gdcblock_parts.py``;
``models/unet_parts.py``). A UNet (max-pool down, transposed-conv up, skip concatenation, batch-norm) whose two
deepest encoder blocks and two deepest decoder blocks start with a
:class:`~workbench.lowlight.nn.gdc.GlobalDynamicConv` block instead of their first 3x3 conv::

    DoubleConv(in, out)    = ReLU(BN(Conv3x3(ReLU(BN(Conv3x3(x))))))        the other blocks
    GDCDoubleConv(in, out) = ReLU(BN(Conv3x3_{in->out}(ReLU(BN(GDC(x))))))  encoder levels L-2, L-1 (``Down_SA``),
                                                                            decoder levels L-2, L-3 (``Up_SA``)
    e_0 = D_0(x),  e_i = D_i(MaxPool2(e_{i-1})),  d_{L-1} = e_{L-1}
    d_i = D'_i(cat(e_i, ConvT2x2_s2(d_{i+1}))),   y = Conv1x1(d_0)

At 5 levels this is the official layout: ``Down(128, 256)`` at level 2 is plain, GDC works on 256 and 512 channels
in the encoder and on 1024 and 512 (the skip concatenations) in the decoder, with 5x8 tokens at the deepest level,
10x16 and 20x32 above (the official 5x5 patches of its 400x640 input's maps), DropPath 0.2.

TML uses two of these: the predicting model PM (:func:`predicting_model`, channels 64..1024) and the enhancing model
EM (:func:`enhancing_model`, 32..512). Any input size works: the input is reflect-padded (replicate-padded when it is
too small to reflect) at the bottom/right to a multiple of ``stride = 2^(L-1)`` and the output cropped back (the
official code pads the upsampled map instead, and only works at the input size it was built for).
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
    """``GDC(in) - BN - ReLU - Conv3x3(in -> out) - BN - ReLU``: the first conv of a double conv replaced by GDC
    (the official ``DoubleConv_SA``)."""

    def __init__(self, in_channels: int, out_channels: int, grid: int | tuple[int, int] = (5, 8),
                 drop_path: float = 0.2):
        super().__init__(
            GlobalDynamicConv(in_channels, grid=grid, drop_path=drop_path), nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True))


class UGDC(nn.Module):
    """UNet with GDC double-convs in its ``gdc_encoder`` deepest encoder blocks and ``gdc_decoder`` deepest decoder
    blocks; ``(N, in, H, W) -> (N, out, H, W)`` for any H, W.

    ``widths[i]`` is the width of level ``i`` (``len(widths)`` levels, ``len(widths) - 1`` poolings). ``grid`` is
    the GDC token grid at the deepest level; each level above doubles both sides (the official fixed 5x5 patches
    on maps twice as large). In training mode batch-norm needs more than one value per channel at the deepest
    level: ``N * (H / stride) * (W / stride) > 1`` after padding (eval mode has no such limit).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 widths: tuple[int, ...] = (64, 128, 256, 512, 1024), gdc_encoder: int = 2, gdc_decoder: int = 2,
                 grid: int | tuple[int, int] = (5, 8), drop_path: float = 0.2):
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one level")
        levels = len(widths)
        gh, gw = (grid, grid) if isinstance(grid, int) else tuple(grid)
        self.widths, self.grid, self.stride = tuple(widths), (gh, gw), 2 ** (levels - 1)

        def block(i: int, cin: int, cout: int, gdc: bool) -> nn.Module:
            up = 2 ** (levels - 1 - i)  # level i's maps are 2^(L-1-i) times the deepest's
            return GDCDoubleConv(cin, cout, (gh * up, gw * up), drop_path) if gdc else DoubleConv(cin, cout)

        self.encoder = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            self.encoder.append(block(i, c, w, i >= levels - gdc_encoder))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for j, i in enumerate(reversed(range(levels - 1))):  # deepest first
            self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2))
            self.decoder.append(block(i, 2 * widths[i], widths[i], j < gdc_decoder))
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


def predicting_model(width: int = 64, levels: int = 5, grid: int | tuple[int, int] = (5, 8),
                     drop_path: float = 0.2) -> UGDC:
    """TML's predicting model PM (the official ``UGDC``): widths ``width * 2^i``; the defaults are the paper's
    (64..1024, 5 levels, 17,580,103 parameters)."""
    return UGDC(3, 3, _widths(width, levels), grid=grid, drop_path=drop_path)


def enhancing_model(width: int = 32, levels: int = 5, grid: int | tuple[int, int] = (5, 8),
                    drop_path: float = 0.2) -> UGDC:
    """TML's enhancing model EM (the official ``UGDC_Enhance``, ``stem_channels=32``): the same layout; the defaults
    are the paper's (32..512, 5 levels, 4,720,679 parameters)."""
    return UGDC(3, 3, _widths(width, levels), grid=grid, drop_path=drop_path)


def parse_grid(text: str) -> tuple[int, int]:
    """``"5x8"`` -> ``(5, 8)``; a ``ValueError`` for anything else."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"{text!r} is not HxW with two integers >= 1 (e.g. 5x8)")
    return int(parts[0]), int(parts[1])
