"""MoCo v2: Momentum Contrast (He et al., 2020; Chen et al., 2020), with the Feature Transformation of Zhu et al.
(2021) as options.

A query encoder f_q (backbone + MLP head) and a key encoder f_k, its exponential moving average::

    theta_k <- m theta_k + (1 - m) theta_q

q = l2norm(f_q(x_q)) and k = l2norm(f_k(x_k)) (no gradient). The loss is InfoNCE against a queue of the K most
recent keys at temperature tau: ``-log e^{q.k/tau} / (e^{q.k/tau} + sum_n e^{q.n/tau})``. Keys are enqueued after
each step. Shuffle-BN is simulated on one device by split batch-norm and a shuffle of the key batch. The symmetric
loss uses each view once as query and once as key and is the SUM ``L(q1, k2) + L(q2, k1)`` (the CIFAR demo's lr
0.06 / wd 5e-4 are tuned for the sum). Feature Transformation (``ft_pos``, ``ft_neg``) makes positives harder by
extrapolation and negatives more diverse by interpolation; both score sets, before and after, are logged.

The queue remembers which training image each key came from. On a small dataset a queue as large as the data holds
keys of the query's own image (false negatives), so K is capped at half the training images (an event says so)
and, by default, keys of the query's own image are left out of its negatives. Logged every step:
``queue_self_frac``, the fraction of queries that met a key of their own image among the negatives the loss used,
and, with labels, ``queue_same_label_frac``, the mean fraction of (non-random) queue entries of the query's class.

Follows ``facebookresearch/moco`` (``moco/builder.py``: queue, momentum update, batch shuffle, the MLP head
Linear-ReLU-Linear without batch-norm) and its CIFAR demo (``colab/moco_cifar10_demo.ipynb``: split batch-norm, the
summed symmetric loss, keys enqueued as ``cat(k1, k2)``, tau 0.1); Feature Transformation follows
``memory/mem_moco.py`` of the FT paper's code. Departs: keys of the query's own image are excluded from its
negatives (``exclude_self_keys``; official: kept, which matters only when K is near the number of images) and the
queue is capped below the data; the loss is symmetric by default (the FT code runs asymmetric MoCo:
``--symmetric false``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench import process_group
from workbench.config import option
from workbench.losses.infonce import extrapolate_positives, info_nce, interpolate_negatives
from workbench.losses.precision import fp32
from workbench.methods.base import ContrastiveOptions, Method, StepOutput
from workbench.nn.heads import ProjectionMLP
from workbench.nn.momentum import FeatureQueue, momentum_copy, momentum_update
from workbench.nn.splitbn import convert_split_bn


@dataclass
class MoCoOptions(ContrastiveOptions):
    tau: float = option(0.1, "temperature of InfoNCE", ge=0.01, le=10,
                        note="the CIFAR demo's 0.1; MoCo v2 ImageNet 0.2")
    moco_momentum: float = option(0.99, "key encoder EMA m", ge=0, le=1,
                                  note="CIFAR demo 0.99, ImageNet 0.999; 1 freezes the key encoder")
    queue_size: int = option(4096, "K: keys kept as negatives (capped at half the training images)", ge=1,
                             le=1_000_000)
    symmetric: bool = option(True, "each view acts once as query and once as key, losses summed (better at small "
                             "scale)")
    exclude_self_keys: bool = option(True, "leave keys of the query's own image out of its negatives (official "
                                     "MoCo keeps them; they are false negatives when K is near the data size)")
    split_bn: int = option(8, "sub-batches of split batch-norm, shuffle-BN on one device (1 = plain BN)", ge=1)
    ft_pos: bool = option(False, "Feature Transformation: positive extrapolation, lambda+ = 1 + Beta(a+, a+)")
    ft_neg: bool = option(False, "Feature Transformation: negative interpolation, lambda- ~ Beta(a-, a-)")
    ft_alpha_pos: float = option(2.0, "a+ of positive extrapolation", gt=0, le=100)
    ft_alpha_neg: float = option(1.6, "a- of negative interpolation", gt=0, le=100)


def queue_cap(queue_size: int, n_train: int) -> int:
    """K capped at half the training images (at least 1)."""
    return max(1, min(queue_size, n_train // 2))


class MoCo(Method):
    name = "moco"
    Options = MoCoOptions
    needs_index = True

    def __init__(self, backbone: nn.Module, views, tau: float = 0.1, proj_dim: int = 128, momentum: float = 0.99,
                 queue_size: int = 4096, symmetric: bool = True, split_bn: int = 8, ft_pos: bool = False,
                 ft_neg: bool = False, alpha_pos: float = 2.0, alpha_neg: float = 1.6,
                 exclude_self_keys: bool = True, labels: torch.Tensor | None = None):
        super().__init__(backbone)
        if split_bn > 1:
            convert_split_bn(backbone, split_bn)
        self.views, self.tau, self.m, self.symmetric = views, tau, momentum, symmetric
        self.ft_pos, self.ft_neg, self.alpha_pos, self.alpha_neg = ft_pos, ft_neg, alpha_pos, alpha_neg
        self.exclude_self_keys = exclude_self_keys
        self.register_buffer("labels", labels, persistent=False)  # for the diagnostics only, never the loss
        self.projector = ProjectionMLP(backbone.out_dim, backbone.out_dim, proj_dim, batch_norm=False)
        self.key_backbone = momentum_copy(backbone)
        self.key_projector = momentum_copy(self.projector)
        self.queue = FeatureQueue(proj_dim, queue_size)

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        n = len(bundle.train)
        k = queue_cap(cfg.queue_size, n)
        method = cls(backbone, views, tau=cfg.tau, proj_dim=cfg.proj_dim, momentum=cfg.moco_momentum,
                     queue_size=k, symmetric=cfg.symmetric, split_bn=cfg.split_bn, ft_pos=cfg.ft_pos,
                     ft_neg=cfg.ft_neg, alpha_pos=cfg.ft_alpha_pos, alpha_neg=cfg.ft_alpha_neg,
                     exclude_self_keys=cfg.exclude_self_keys,
                     labels=bundle.train.labels if bundle.train.has_labels else None)
        if k < cfg.queue_size:
            method.notes_for_first_step.append(f"queue_size {cfg.queue_size} capped at {k}: half the {n} training images, "
                                        "so the queue does not hold keys of every query's own image")
        return method

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)).float(), dim=1)

    @torch.no_grad()
    def key(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Keys of a shuffled batch, un-shuffled: with split-BN a key's statistics come from other samples."""
        perm = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
        k = F.normalize(self.key_projector(self.key_backbone(x[perm])).float(), dim=1)
        return k[torch.argsort(perm)]

    @torch.no_grad()
    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(h).float(), dim=1)

    @fp32  # the scores and the loss in fp32 under mixed precision
    def _contrast(self, q, k, negatives, generator, exclude=None):
        """InfoNCE of one query/key set; returns the loss, the scores before any Feature Transformation and, when a
        transformation is on, the scores after it (what the loss actually saw)."""
        q_t, k_t, n_t, lam = q, k, negatives, {}
        if self.ft_pos:
            q_t, k_t, lam["lambda_pos"] = extrapolate_positives(q, k, self.alpha_pos, generator)
        if self.ft_neg:
            n_t, lam["lambda_neg"] = interpolate_negatives(negatives, self.alpha_neg, generator)
        loss, pos_t, neg_t = info_nce(q_t, k_t, n_t, self.tau, exclude)
        moved = (pos_t.detach(), neg_t.detach())
        if not lam:
            return loss, moved, None, lam
        with torch.no_grad():
            raw = ((q * k).sum(1), q @ negatives.T)
        return loss, raw, moved, lam

    @torch.no_grad()
    def _queue_facts(self, index: torch.Tensor | None) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Which queue entries are keys of each query's own image (B, K), and the logged fractions."""
        if index is None:
            return None, {}
        source = self.queue.sources()
        index = index.to(source.device)
        own = index[:, None] == source[None, :]
        excluded = self.exclude_self_keys and not self.ft_neg  # mixed negatives are no one's own key
        # tensors: the engine reads every step's logs at once, without a device sync per step
        facts = {"queue_self_frac": torch.zeros(()) if excluded else own.any(1).float().mean()}
        known = source >= 0
        if self.labels is not None and known.any():
            same = self.labels[index][:, None] == self.labels[source.clamp(min=0)][None, :]
            facts["queue_same_label_frac"] = ((same & known).sum(1) / known.sum()).mean()
        return (own if excluded else None), facts

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator,
             index: torch.Tensor | None = None) -> StepOutput:
        x1, x2 = self.views(images, n=2, g=generator)
        momentum_update(self.backbone, self.key_backbone, self.m)
        momentum_update(self.projector, self.key_projector, self.m)
        negatives = self.queue.snapshot()
        exclude, facts = self._queue_facts(index)
        q1, k2 = self.query(x1), self.key(x2, generator)
        loss, raw, moved, lam = self._contrast(q1, k2, negatives, generator, exclude)
        keys, sources = [k2], [index]
        if self.symmetric:
            q2, k1 = self.query(x2), self.key(x1, generator)
            loss2, raw2, moved2, _ = self._contrast(q2, k1, negatives, generator, exclude)
            loss = loss + loss2  # the CIFAR demo's loss_12 + loss_21
            raw = tuple(torch.cat(p) for p in zip(raw, raw2))
            moved = tuple(torch.cat(p) for p in zip(moved, moved2)) if moved is not None else None
            keys, sources = [k1, k2], [index, index]  # the demo enqueues cat([k1, k2])
        source = None if index is None else process_group.gather(torch.cat(sources).to(k2.device))
        self.queue.enqueue(process_group.gather(torch.cat(keys)), source)  # every process's keys: one queue
        out = StepOutput(loss=loss, logs={**lam, **facts}, z1=q1.detach(), z2=k2, pos=raw[0], neg=raw[1])
        if moved is not None:
            out.extra_scores["ft"] = moved
        return out
