"""G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection via Pseudo Labelling (Chakraborty et al.,
2020).

Stage 1 trains a denoising conv autoencoder (Gaussian noise on the input, reconstruction loss). Its pooled latent
is clustered by k-means with ``n_clusters = batch size``, giving each image a pseudo label. Stage 2 is SimCLR
(NT-Xent at tau; the paper uses 0.1) on batches that hold at most one image per pseudo-cluster, so that images
likely to be of the same class are never pushed apart as negatives. Batches are drawn one image from each
pseudo-cluster (at random within the cluster), which keeps the epoch length of plain SimCLR.

Follows ``sayakpaul/G-SimCLR`` (``Autoencoder.ipynb``, ``SimCLR_Pseudo_Labels_Training.ipynb``). Departs: batches are
drawn with replacement within clusters (the official order by within-cluster rank shows every image once per epoch);
the autoencoder noise is 0.2 (officially ``GaussianNoise(1e-2)``); tau defaults to 0.2 (the paper: 0.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import option
from workbench.diagnostics.clustering import kmeans
from workbench.methods.base import ContrastiveOptions
from workbench.methods.simclr import SimCLR
from workbench.nn.autoencoders import ConvAutoencoder


def one_per_cluster_batches(labels: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    """``(steps, K)`` sample indices: row s holds one random member of each of the K clusters in ``labels``."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    if (counts == 0).any():
        raise ValueError("every pseudo-cluster needs at least one member")
    starts = torch.cumsum(counts, 0) - counts
    r = torch.rand(steps, len(counts), generator=generator)
    return order[starts + (r * counts).long().clamp(max=counts - 1)]


@dataclass
class GSimCLROptions(ContrastiveOptions):
    pretrain_epochs: float = option(5.0, "epochs of the denoising autoencoder (stage 1) before SimCLR", ge=0)


class GSimCLR(SimCLR):
    name = "gsimclr"
    Options = GSimCLROptions

    def __init__(self, backbone: nn.Module, views, images: torch.Tensor, tau: float = 0.1, proj_dim: int = 128,
                 pretrain_steps: int = 100, n_clusters: int = 256, noise: float = 0.2):
        super().__init__(backbone, views, tau=tau, proj_dim=proj_dim)
        self.autoencoder = ConvAutoencoder(images.shape[1], views.config.size)
        self.images, self.pretrain_steps, self.n_clusters, self.noise = images, pretrain_steps, n_clusters, noise
        self.register_buffer("pseudo_labels", torch.full((len(images),), -1, dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        batch = min(cfg.batch_size, len(bundle.train))
        return cls(backbone, views, bundle.train.images, tau=cfg.tau, proj_dim=cfg.proj_dim,
                   pretrain_steps=round(cfg.pretrain_epochs * bundle.steps_per_epoch(batch)), n_clusters=batch)

    @torch.no_grad()
    def assign_pseudo_labels(self, device) -> None:
        was = self.training
        self.eval()
        latent = torch.cat([self.autoencoder.encoder(self.views.prepare(c.to(device))).float().cpu()
                            for c in self.images.split(1024)])
        self.train(was)
        self.pseudo_labels.copy_(torch.as_tensor(kmeans(latent.numpy(), self.n_clusters)))

    def batch_order(self, steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor | None:
        """The engine's batches for the next epoch: one image per pseudo-cluster once they exist."""
        if int(self.pseudo_labels[0]) < 0 or batch_size != self.n_clusters:
            return None
        return one_per_cluster_batches(self.pseudo_labels.cpu(), steps, generator)

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator):
        if step < self.pretrain_steps:
            x = self.views.prepare(images)
            _, x_hat = self.autoencoder(x + self.noise * torch.randn(x.shape, generator=generator, device=x.device))
            rec = F.mse_loss(x_hat.float(), x.float())
            out = super().step(images, step, generator)  # scores to watch, but no gradient to the SimCLR net yet
            out.loss, out.logs = rec, {**out.logs, "reconstruction": rec.item(), "stage": 1.0}
            return out
        if int(self.pseudo_labels[0]) < 0:
            self.assign_pseudo_labels(images.device)
        out = super().step(images, step, generator)
        out.logs["stage"] = 2.0
        return out
