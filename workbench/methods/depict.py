"""DEPICT: Deep Clustering via a Joint Convolutional Autoencoder Embedding and Relative Entropy Minimization
(Ghasedi Dizaji et al., 2017).

A conv autoencoder whose embedding z (the backbone's h, or ``tanh(W_e h)`` with ``--embed-dim``) feeds a softmax
clustering head ``p_ik = softmax_k(w_k^T z_i)``. A corrupted path (dropout on the input and the first block) is trained towards
targets built from the clean path over the WHOLE training set, once per epoch, and held fixed for that epoch::

    f_k = sum_i p_ik                       (soft cluster sizes, clean path, every training image)
    q_ik = (p_ik^2 / f_k) / sum_k' (p_ik'^2 / f_k')      (official code; the paper: p_ik / sqrt(f_k), --target paper)
    L = -(1/B) sum_i sum_k q_ik log p~_ik  +  ||x - x^~||^2 + 0.1 sum_l ||e_l - d_l||^2

``e_l`` is the clean output of encoder block l and ``d_l`` the decoder's reconstruction of it (layer-wise
reconstruction). Procedure: (1) ``pretrain`` steps of reconstruction only; (2) k-means on the clean embeddings of
the training set, the head initialised to the unit-norm centroids (bias 0) and trained ``init_epochs`` epochs with
cross-entropy on the k-means labels plus reconstruction; (3) DEPICT epochs, each starting with the whole-set
target above, until the mean squared change of successive targets falls below 1e-7.

Follows ``herandy/DEPICT`` (``functions.py``: ``build_MdA``, ``train_RLC``, whose init stage is ``train_fn_init``).
Departs: the encoder is the workbench backbone (4 conv-BN-ReLU blocks, pooled) and every hidden block is
reconstructed with weight 0.1 (officially 2 conv layers), its clean output a target without gradient (officially
the gradient flows through it too); z is h unless ``--embed-dim`` is set (officially a tanh layer with as many
units as clusters); the init stage runs a fixed ``--init-epochs`` (officially
early-stopped on the NMI to the k-means labels of a 10% split); pre-training runs a fixed ``--pretrain-epochs``
(officially until the validation reconstruction stops improving; default 20 of a 60-epoch run); each
epoch's target comes from one clean pass at the epoch's start (officially from each batch's prediction right after
its update, collected over the previous epoch); once the targets converge they are no longer rebuilt but training
goes on to ``--epochs`` (officially it stops). Defaults (``common_defaults``): Adam without decay, batch 100
as officially, but lr 1e-3 (officially 1e-4 over up to 4000 epochs; ``--lr 1e-4`` is the official one) under the
engine's warm-up + cosine schedule (officially constant). k-means: 40 restarts on the raw embeddings as officially.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench import process_group
from workbench.config import MethodOptions, option
from workbench.methods.base import Method, StepOutput
from workbench.nn.autoencoders import LayerwiseDecoder, encode_blocks

PRETRAIN, INIT, DEPICT_STAGE = 0, 1, 2
CONVERGED_MSE = 1e-7


def depict_target(p: torch.Tensor, form: str = "paper") -> torch.Tensor:
    """Target distribution from soft assignments ``p (N, K)``: the paper's ``p / sqrt(f)`` or DEC's ``p^2 / f``."""
    f = p.sum(dim=0, keepdim=True)  # soft cluster sizes
    q = p / f.sqrt() if form == "paper" else p ** 2 / f
    return q / q.sum(dim=1, keepdim=True)


@dataclass
class DEPICTOptions(MethodOptions):
    n_clusters: int | None = option(None, "clusters of the softmax head (default: the number of classes)", ge=2)
    pretrain_epochs: float = option(20.0, "epochs of reconstruction only before the clustering objective", ge=0)
    init_epochs: int = option(1, "epochs of cross-entropy on the k-means labels before the DEPICT targets", ge=0)
    embed_dim: int = option(0, "size of the tanh embedding z = tanh(W h) the head and decoder read; 0: the "
                            "backbone's h itself (officially as many as clusters)", ge=0)
    target: str = option("dec", "target form: 'dec' p^2/f (the official code) or 'paper' p/sqrt(f)",
                         choices=("dec", "paper"))


class DEPICT(Method):
    name = "depict"
    Options = DEPICTOptions
    # officially Adam 1e-4, batch 100, no decay, over up to 4000 epochs; 1e-3 fits the workbench's short runs
    common_defaults = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=100, epochs=60)

    def __init__(self, backbone: nn.Module, views, images: torch.Tensor, n_clusters: int, size: int,
                 pretrain_steps: int = 100, init_epochs: int = 1, target: str = "dec", embed_dim: int = 0,
                 dropouts: tuple[float, ...] = (0.1, 0.1, 0.0), rec_weight: float = 1.0, hidden_weight: float = 0.1,
                 kmeans_restarts: int = 40):
        super().__init__(backbone)
        self.views, self.n_clusters, self.target, self.dropouts = views, n_clusters, target, dropouts
        self.rec_weight, self.hidden_weight = rec_weight, hidden_weight
        self.images = images  # the training set (uint8, on the CPU): k-means and the whole-set targets
        self.pretrain_steps, self.init_epochs, self.kmeans_restarts = pretrain_steps, init_epochs, kmeans_restarts
        with torch.no_grad():
            blocks, _ = encode_blocks(backbone.eval(), torch.zeros(1, images.shape[1], size, size))
        backbone.train()
        self.embed_dim = embed_dim  # 0: z is the backbone's h
        self.embedding = nn.Linear(backbone.out_dim, embed_dim) if embed_dim else nn.Identity()
        zdim = embed_dim or backbone.out_dim
        self.decoder = LayerwiseDecoder(zdim, images.shape[1], tuple(b.shape[1] for b in blocks),
                                        tuple(blocks[-1].shape[2:]))
        self.head = nn.Linear(zdim, n_clusters)
        n = len(images)
        for name, value in dict(stage=torch.tensor(PRETRAIN), steps_done=torch.tensor(0), init_left=torch.tensor(0),
                                converged=torch.tensor(False), labels=torch.zeros(n, dtype=torch.long),
                                q=torch.zeros(n, n_clusters)).items():
            self.register_buffer(name, value)
        self.order: torch.Tensor | None = None  # this epoch's batches (steps, batch) of training-set indices
        self.epoch_start, self.epoch_logs, self.epoch_notes = 0, {}, []

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        return cls(backbone, views, bundle.train.images, n_clusters=cfg.n_clusters or max(2, bundle.num_classes),
                   size=views.config.size, init_epochs=cfg.init_epochs, target=cfg.target, embed_dim=cfg.embed_dim,
                   pretrain_steps=round(cfg.pretrain_epochs * bundle.steps_per_epoch(cfg.batch_size)))

    def embed_clusters(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.embedding(h)) if self.embed_dim else h

    @torch.no_grad()
    def whole_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean embeddings z and soft assignments p of every training image (eval mode)."""
        was, device = self.training, self.head.weight.device
        self.eval()
        z = torch.cat([self.embed_clusters(self.backbone(self.views.prepare(c.to(device)))).float()
                       for c in self.images.split(1024)])
        self.train(was)
        return z, torch.softmax(self.head(z.to(self.head.weight.dtype)).float(), dim=1)

    @torch.no_grad()
    def init_head_by_kmeans(self) -> None:
        """k-means on the raw clean embeddings; head = unit-norm centroids, bias 0 (``Clustering``, ``build_eml``)."""
        from sklearn.cluster import KMeans

        z = self.whole_set()[0].cpu()
        labels = torch.as_tensor(KMeans(self.n_clusters, n_init=self.kmeans_restarts, random_state=0)
                                 .fit_predict(z.numpy())).long()
        centers = torch.stack([z[labels == k].mean(0) if (labels == k).any() else z.mean(0)
                               for k in range(self.n_clusters)])
        self.head.weight.copy_(F.normalize(centers, dim=1).to(self.head.weight))
        self.head.bias.zero_()
        self.labels.copy_(labels)

    def batch_order(self, steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A random permutation, as the engine's; at the epoch boundary it also advances DEPICT's stages and builds
        the epoch's whole-set target."""
        self.order = torch.randperm(len(self.images), generator=generator)[: steps * batch_size].view(steps, -1)
        self.epoch_start, self.epoch_logs, self.epoch_notes = int(self.steps_done), {}, []
        if int(self.stage) == PRETRAIN and int(self.steps_done) >= self.pretrain_steps:
            self.init_head_by_kmeans()
            self.stage.fill_(INIT)
            self.init_left.fill_(self.init_epochs)
            self.epoch_notes.append(f"clustering begins: head initialised by k-means on the embeddings of "
                                    f"{len(self.images)} images; {self.init_epochs} epoch(s) of cross-entropy on "
                                    f"the k-means labels, then the DEPICT targets")
        elif int(self.stage) == INIT:
            self.init_left.sub_(1)
        if int(self.stage) == INIT and int(self.init_left) <= 0:
            self.stage.fill_(DEPICT_STAGE)
        if int(self.stage) == DEPICT_STAGE and not bool(self.converged):
            q = depict_target(self.whole_set()[1].cpu().double(), self.target).float()
            change = float((q - self.q).pow(2).mean())
            self.q.copy_(q)
            self.epoch_logs = {"target_change": change, "target_clusters_used":
                               (torch.bincount(q.argmax(1), minlength=self.n_clusters) > 0).float().mean().item()}
            if change < CONVERGED_MSE:
                self.converged.fill_(True)
                self.epoch_notes.append(f"DEPICT targets converged (mean squared change {change:.2e} < 1e-7): the "
                                        "target is held from here on")
        return self.order

    def batch_indices(self, step: int) -> torch.Tensor:
        """Training-set indices of this process's share of the batch of global step ``step``."""
        if self.order is None:
            raise RuntimeError("DEPICT's clustering steps need the epoch's batch order: call batch_order first")
        return self.order[step - self.epoch_start][process_group.rank()::process_group.world_size()]

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        self.steps_done.fill_(step + 1)
        x = self.views.prepare(images)
        with torch.no_grad():
            clean_blocks, _ = encode_blocks(self.backbone, x)  # targets of the hidden reconstructions
        noisy_blocks, h_noisy = encode_blocks(self.backbone, x, self.dropouts, generator)
        z_noisy = self.embed_clusters(h_noisy)
        x_hat, *hidden = self.decoder(z_noisy, [tuple(b.shape[1:]) for b in clean_blocks] + [tuple(x.shape[1:])])
        rec = self.rec_weight * F.mse_loss(x_hat.float(), x.float()) + self.hidden_weight * sum(
            F.mse_loss(d.float(), e.float()) for d, e in zip(hidden, clean_blocks))
        stage = int(self.stage)
        logs = {"reconstruction": rec.item(), "stage": float(stage), **self.epoch_logs}
        notes, self.epoch_notes = self.epoch_notes, []
        if stage == PRETRAIN:
            return StepOutput(loss=rec, logs=logs, notes=notes)
        rows = self.batch_indices(step).to(self.q.device)
        target = F.one_hot(self.labels[rows], self.n_clusters).float() if stage == INIT else self.q[rows]
        log_p = F.log_softmax(self.head(z_noisy).float(), dim=1)
        cluster_loss = -(target.to(log_p.device) * log_p).sum(1).mean()
        with torch.no_grad():
            used = torch.bincount(log_p.argmax(1), minlength=self.n_clusters) > 0
        logs.update(cluster_loss=cluster_loss.item(), clusters_used=used.float().mean().item())
        return StepOutput(loss=cluster_loss + rec, logs=logs, notes=notes)

    @torch.no_grad()
    def assign(self, h: torch.Tensor) -> torch.Tensor | None:
        if int(self.stage) == PRETRAIN:
            return None  # the head is not initialised yet
        return self.head(self.embed_clusters(h)).argmax(1)
