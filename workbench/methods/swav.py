"""SwAV: Unsupervised Learning of Visual Features by Contrasting Cluster Assignments (Caron et al., 2020).

Embeddings z = l2norm(MLP(f(x))) of 2 large and N small crops (multi-crop, each resolution one batched forward
pass) are scored against K prototypes C (unit rows, re-normalised every step): ``s = z C^T``. The codes q of the two
large crops come from Sinkhorn-Knopp (equal partition of the batch over the prototypes, no gradient), and each is
predicted from every other crop::

    L = mean over (i in large crops, v != i) of  - sum_k q_i,k log softmax(s_v / tau)_k

The prototypes are frozen for the first iterations. When the batch is smaller than K, Sinkhorn cannot spread it
evenly over the prototypes: a queue of the last ``swav_queue`` embeddings of each large crop (started after
``queue_start_epoch`` epochs, used once full) is scored with the batch, and only the batch's codes are kept. A loss
that sits at ln K means every prototype gets the same probability for every sample: collapse; the run's event log
says so.

Follows ``facebookresearch/swav`` (``main_swav.py``: the swapped prediction, ``distributed_sinkhorn`` and the queue;
``scripts/swav_*.sh``: tau 0.1, large crops at scale (0.14, 1), small crops 96/224 = 0.43x the size at (0.05, 0.14),
the queue from epoch 15; ``src/multicropdataset.py``). Departs: multi-crop only from 24 px (smaller images give
small crops of a few pixels), and without it the large crops keep the dataset's crop scale; the default queue is
sized to the batch and K (the scripts: 3840 at batch 256, K 3000).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench import process_group
from workbench.losses.precision import fp32_region
from workbench.losses.swav import sinkhorn_knopp, swapped_prediction
from workbench.config import option
from workbench.methods.base import ContrastiveOptions, Method, StepOutput
from workbench.nn.heads import ProjectionMLP

LN_K_STEPS = 50  # warn once the loss has been within 1% of ln K for this many steps in a row
LN_K_CHECK_EVERY = 10  # read the device-side count every this many steps (one sync, not one per step)


@dataclass
class SwAVOptions(ContrastiveOptions):
    prototypes: int | None = option(None, "K prototypes; default 3 x the number of classes (ImageNet: 3000)", ge=2)
    swav_eps: float = option(0.05, "Sinkhorn entropy eps", ge=0.001, le=10, note="typical 0.03 to 0.05")
    sinkhorn_iters: int = option(3, "Sinkhorn-Knopp iterations", ge=1)
    small_crops: int | None = option(None, "multi-crop: 2 large views + this many small; default 2 from 24 px up, "
                                     "else 0", ge=0)
    freeze_prototypes_epochs: float = option(1.0, "epochs the prototypes stay frozen at the start", ge=0)
    tau: float = option(0.1, "temperature of the swapped prediction", ge=0.01, le=10, note="the SwAV scripts' 0.1")
    swav_queue: int | None = option(None, "embeddings per large crop kept for Sinkhorn; default: none when the "
                                    "batch holds at least K samples, else batches enough to exceed K", ge=0,
                                    note="the scripts: 3840 at batch 256, K 3000")
    queue_start_epoch: float = option(15.0, "epoch from which the queue fills (used once full)", ge=0)


class SwAV(Method):
    name = "swav"
    Options = SwAVOptions
    sync_batchnorm = True  # the scripts' --sync_bn: positives must not share per-device batch statistics

    def __init__(self, backbone: nn.Module, views, tau: float = 0.1, proj_dim: int = 128, prototypes: int = 100,
                 eps: float = 0.05, sinkhorn_iters: int = 3, small_crops: int = 2, freeze_prototypes_steps: int = 0,
                 queue_length: int = 0, queue_start_step: int = 0):
        super().__init__(backbone)
        self.views, self.tau, self.eps, self.iters = views, tau, eps, sinkhorn_iters
        self.small_crops, self.freeze_steps = small_crops, freeze_prototypes_steps
        self.projector = ProjectionMLP(backbone.out_dim, backbone.out_dim, proj_dim)
        self.prototypes = nn.Linear(proj_dim, prototypes, bias=False)
        size = views.config.size
        self.small_size = max(4, round(size * 96 / 224))
        # with multi-crop, large crops as the scripts (0.14, 1); else the dataset's crop scale
        self.large_scale = (0.14, 1.0) if small_crops else None
        self.queue_start_step = queue_start_step
        self.register_buffer("queue", torch.zeros(2, queue_length, proj_dim))  # newest first; zeros: not full
        self._near_ln_k: torch.Tensor | None = None  # steps in a row with the loss at ln K (on the device)
        self._warned_ln_k = False

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        steps_per_epoch = bundle.steps_per_epoch(cfg.batch_size)
        # small crops of tiny images are a few pixels of nothing: multi-crop only from 24 px up
        small = cfg.small_crops if cfg.small_crops is not None else (2 if views.config.size >= 24 else 0)
        k = cfg.prototypes or 3 * max(1, bundle.num_classes or 10)
        batch = min(cfg.batch_size, len(bundle.train)) // process_group.world_size()
        queue = cfg.swav_queue if cfg.swav_queue is not None else (0 if batch >= k else batch * math.ceil(k / batch))
        return cls(backbone, views, tau=cfg.tau, proj_dim=cfg.proj_dim, prototypes=k, eps=cfg.swav_eps,
                   sinkhorn_iters=cfg.sinkhorn_iters, small_crops=small,
                   freeze_prototypes_steps=round(cfg.freeze_prototypes_epochs * steps_per_epoch),
                   queue_length=queue, queue_start_step=round(cfg.queue_start_epoch * steps_per_epoch))

    def embed_views(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)).float(), dim=1)

    @torch.no_grad()
    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(h).float(), dim=1)

    @torch.no_grad()
    def assign(self, h: torch.Tensor) -> torch.Tensor:
        """The prototype each sample is closest to: SwAV's clusters."""
        c = F.normalize(self.prototypes.weight.float(), dim=1)
        return (self.embed(h) @ c.T).argmax(1)

    @torch.no_grad()
    def codes(self, crop: int, z: torch.Tensor, scores: torch.Tensor, c: torch.Tensor, step: int) -> torch.Tensor:
        """Sinkhorn codes of one large crop's batch, with the queue's embeddings scored alongside once it is full
        (``main_swav.py``: ``out = cat(queue @ C^T, out)``, codes ``[-bs:]``); then the batch enters the queue."""
        n, queue = len(z), self.queue[crop] if self.queue.shape[1] else None
        if queue is None or step < self.queue_start_step:
            return sinkhorn_knopp(scores, self.eps, self.iters, distributed=process_group.active())
        if bool(queue[-1].any()):  # full
            scores = torch.cat([queue @ c.float().T, scores])
        codes = sinkhorn_knopp(scores, self.eps, self.iters, distributed=process_group.active())[-n:]
        queue.copy_(torch.cat([z, queue[:-n]])[: len(queue)])
        return codes

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        n = len(images)
        large = torch.cat([self.views.view(images, generator, scale=self.large_scale) for _ in range(2)])
        z_large = self.embed_views(large)
        z = [z_large[:n], z_large[n:]]
        if self.small_crops:
            small = torch.cat([self.views.view(images, generator, size=self.small_size, scale=(0.05, 0.14))
                               for _ in range(self.small_crops)])
            z += list(self.embed_views(small).split(n))
        frozen = step < self.freeze_steps
        c = self.prototypes.weight.detach() if frozen else self.prototypes.weight
        with fp32_region():  # the scores, the codes and the loss in fp32 under mixed precision
            scores = [zi @ c.float().T for zi in z]
            losses = []
            for i in (0, 1):
                codes = self.codes(i, z[i].detach(), scores[i].detach(), c.detach(), step)
                losses += [swapped_prediction(codes, scores[v], self.tau) for v in range(len(z)) if v != i]
            loss = torch.stack(losses).mean()
        k = c.shape[0]
        with torch.no_grad():  # tensors: the engine reads every step's logs at once, without a sync per step
            used = torch.bincount(scores[0].argmax(1), minlength=k).gt(0).float().mean()
            near = (loss.detach() - math.log(k)).abs() < 0.01 * math.log(k)
            self._near_ln_k = near.long() if self._near_ln_k is None else (self._near_ln_k + 1) * near
        out = StepOutput(loss=loss, logs={"prototype_usage": used, "ln_k": math.log(k)},
                         z1=z[0].detach(), z2=z[1].detach())
        if (step + 1) % LN_K_CHECK_EVERY == 0:  # once per plateau: again only after the loss has left ln K
            streak = int(self._near_ln_k)
            if streak >= LN_K_STEPS and not self._warned_ln_k:
                out.warnings.append(f"SwAV loss has stayed at ln K = {math.log(k):.3f} for {streak} steps: every "
                                    "prototype gets the same probability (collapse). Try a smaller swav_eps, a larger "
                                    "tau or fewer prototypes, and check that the batch is larger than K.")
            self._warned_ln_k = streak >= LN_K_STEPS
        return out
