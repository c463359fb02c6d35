"""Networks: backbones, heads, autoencoders, momentum encoders, split batch-norm (the low-light networks are in
:mod:`workbench.lowlight.nn`)."""
from workbench.nn.backbones import SmallConvNet, resnet18_cifar, build_backbone, BACKBONES
from workbench.nn.heads import ProjectionMLP

__all__ = ["SmallConvNet", "resnet18_cifar", "build_backbone", "BACKBONES", "ProjectionMLP"]
