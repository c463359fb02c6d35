"""Backbones f(x) -> h. Every backbone exposes ``out_dim`` (the size of h).

* :class:`SmallConvNet`: 4 blocks conv3x3-BN-ReLU (32-64-128-256 channels), 2x2 max-pool between blocks,
  global average pool. Works from 8 px (digits) to 32 px; trains on a CPU.
* :func:`resnet18_cifar`: torchvision's ResNet-18 with the "CIFAR stem" (3x3 stride-1 first conv, no max-pool),
  the standard backbone for 32 px self-supervised learning; with the ImageNet stem SimCLR on CIFAR-10 stalls.
"""
from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil_mode: 1x1 stays 1x1 for 8 px inputs
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class _ResNetTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet18_cifar(in_channels: int = 3) -> nn.Module:
    """ResNet-18 (torchvision, random init) with a 3x3 stride-1 first conv and no max-pool."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return _ResNetTrunk(net)


BACKBONES = {"convnet": SmallConvNet, "resnet18": resnet18_cifar}


def build_backbone(name: str, in_channels: int) -> nn.Module:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](in_channels=in_channels)


def block_count(backbone: nn.Module) -> int:
    """How many blocks :func:`block_features` can read (0 for a backbone not built here)."""
    if isinstance(backbone, SmallConvNet):
        return sum(isinstance(m, nn.ReLU) for m in backbone.features)
    return 4 if isinstance(backbone, _ResNetTrunk) else 0


def block_features(backbone: nn.Module, x: torch.Tensor, block: int) -> torch.Tensor:
    """Globally average-pooled output of block ``block`` (1-based) of a backbone built here."""
    if isinstance(backbone, SmallConvNet):
        per_block = [i for i, m in enumerate(backbone.features) if isinstance(m, nn.ReLU)]
        if not 1 <= block <= len(per_block):
            raise ValueError(f"feature_block must be in 1..{len(per_block)} for this convnet, got {block}")
        h = backbone.features[: per_block[block - 1] + 1](x)
    elif isinstance(backbone, _ResNetTrunk):
        net = backbone.net
        stages = [net.layer1, net.layer2, net.layer3, net.layer4]
        if not 1 <= block <= 4:
            raise ValueError(f"feature_block must be in 1..4 for ResNet-18, got {block}")
        h = net.relu(net.bn1(net.conv1(x)))
        for stage in stages[:block]:
            h = stage(h)
    else:
        raise ValueError(f"block features are not defined for {type(backbone).__name__}")
    return h.mean(dim=(2, 3))
