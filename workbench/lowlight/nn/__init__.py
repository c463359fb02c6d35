"""Low-light networks: Global Dynamic Convolution, the UGDC predicting/enhancing models, Zero-DCE's DCE-Net."""
from workbench.lowlight.nn.dcenet import DCENet, apply_curves
from workbench.lowlight.nn.gdc import GlobalDynamicConv
from workbench.lowlight.nn.ugdc import UGDC, DoubleConv, GDCDoubleConv, enhancing_model, predicting_model

__all__ = ["GlobalDynamicConv", "UGDC", "DoubleConv", "GDCDoubleConv", "predicting_model", "enhancing_model",
           "DCENet", "apply_curves"]
