"""G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection via Pseudo Labelling (Chakraborty et al.,
2020).

Stage 1 trains a denoising conv autoencoder (Gaussian noise of standard deviation 0.01 on the [0, 1] input,
reconstruction loss). Its pooled latent, as it is (not normalised), is clustered by k-means with
``n_clusters = batch size``, giving each image a pseudo label. Stage 2 is SimCLR (NT-Xent at tau, the paper's 0.1)
on batches that hold at most one image per pseudo-cluster, so that images likely to be of the same class are
never pushed apart as negatives. The epoch's order is the within-cluster rank::

    rank(i) = position of image i within its pseudo-cluster;   order = images sorted by (rank, cluster)

cut into consecutive batches: batch r holds the rank-r image of every cluster, so every image is seen once per
epoch and, while every cluster still has a member of that rank, no batch holds two images of one cluster. An epoch
is ``ceil(N / batch)`` batches, the last one shorter (a single image left over joins the batch before it), during
the autoencoder stage too (a random order then), so the learning-rate schedule and the progress bar count these
steps; ``epoch_coverage`` logs the fraction of the training set an epoch shows (1.0).

Follows ``sayakpaul/G-SimCLR`` (``Autoencoder.ipynb``, ``SimCLR_Pseudo_Labels_Training.ipynb``). Departs: the ranks
within a cluster, and the order of the clusters within a rank, are drawn at random every epoch (officially ranked
by image index, the same order every epoch); the autoencoder is the workbench's conv encoder with an MLP decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import option
from workbench.diagnostics.clustering import kmeans
from workbench.methods.base import ContrastiveOptions, fit_pretraining
from workbench.methods.simclr import SimCLR
from workbench.nn.autoencoders import ConvAutoencoder


def epoch_batches(n: int, batch_size: int) -> int:
    """Batches that show every one of ``n`` images once: ``ceil(n / batch)``, the last one shorter; a remainder of a
    single image joins the batch before it (NT-Xent and batch-norm need two images)."""
    batch_size = min(batch_size, n)
    full, rest = divmod(n, batch_size)
    return full + (rest > 1)


def split_epoch(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The epoch's ``order`` cut into :func:`epoch_batches` consecutive batches."""
    batches = list(order.split(min(batch_size, len(order))))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def rank_order_batches(labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The images sorted by (within-cluster rank, cluster), ranks and cluster order drawn at random, cut into
    consecutive batches that hold every image once (:func:`split_epoch`: the last one shorter)."""
    n = len(labels)
    shuffled = torch.randperm(n, generator=generator)  # random ranks within each cluster
    by_cluster = shuffled[torch.argsort(labels[shuffled], stable=True)]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long)
    rank[by_cluster] = torch.arange(n) - starts.repeat_interleave(counts)
    cluster_slot = torch.randperm(len(counts), generator=generator)[labels]  # random cluster order within a rank
    return split_epoch(torch.argsort(rank * len(counts) + cluster_slot), batch_size)


@dataclass
class GSimCLROptions(ContrastiveOptions):
    tau: float = option(0.1, "temperature of NT-Xent", ge=0.01, le=10, note="the G-SimCLR paper's 0.1")
    pretrain_epochs: float = option(5.0, "epochs of the denoising autoencoder (stage 1) before SimCLR", ge=0)


class GSimCLR(SimCLR):
    name = "gsimclr"
    Options = GSimCLROptions

    def __init__(self, backbone: nn.Module, views, images: torch.Tensor, tau: float = 0.1, proj_dim: int = 128,
                 pretrain_steps: int = 100, n_clusters: int = 256, noise: float = 1e-2):
        super().__init__(backbone, views, tau=tau, proj_dim=proj_dim)
        self.autoencoder = ConvAutoencoder(images.shape[1], views.config.size)
        self.images, self.pretrain_steps, self.n_clusters, self.noise = images, pretrain_steps, n_clusters, noise
        self.register_buffer("pseudo_labels", torch.full((len(images),), -1, dtype=torch.long))
        self.coverage = 0.0  # the fraction of the training set the current epoch's batches show

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        batch = min(cfg.batch_size, len(bundle.train))
        pretrain, note = fit_pretraining(cfg.pretrain_epochs, cfg.epochs, epoch_batches(len(bundle.train), batch),
                                         "G-SimCLR", "SimCLR on the pseudo-label batches")
        method = cls(backbone, views, bundle.train.images, tau=cfg.tau, proj_dim=cfg.proj_dim,
                     pretrain_steps=pretrain, n_clusters=batch)
        if note:
            method.notes_for_first_step.append(note)
        return method

    @torch.no_grad()
    def assign_pseudo_labels(self, device) -> None:
        was = self.training
        self.eval()
        latent = torch.cat([self.autoencoder.encoder(self.views.prepare(c.to(device))).float().cpu()
                            for c in self.images.split(self.views.eval_batch())])
        self.train(was)
        self.pseudo_labels.copy_(torch.as_tensor(kmeans(latent.numpy(), self.n_clusters, normalize=False)))

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        return epoch_batches(n, batch_size)

    def batch_order(self, steps: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """The next epoch's batches, every image once (the last batch shorter): a random order during the
        autoencoder stage, the within-cluster rank order once the pseudo labels exist."""
        n = len(self.images)
        if int(self.pseudo_labels[0]) < 0:
            order = split_epoch(torch.randperm(n, generator=generator), batch_size)
        else:
            order = rank_order_batches(self.pseudo_labels.cpu(), batch_size, generator)
        if len(order) != steps:
            raise RuntimeError(f"G-SimCLR's epoch has {len(order)} batches, the engine planned {steps}: build the "
                               "run with engine.build, which asks the method (steps_per_epoch)")
        self.coverage = len(torch.unique(torch.cat(order))) / n
        return order

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator):
        if step < self.pretrain_steps:
            x = self.views.prepare(images)
            noise = self.noise * torch.randn(x.shape, generator=generator, device=x.device)  # on the [0, 1] scale
            std = torch.tensor(self.views.std or (1.0,) * x.shape[1], device=x.device, dtype=x.dtype)
            _, x_hat = self.autoencoder(x + noise / std.view(1, -1, 1, 1))
            rec = F.mse_loss(x_hat.float(), x.float())
            out = super().step(images, step, generator)  # scores to watch, but no gradient to the SimCLR net yet
            out.loss = rec
            out.logs.update(reconstruction=rec.detach(), stage=1.0, epoch_coverage=self.coverage)
            return out
        if int(self.pseudo_labels[0]) < 0:
            self.assign_pseudo_labels(images.device)
        out = super().step(images, step, generator)
        out.logs.update(stage=2.0, epoch_coverage=self.coverage)
        return out
