"""RotNet: Unsupervised Representation Learning by Predicting Image Rotations (Gidaris et al., 2018).

Every image of the batch appears in all K rotations r and the network predicts r:
``L = -1/KB sum_b sum_r log softmax(W pool(f(rot_r(x_b))))_r`` (K-way cross-entropy on globally pooled features).
K = 4 (0, 90, 180, 270 degrees) is the paper's method; ``--rotations 2`` (0, 180) and ``8`` (every 45 degrees) are
the other rows of its Table 2 (CIFAR-10: 87.46 / 89.06 / 88.51 for 2 / 4 / 8). Middle blocks of the backbone
transfer best (CIFAR-10 block 2: 89.06 vs block 4: 61.73), so the evaluation reports kNN accuracy on every block's
pooled features (``knn_acc_block{i}``) and the probes read ``feature_block``.

Follows ``gidariss/FeatureLearningRotNet`` (``dataloader.py``: all four rotations of every image in one batch, and
the only augmentation RandomCrop(32, padding 4) + horizontal flip; ``architectures/NetworkInNetwork.py``: global
average pooling + Linear to 4 rotations). Departs: the padding scales with the image (size / 8: 4 px at 32 px, 1 px
for 8 px digits); the backbone is the workbench's (the official: NIN with 4 blocks); the block-wise numbers are kNN
on pooled features (the paper: a conv classifier on the block-2 feature maps). The official code has four rotations
only; the 45-degree ones here are torchvision's bilinear rotation about the centre, the corners filled with the
normalised black (the paper does not say how it filled them), so a network can also read them off the corners.
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

ROTATIONS = {2: (0, 180), 4: (0, 90, 180, 270), 8: (0, 45, 90, 135, 180, 225, 270, 315)}  # degrees, by K


@dataclass
class RotNetOptions(MethodOptions):
    feature_block: int | None = option(None, "backbone block whose pooled output the probes read (default: the "
                                       "last)", ge=1, note="the paper's CIFAR-10 best is block 2")
    crop_padding: int | None = option(None, "RandomCrop padding in pixels; default: image size / 8 (the "
                                      "official 4 at 32 px)", ge=0)
    rotations: int = option(4, "how many rotations the network tells apart: 4 (0/90/180/270, the paper's method), "
                            "2 (0/180) or 8 (every 45 degrees, bilinear, black corners)", choices=tuple(ROTATIONS),
                            note="the paper's CIFAR-10 Table 2: 2 / 4 / 8 rotations 87.46 / 89.06 / 88.51")


class RotNet(Method):
    name = "rotnet"
    Options = RotNetOptions

    def __init__(self, backbone: nn.Module, views, feature_block: int | None = None, padding: int | None = None,
                 rotations: int = 4):
        super().__init__(backbone)
        if rotations not in ROTATIONS:
            raise ConfigError(f"rotations={rotations} is not allowed: one of {', '.join(map(str, ROTATIONS))}")
        self.views, self.feature_block, self.angles = views, feature_block, ROTATIONS[rotations]
        self.padding = max(1, round(views.config.size / 8)) if padding is None else padding
        self.head = nn.Linear(backbone.out_dim, rotations)  # global pooling is the backbone's last layer
        self.probe_blocks = block_count(backbone)
        if feature_block is not None and not 1 <= feature_block <= self.probe_blocks:
            raise ConfigError(f"feature_block={feature_block} is not allowed: this backbone has blocks 1.."
                              f"{self.probe_blocks}")

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        return cls(backbone, views, feature_block=cfg.feature_block, padding=cfg.crop_padding,
                   rotations=cfg.rotations)

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        x = translate_flip(self.views.prepare(images, normalize=False), generator, self.padding)
        rotated, labels = rotate_batch(x, self.angles, 0.0)  # on [0, 1] pixels: the corners are black
        logits = self.head(self.backbone(self.views.normalize(rotated)))
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(1) == labels).float().mean()  # a tensor: read with the step's other logs
        return StepOutput(loss=loss, logs={"rotation_acc": acc})

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_block is None:
            return self.backbone(x)
        return block_features(self.backbone, x, self.feature_block)


def rotate_batch(x: torch.Tensor, angles: tuple[int, ...], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (B, C, H, W) in every rotation of ``angles`` (degrees, counter-clockwise), rotation-major (K B images),
    and the rotation labels 0..K-1. Multiples of 90 degrees are exact (``torch.rot90``); the others use
    torchvision's bilinear rotation about the centre, keeping the size, the corners filled with ``fill``."""
    from torchvision.transforms.v2 import functional as TF

    out = []
    for angle in angles:
        if angle % 90 == 0:
            out.append(torch.rot90(x, angle // 90, dims=(2, 3)))
        else:
            out.append(TF.rotate(x, float(angle), interpolation=TF.InterpolationMode.BILINEAR, fill=fill))
    labels = torch.arange(len(angles), device=x.device).repeat_interleave(len(x))
    return torch.cat(out), labels
