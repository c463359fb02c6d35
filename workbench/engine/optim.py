"""Optimisers and the learning-rate schedule (linear warm-up, then a cosine decay to 0 or a constant lr)."""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from workbench.engine.config import TrainConfig


class LARS(torch.optim.Optimizer):
    """LARS (You et al., 2017) in the form SimCLR's code uses for large batches: SGD with momentum where, for each
    weight tensor, the weight decay is added to the gradient first, ``u = g + wd w``, and the update is scaled by
    the trust ratio ``eta * ||w|| / ||u||``. Biases and BN parameters (1-d tensors) get neither weight decay nor
    adaptation."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6, eta: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = p.norm(), g.norm()
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    g = g.mul(trust)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = cfg.effective_lr, cfg.effective_weight_decay
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    return LARS(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR factor: linear warm-up from 1/100 over ``warmup_steps``, then ``0.5 (1 + cos(pi t))`` down to 0."""
    if step < warmup_steps:
        return warmup(step, warmup_steps)
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def warmup_constant(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR factor: linear warm-up from 1/100 over ``warmup_steps``, then 1 to the end."""
    return warmup(step, warmup_steps) if step < warmup_steps else 1.0


def warmup(step: int, warmup_steps: int) -> float:
    return 0.01 + 0.99 * step / warmup_steps


SCHEDULES = {"cosine": warmup_cosine, "constant": warmup_constant}


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    schedule: str = "cosine") -> LambdaLR:
    """Per-batch schedule (``--lr-schedule``). Its only state is the step count, so a resumed run with more epochs
    stretches the cosine to the new total instead of restarting it."""
    warmup_steps = min(warmup_steps, max(0, total_steps - 1))
    return LambdaLR(optimizer, partial(SCHEDULES[schedule], total_steps=total_steps, warmup_steps=warmup_steps))
