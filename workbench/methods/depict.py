"""DEPICT: Deep Clustering via a Joint Convolutional Autoencoder Embedding and Relative Entropy Minimization
(Ghasedi Dizaji et al., 2017).

A conv autoencoder with a softmax clustering head on its embedding, ``p_ik = softmax_k(W^T z_i + b)``. The clean
path gives the targets, the noisy (corrupted input) path is trained towards them, and a reconstruction term keeps
the embedding faithful::

    q_ik = (p_ik / sqrt(sum_i p_ik)) / sum_k' (p_ik' / sqrt(sum_i p_ik'))      (target, balanced-cluster prior)
    L = -(1/N) sum_i sum_k q_ik log p~_ik  +  lambda_rec ||x - x_hat(x~)||^2

The targets come from minimising KL(Q||P) + KL(f||u) with f_k = mean_i q_ik and u uniform: the square root
divides out the cluster sizes, so large clusters do not swallow small ones (the public code uses DEC's
``p^2 / sum_i p`` instead: ``target="dec"``). Training starts with ``pretrain`` steps of reconstruction only; the
head is then initialised by k-means on the embeddings of the training set (logits ``z.c_k - ||c_k||^2 / 2``,
i.e. nearest centroid).

Follows ``herandy/DEPICT`` (``functions.py``: ``train_depict``). Departs: the target is built from each mini-batch
(officially over the whole dataset once per epoch, until successive targets differ by < 1e-7); one reconstruction
term (officially layer-wise, ``loss0 + 0.1 loss1 + 0.1 loss2``); Gaussian corruption (officially dropout); the
head starts from k-means centroids (officially trained by cross-entropy on k-means labels).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import MethodOptions, option
from workbench.diagnostics.clustering import kmeans
from workbench.methods.base import Method, StepOutput
from workbench.nn.autoencoders import ConvAutoencoder


def depict_target(p: torch.Tensor, form: str = "paper") -> torch.Tensor:
    """Target distribution from soft assignments ``p (N, K)``: the paper's ``p / sqrt(f)`` or DEC's ``p^2 / f``."""
    f = p.sum(dim=0, keepdim=True)  # soft cluster sizes
    q = p / f.sqrt() if form == "paper" else p ** 2 / f
    return q / q.sum(dim=1, keepdim=True)


@dataclass
class DEPICTOptions(MethodOptions):
    n_clusters: int | None = option(None, "clusters of the softmax head (default: the number of classes)", ge=2)
    pretrain_epochs: float = option(5.0, "epochs of reconstruction only before the clustering objective", ge=0)


class DEPICT(Method):
    name = "depict"
    Options = DEPICTOptions

    def __init__(self, backbone: nn.Module, views, images: torch.Tensor, n_clusters: int, size: int,
                 pretrain_steps: int = 100, noise: float = 0.2, rec_weight: float = 1.0, target: str = "paper"):
        super().__init__(backbone)
        self.views, self.n_clusters, self.noise, self.rec_weight, self.target = views, n_clusters, noise, rec_weight, target
        self.autoencoder = ConvAutoencoder(images.shape[1], size, encoder=backbone)
        self.head = nn.Linear(backbone.out_dim, n_clusters)
        self.images = images  # the training set, for the k-means initialisation (uint8, kept on the CPU)
        self.pretrain_steps = pretrain_steps
        self.register_buffer("head_ready", torch.zeros((), dtype=torch.bool))  # k-means has initialised the head

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        return cls(backbone, views, bundle.train.images, n_clusters=cfg.n_clusters or max(2, bundle.num_classes),
                   size=views.config.size,
                   pretrain_steps=round(cfg.pretrain_epochs * bundle.steps_per_epoch(cfg.batch_size)))

    @torch.no_grad()
    def init_head_by_kmeans(self, generator_device) -> None:
        was = self.training
        self.eval()
        feats = torch.cat([self.backbone(self.views.prepare(chunk.to(generator_device))).float().cpu()
                           for chunk in self.images.split(1024)])
        self.train(was)
        labels = torch.as_tensor(kmeans(feats.numpy(), self.n_clusters, normalize=False))
        centers = torch.stack([feats[labels == k].mean(0) if (labels == k).any() else feats.mean(0)
                               for k in range(self.n_clusters)])
        self.head.weight.copy_(centers.to(self.head.weight))
        self.head.bias.copy_((-0.5 * centers.pow(2).sum(1)).to(self.head.bias))

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        x = self.views.prepare(images)
        noisy = x + self.noise * torch.randn(x.shape, generator=generator, device=x.device)
        h_noisy, x_hat = self.autoencoder(noisy)
        rec = F.mse_loss(x_hat.float(), x.float())
        logs = {"reconstruction": rec.item()}
        if step < self.pretrain_steps:
            return StepOutput(loss=rec, logs=logs)
        if not self.head_ready:
            self.init_head_by_kmeans(x.device)
            self.head_ready.fill_(True)
        with torch.no_grad():
            p_clean = torch.softmax(self.head(self.backbone(x)).float(), dim=1)
            q = depict_target(p_clean, self.target)
        log_p_noisy = F.log_softmax(self.head(h_noisy).float(), dim=1)
        cluster_loss = -(q * log_p_noisy).sum(1).mean()
        with torch.no_grad():
            sizes = torch.bincount(p_clean.argmax(1), minlength=self.n_clusters).float()
            logs.update(cluster_loss=cluster_loss.item(), clusters_used=(sizes > 0).float().mean().item())
        return StepOutput(loss=cluster_loss + self.rec_weight * rec, logs=logs)

    @torch.no_grad()
    def assign(self, h: torch.Tensor) -> torch.Tensor | None:
        if not self.head_ready:
            return None  # the head is not initialised yet
        return self.head(h).argmax(1)
