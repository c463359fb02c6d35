"""RotNet: Unsupervised Representation Learning by Predicting Image Rotations (Gidaris et al., 2018).

Every image of the batch appears in all four rotations r in {0, 90, 180, 270} degrees and the network predicts r:
``L = -1/4B sum_b sum_r log softmax(W pool(f(rot_r(x_b))))_r`` (4-way cross-entropy on globally pooled features).
Middle blocks of the backbone transfer best (CIFAR-10 block 2: 89.06 vs block 4: 61.73), so the evaluation reports
kNN accuracy on every block's pooled features (``knn_acc_block{i}``) and the probes read ``feature_block``.

Follows ``gidariss/FeatureLearningRotNet`` (``dataloader.py``: all four rotations of every image in one batch, and
the only augmentation RandomCrop(32, padding 4) + horizontal flip; ``architectures/NetworkInNetwork.py``: global
average pooling + Linear to 4 rotations). Departs: the padding scales with the image (size / 8: 4 px at 32 px, 1 px
for 8 px digits); the backbone is the workbench's (the official: NIN with 4 blocks); the block-wise numbers are kNN
on pooled features (the paper: a conv classifier on the block-2 feature maps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import ConfigError, MethodOptions, option
from workbench.data.views import translate_flip
from workbench.methods.base import Method, StepOutput
from workbench.nn.backbones import block_count, block_features


@dataclass
class RotNetOptions(MethodOptions):
    feature_block: int | None = option(None, "backbone block whose pooled output the probes read (default: the "
                                       "last)", ge=1, note="the paper's CIFAR-10 best is block 2")
    crop_padding: int | None = option(None, "RandomCrop padding in pixels; default: image size / 8 (the "
                                      "official 4 at 32 px)", ge=0)


class RotNet(Method):
    name = "rotnet"
    Options = RotNetOptions

    def __init__(self, backbone: nn.Module, views, feature_block: int | None = None, padding: int | None = None):
        super().__init__(backbone)
        self.views, self.feature_block = views, feature_block
        self.padding = max(1, round(views.config.size / 8)) if padding is None else padding
        self.head = nn.Linear(backbone.out_dim, 4)  # global pooling is the backbone's last layer
        self.probe_blocks = block_count(backbone)
        if feature_block is not None and not 1 <= feature_block <= self.probe_blocks:
            raise ConfigError(f"feature_block={feature_block} is not allowed: this backbone has blocks 1.."
                              f"{self.probe_blocks}")

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        return cls(backbone, views, feature_block=cfg.feature_block, padding=cfg.crop_padding)

    @staticmethod
    def rotate_all(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch in all four rotations (4B images) and the rotation labels 0..3."""
        rotated = torch.cat([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])
        labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
        return rotated, labels

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        x = translate_flip(self.views.prepare(images, normalize=False), generator, self.padding)
        rotated, labels = self.rotate_all(self.views.normalize(x))
        logits = self.head(self.backbone(rotated))
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(1) == labels).float().mean()  # a tensor: read with the step's other logs
        return StepOutput(loss=loss, logs={"rotation_acc": acc})

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_block is None:
            return self.backbone(x)
        return block_features(self.backbone, x, self.feature_block)
