"""Self-supervised methods, one file each. ``METHODS`` maps the CLI name to the class."""
from workbench.methods.base import Method, StepOutput
from workbench.methods.depict import DEPICT
from workbench.methods.gsimclr import GSimCLR
from workbench.methods.moco import MoCo
from workbench.methods.rotnet import RotNet
from workbench.methods.simclr import SimCLR
from workbench.methods.swav import SwAV
from workbench.methods.tml import TML
from workbench.methods.zerodce import ZeroDCE

METHODS: dict[str, type[Method]] = {"simclr": SimCLR, "moco": MoCo, "swav": SwAV, "rotnet": RotNet, "depict": DEPICT, "gsimclr": GSimCLR,
                                   "tml": TML, "zerodce": ZeroDCE}



def is_lowlight(method: str | None) -> bool:
    """Whether ``method`` names a low-light enhancement method (image to image, scored by PSNR/SSIM)."""
    return getattr(METHODS.get(method or ""), "kind", "") == "lowlight"


__all__ = ["Method", "StepOutput", "SimCLR", "MoCo", "SwAV", "RotNet", "DEPICT", "GSimCLR", "TML", "ZeroDCE", "METHODS",
           "is_lowlight"]
