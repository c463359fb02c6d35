"""Split batch normalisation: simulates MoCo's shuffle-BN on one device (the MoCo CIFAR demo).

Batch statistics are computed over ``num_splits`` independent sub-batches, as if each were on its own GPU, so a
query and its key (in different sub-batches after the key shuffle) cannot share statistics that leak which
sample is the positive. Running statistics are averaged over the splits; evaluation uses them as usual.

As in the demo, sample i belongs to split i % num_splits, and the splits become channels of one batch-norm call:
``(n, c, h, w) -> (n / s, s * c, h, w)``. On NCHW memory that is a view; on channels-last memory (the workbench's
default) the regrouping copies rows of c values in and out, and hands the next layer channels-last again (an NCHW
result made MoCo's step 1.65x slower).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
        if channels_last:  # memory (n/s, s, h, w, c) -> (n/s, h, w, s, c): moves rows of c values, no transpose
            x = x.permute(0, 2, 3, 1).reshape(n // s, s, h, w, c).permute(0, 2, 3, 1, 4)
            x = x.reshape(n // s, h, w, s * c).permute(0, 3, 1, 2)  # channels-last (n/s, s*c, h, w)
        else:
            x = x.reshape(n // s, s * c, h, w)
        out = F.batch_norm(x, mean_split, var_split, self.weight.repeat(s), self.bias.repeat(s), True,
                           self.momentum, self.eps)
        if channels_last:  # back to memory (n, h, w, c), handed on as channels-last (n, c, h, w)
            out = out.permute(0, 2, 3, 1).reshape(n // s, h, w, s, c).permute(0, 3, 1, 2, 4)
            out = out.reshape(n, h, w, c).permute(0, 3, 1, 2)
        else:
            out = out.view(n, c, h, w)
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
