"""Networks: backbones, heads (and later autoencoders and low-light networks)."""
from workbench.nn.backbones import SmallConvNet, resnet18_cifar, build_backbone, BACKBONES
from workbench.nn.heads import ProjectionMLP

__all__ = ["SmallConvNet", "resnet18_cifar", "build_backbone", "BACKBONES", "ProjectionMLP"]
from workbench.nn.gdc import GlobalDynamicConv
from workbench.nn.ugdc import UGDC, DoubleConv, GDCDoubleConv, predicting_model, enhancing_model
from workbench.nn.zerodce import DCENet, apply_curves

__all__ += ["GlobalDynamicConv", "UGDC", "DoubleConv", "GDCDoubleConv", "predicting_model", "enhancing_model",
            "DCENet", "apply_curves"]
