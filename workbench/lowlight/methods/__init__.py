"""Low-light enhancement methods: TML and its baseline Zero-DCE (and the training-free gamma curves)."""
from workbench.lowlight.methods.base import LowLightMethod
from workbench.lowlight.methods.tml import TML
from workbench.lowlight.methods.zerodce import ZeroDCE

__all__ = ["LowLightMethod", "TML", "ZeroDCE"]
