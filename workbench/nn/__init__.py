"""Networks: backbones, heads (and later autoencoders and low-light networks)."""
from workbench.nn.backbones import SmallConvNet, resnet18_cifar, build_backbone, BACKBONES
from workbench.nn.heads import ProjectionMLP

__all__ = ["SmallConvNet", "resnet18_cifar", "build_backbone", "BACKBONES", "ProjectionMLP"]
