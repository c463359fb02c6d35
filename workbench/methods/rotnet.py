"""RotNet: Unsupervised Representation Learning by Predicting Image Rotations (Gidaris et al., 2018).

Every image of the batch appears in all four rotations r in {0, 90, 180, 270} degrees and the network predicts r
(4-way cross-entropy). Middle blocks of the backbone transfer best (CIFAR-10 block 2: 89.06 vs block 4: 61.73),
so the probes can read the features of a chosen block (``feature_block``).

Follows ``gidariss/FeatureLearningRotNet`` (``dataloader.py``: all four rotations of every image in one batch).
Departs: it trains on the contrastive views (the official code: RandomCrop(32, padding 4) + flip only) and its
head is an MLP (the NIN model: global pooling + Linear to 4 rotations).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import MethodOptions, option
from workbench.methods.base import Method, StepOutput
from workbench.nn.backbones import block_features


@dataclass
class RotNetOptions(MethodOptions):
    feature_block: int | None = option(None, "backbone block whose pooled output the probes read (default: the "
                                       "last)", ge=1, note="the paper's CIFAR-10 best is block 2")


class RotNet(Method):
    name = "rotnet"
    Options = RotNetOptions
    ROTATIONS = 4

    def __init__(self, backbone: nn.Module, views, feature_block: int | None = None):
        super().__init__(backbone)
        self.views, self.feature_block = views, feature_block
        d = backbone.out_dim
        self.head = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, 4))

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        return cls(backbone, views, feature_block=cfg.feature_block)

    @staticmethod
    def rotate_all(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch in all four rotations (4B images) and the rotation labels 0..3."""
        rotated = torch.cat([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])
        labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
        return rotated, labels

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        (x,) = self.views(images, n=1, g=generator)
        rotated, labels = self.rotate_all(x)
        logits = self.head(self.backbone(rotated))
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(1) == labels).float().mean().item()
        return StepOutput(loss=loss, logs={"rotation_acc": acc})

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_block is None:
            return self.backbone(x)
        return block_features(self.backbone, x, self.feature_block)
