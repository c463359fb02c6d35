"""Global Dynamic Convolution (GDC), from "Troublemaker Learning for Low-Light Image Enhancement" (TML).

GDC imitates the ``Q K^T V`` part of self-attention at a cost linear in the number of pixels. For
``x`` of shape ``N x C x H x W``::

    q = GELU(LayerNorm_C(pool_{g x g}(DWConv_{k x k}(x)) + P))     # N x M x C,  M = g^2 tokens
    k = DWConv_{k x k, pad k//2}(x)                                # N x C x H x W
    A[n, m, i, j] = <q[n, m], k[n, :, i, j]> / sqrt(C) + b_m       # a 1x1 dynamic conv per token, no softmax
    out = x + DropPath(Conv1x1_{M -> C}(A))                        # a learned static mix over tokens ("value")

Cost: two depthwise convs (``2 k^2 C HW``) plus ``Q K^T`` and the ``M -> C`` mix (``2 C HW M`` each): linear in
``HW`` at fixed ``C`` and ``M``; the N x M x H x W map ``A`` is the largest intermediate (memory also linear). On a
CPU the wall time grows somewhat faster than 4x per 4x pixels once ``A`` leaves the caches (it is memory-bound).
As there is no softmax, ``Conv1x1(A) = (W_v q / sqrt(C)) k + const``: GDC is exactly a per-image dynamic C x C 1x1
conv; the token form used here is the cheaper one when ``C > 2M`` (UGDC's deep levels).

Differences from the public code, all so that any input size works:

* the public code computes ``q`` with a depthwise conv of kernel = stride = ps, so ``M = HW / ps^2`` (and the shapes
  of ``P`` and of the ``M -> C`` conv) are fixed by the input size when the model is built, and other sizes fail.
  Here ``q`` is a stride-1 depthwise conv followed by adaptive average pooling to a fixed ``g x g`` grid, so ``M``
  is the same for every input size (inputs smaller than the grid are fine: adaptive pooling repeats pixels), and
  ``P`` (1 x C x g x g) is resolution-free;
* ``A`` is scaled by ``1 / sqrt(C)`` (as in scaled dot-product attention) so its size does not grow with the width:
  without a softmax nothing else bounds it, and the deep levels of UGDC have C = 512-1024.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import StochasticDepth


class GlobalDynamicConv(nn.Module):
    """``out = x + DropPath(Conv1x1_{M->C}(q k / sqrt(C) + b))`` with ``M = grid^2`` pooled query tokens.

    ``(N, C, H, W) -> (N, C, H, W)`` for any ``H, W >= 1``. ``drop_path`` drops the whole residual branch per
    sample while training (torchvision's ``StochasticDepth``, mode "row").
    """

    def __init__(self, channels: int, grid: int = 8, kernel_size: int = 7, drop_path: float = 0.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-size depthwise convs), got {kernel_size}")
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.channels, self.grid, self.tokens = channels, grid, grid * grid
        pad = kernel_size // 2
        self.query_conv = nn.Conv2d(channels, channels, kernel_size, padding=pad, groups=channels)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.pos = nn.Parameter(torch.zeros(1, channels, grid, grid))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.norm = nn.LayerNorm(channels)
        self.act = nn.GELU()
        self.key_conv = nn.Conv2d(channels, channels, kernel_size, padding=pad, groups=channels)
        self.bias = nn.Parameter(torch.zeros(self.tokens))
        self.value = nn.Conv2d(self.tokens, channels, 1)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.scale = 1.0 / math.sqrt(channels)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """The ``M = grid^2`` query tokens, ``(N, M, C)``, whatever the input size."""
        q = self.pool(self.query_conv(x)) + self.pos  # N x C x g x g
        return self.act(self.norm(q.flatten(2).transpose(1, 2)))  # N x M x C

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """``A = q k / sqrt(C) + b``: ``(N, M, H, W)``, one dynamic 1x1 conv response per token."""
        n, c, h, w = x.shape
        q = self.query(x) * self.scale
        k = self.key_conv(x).flatten(2)  # N x C x HW
        a = torch.bmm(q, k) + self.bias.view(1, -1, 1)  # N x M x HW
        return a.view(n, self.tokens, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.value(self.attention(x)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, grid={self.grid}, tokens={self.tokens}"
