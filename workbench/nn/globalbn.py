"""Global batch-norm: batch statistics over every process's share of the batch (SimCLR's "global BN").

Under data-parallel training each process sees B / world images. With per-process batch-norm the two views of an
image, normalised by the same local statistics, can tell each other apart from the negatives by those statistics
alone: contrastive learning then "cheats". Global BN normalises with the mean and variance of the whole batch::

    mu = sum_p sum_i x_pi / N,   var = sum_p sum_i x_pi^2 / N - mu^2,   y = gamma (x - mu) / sqrt(var + eps) + beta

On CUDA this is ``torch.nn.SyncBatchNorm``. PyTorch's ``SyncBatchNorm`` refuses CPU tensors, so on CPU (gloo) the
same statistics come from one gradient-passing ``all_reduce`` of ``[sum x, sum x^2, count]`` per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from workbench import process_group


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch-norm over the global batch for any device (see the module docstring); a plain BN when alone."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and process_group.active()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=xf.dtype, device=x.device)
        stats = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean, var = stats[:c] / n, stats[c:2 * c] / n - (stats[:c] / n) ** 2
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp(min=1), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Every batch-norm layer of ``module`` made global, in place: ``SyncBatchNorm`` on CUDA,
    :class:`GlobalBatchNorm` on other devices (the same parameter and buffer tensors)."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    if device.type == "cuda":
        return _convert(module, nn.SyncBatchNorm.convert_sync_batchnorm)
    return _convert(module, _global)


def _global(bn: nn.Module) -> nn.Module:
    """A :class:`GlobalBatchNorm` holding ``bn``'s own parameters and buffers (an optimiser built on the model
    keeps training them), as ``convert_sync_batchnorm`` does."""
    out = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        setattr(out, name, getattr(bn, name))
    return out.train(bn.training)


def _convert(module: nn.Module, make) -> nn.Module:
    """``module`` with every batch-norm child replaced in place by ``make(child)`` (the module itself too)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module if isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)) else make(module)
    for name, child in module.named_children():
        module.add_module(name, _convert(child, make))
    return module
