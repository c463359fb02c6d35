"""Global Dynamic Convolution (GDC), from "Troublemaker Learning for Low-Light Image Enhancement" (TML).

Follows ``SABlock`` of ``Rainbowman0/TML_LLIE`` (``models/gdcblock_parts.py``). GDC imitates the ``Q K^T V`` part of
self-attention at a cost linear in the number of pixels. For ``x`` of shape ``N x C x H x W`` and a token grid
``gh x gw`` (``M = gh gw`` tokens) of ``ps x ps`` patches::

    q = GELU(LayerNorm_C(DWConv_{ps x ps, stride ps}(pool_{gh ps x gw ps}(x)) + P))   # N x M x C
    k = DWConv_{7 x 7, pad 3}(x)                                                      # N x C x H x W
    A[n, m, i, j] = <q[n, m], k[n, :, i, j]> / sqrt(C) + b                           # a 1x1 dynamic conv per token
    out = x + DropPath(Conv1x1_{M -> C}(A))                                          # a learned static mix ("value")

As in the official code: the patch conv and the 7x7 key conv are depthwise with biases, ``P`` (C x gh x gw) is drawn
from N(0, 1), LayerNorm has eps 1e-6, ``b`` is one scalar, there is no softmax, and DropPath is 0.2 (torchvision's
``StochasticDepth``, mode "row", the same per-sample drop as timm's ``DropPath``). A block has ``79 C + 2 C M + 1``
parameters.

Cost: the pooling and two depthwise convs (``O(C HW)``) plus ``Q K^T`` and the ``M -> C`` mix (``2 C HW M`` each):
linear in ``HW`` at fixed ``C`` and ``M``; the N x M x H x W map ``A`` is the largest intermediate (memory also
linear). On a CPU the wall time grows somewhat faster than 4x per 4x pixels once ``A`` leaves the caches.

Departs from the official code on purpose:

* the official patch conv runs on the feature map itself, so ``M = HW / ps^2`` (and the shapes of ``P`` and of the
  ``M -> C`` conv) are fixed by the input size the model is built for (400x640) and other sizes fail. Here the
  feature map is first average-pooled to ``gh ps x gw ps`` (adaptive pooling: the identity at the size the grid was
  chosen for, e.g. 50x80 for a 10x16 grid; smaller inputs repeat pixels), so ``M`` is the same for every input size;
* ``A`` is scaled by ``1 / sqrt(C)`` (as in scaled dot-product attention) so that its size does not grow with the
  width: without a softmax nothing else bounds it, and UGDC's deep levels have C = 512-1024 (no parameter changes);
* the official ``SABlock`` also builds a LayerNorm it never uses (``self.ln``, 2 C parameters): not built here. The
  official parameter counts (17,580,103 / 4,720,679) do not include it either.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import StochasticDepth


def _pair(grid: int | tuple[int, int]) -> tuple[int, int]:
    gh, gw = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if gh < 1 or gw < 1:
        raise ValueError(f"grid must be >= 1 on both sides, got {grid}")
    return gh, gw


class GlobalDynamicConv(nn.Module):
    """``out = x + DropPath(Conv1x1_{M->C}(q k / sqrt(C) + b))`` with ``M = gh gw`` query tokens.

    ``(N, C, H, W) -> (N, C, H, W)`` for any ``H, W >= 1``. ``grid`` is ``gh x gw`` (an int: square), ``patch`` the
    official ``ps`` (5 for its 400x640 input), ``drop_path`` drops the whole residual branch per sample in training.
    """

    def __init__(self, channels: int, grid: int | tuple[int, int] = (5, 8), patch: int = 5, kernel_size: int = 7,
                 drop_path: float = 0.2):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-size depthwise convs), got {kernel_size}")
        gh, gw = _pair(grid)
        self.channels, self.grid, self.tokens = channels, (gh, gw), gh * gw
        self.pool = nn.AdaptiveAvgPool2d((gh * patch, gw * patch))
        self.patch_conv = nn.Conv2d(channels, channels, patch, stride=patch, groups=channels)
        self.pos = nn.Parameter(torch.randn(1, channels, gh, gw))  # N(0, 1), as the official ``diff``
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.act = nn.GELU()
        self.key_conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.bias = nn.Parameter(torch.zeros(()))
        self.value = nn.Conv2d(self.tokens, channels, 1)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.scale = 1.0 / math.sqrt(channels)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """The ``M`` query tokens, ``(N, M, C)``, whatever the input size."""
        q = self.patch_conv(self.pool(x)) + self.pos  # N x C x gh x gw
        return self.act(self.norm(q.flatten(2).transpose(1, 2)))  # N x M x C

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """``A = q k / sqrt(C) + b``: ``(N, M, H, W)``, one dynamic 1x1 conv response per token."""
        n, c, h, w = x.shape
        q = self.query(x) * self.scale
        k = self.key_conv(x).flatten(2)  # N x C x HW
        a = torch.bmm(q, k) + self.bias  # N x M x HW
        return a.view(n, self.tokens, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.value(self.attention(x)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, grid={self.grid[0]}x{self.grid[1]}, tokens={self.tokens}"
