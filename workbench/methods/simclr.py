"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations (Chen et al., 2020).

Two random views ``x_i = t(x), x_j = t'(x)`` of every image, ``h = f(x)`` the backbone, ``z = g(h)`` the projection
MLP, and the NT-Xent loss at temperature ``tau`` over the 2N views of the batch::

    l_i = -log( exp(sim(z_i, z_j(i)) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) )

Every other view in the batch is a negative. Probes use h, not z.

Follows ``google-research/simclr`` (``tf2/objective.py``: ``add_contrastive_loss``; ``tf2/model.py``: the head;
tau 0.5 as its CIFAR-10 runs; global batch-norm: under DDP the batch-norm layers become ``SyncBatchNorm``, so
positives never share per-device statistics). Departs: the head has 2 layers, as SimCLR v1 (the tf2 code's default is 3, SimCLR v2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import option

from workbench.data.views import ContrastiveViews
from workbench.losses.ntxent import nt_xent
from workbench.methods.base import ContrastiveOptions, Method, StepOutput
from workbench.nn.heads import ProjectionMLP


@dataclass
class SimCLROptions(ContrastiveOptions):
    tau: float = option(0.5, "temperature of NT-Xent", ge=0.01, le=10, note="SimCLR's CIFAR-10 0.5; ImageNet 0.1")


class SimCLR(Method):
    name = "simclr"
    Options = SimCLROptions
    sync_batchnorm = True

    def __init__(self, backbone: nn.Module, views: ContrastiveViews, tau: float = 0.5, proj_dim: int = 128):
        super().__init__(backbone)
        self.views = views
        self.tau = tau
        self.projector = ProjectionMLP(backbone.out_dim, backbone.out_dim, proj_dim)

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        return cls(backbone, views, tau=cfg.tau, proj_dim=cfg.proj_dim)

    @torch.no_grad()
    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(h).float(), dim=1)

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        x_i, x_j = self.views(images, n=2, g=generator)
        n = x_i.shape[0]
        h = self.backbone(torch.cat([x_i, x_j]))  # one forward pass: BN sees both views
        z = self.projector(h)
        z_i, z_j = z[:n], z[n:]
        loss = nt_xent(z_i, z_j, self.tau)
        with torch.no_grad():
            zn = F.normalize(z.detach().float(), dim=1)
        return StepOutput(loss=loss, z1=zn[:n], z2=zn[n:])
