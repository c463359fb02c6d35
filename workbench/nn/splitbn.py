"""Split batch normalisation: simulates MoCo's shuffle-BN on one device (the MoCo CIFAR demo).

Batch statistics are computed over ``num_splits`` independent sub-batches, as if each were on its own GPU, so a
query and its key (in different sub-batches after the key shuffle) cannot share statistics that leak which
sample is the positive. Running statistics are averaged over the splits; evaluation uses them as usual.

As in the demo, sample i belongs to split i % num_splits, and the splits become channels of one batch-norm call:
``(n, c, h, w) -> (n / s, s * c, h, w)``. On NCHW memory that is a view; on channels-last memory (the workbench's
default) the regrouping copies rows of c values in and out (not a transpose), and hands the next layer a new
channels-last tensor (an NCHW result made MoCo's step 1.65x slower; a view made the in-place ReLU's backward 8x
slower).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _to_splits(x: torch.Tensor, s: int) -> torch.Tensor:
    """Channels-last ``(n, c, h, w)`` -> channels-last ``(n / s, s * c, h, w)``, sample i in split i % s: memory
    ``(n/s, s, h, w, c)`` -> ``(n/s, h, w, s, c)``, rows of c values moved, into a new tensor (not a view)."""
    n, c, h, w = x.shape
    out = torch.empty((n // s, s * c, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    out.permute(0, 2, 3, 1).view(n // s, h, w, s, c).copy_(
        x.permute(0, 2, 3, 1).view(n // s, s, h, w, c).permute(0, 2, 3, 1, 4))
    return out


def _from_splits(y: torch.Tensor, s: int) -> torch.Tensor:
    """The inverse of :func:`_to_splits`."""
    m, sc, h, w = y.shape
    n, c = m * s, sc // s
    out = torch.empty((n, c, h, w), dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
    out.permute(0, 2, 3, 1).view(m, s, h, w, c).copy_(
        y.permute(0, 2, 3, 1).view(m, h, w, s, c).permute(0, 3, 1, 2, 4))
    return out


class _Regroup(torch.autograd.Function):
    """:func:`_to_splits` (or, ``inverse``, :func:`_from_splits`) with the other as its backward. Its outputs are
    new tensors, not views: the in-place ReLU after batch-norm on a view made autograd copy and refill the whole
    activation in the backward pass (ReLU's backward 42 ms instead of 5 at 256 x 32 x 28 x 28)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, s: int, inverse: bool) -> torch.Tensor:
        ctx.s, ctx.inverse = s, inverse
        return (_from_splits if inverse else _to_splits)(x, s)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous(memory_format=torch.channels_last)
        return (_to_splits if ctx.inverse else _from_splits)(grad, ctx.s), None, None


class SplitBatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features: int, num_splits: int, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if not self.training or n % self.num_splits:
            return super().forward(x)
        s = self.num_splits
        mean_split = self.running_mean.repeat(s)
        var_split = self.running_var.repeat(s)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        grouped = _Regroup.apply(x, s, False) if channels_last else x.reshape(n // s, s * c, h, w)
        out = F.batch_norm(grouped, mean_split, var_split, self.weight.repeat(s), self.bias.repeat(s), True,
                           self.momentum, self.eps)
        out = _Regroup.apply(out, s, True) if channels_last else out.view(n, c, h, w)
        self.running_mean.copy_(mean_split.view(s, c).mean(0))
        self.running_var.copy_(var_split.view(s, c).mean(0))
        return out


def convert_split_bn(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a :class:`SplitBatchNorm` with the same parameters."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm):
            new = SplitBatchNorm(child.num_features, num_splits, eps=child.eps, momentum=child.momentum,
                                 affine=child.affine)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_split_bn(child, num_splits)
    return module
