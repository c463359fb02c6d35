"""Self-supervised methods, one file each. ``METHODS`` maps the CLI name to the class: the one registry line a new
method adds (README, "Adding a method"). Low-light enhancement methods live with the rest of their task in
:mod:`workbench.lowlight`."""
from workbench.lowlight.methods import TML, ZeroDCE
from workbench.methods.base import ContrastiveOptions, Method, StepOutput
from workbench.methods.depict import DEPICT
from workbench.methods.gsimclr import GSimCLR
from workbench.methods.moco import MoCo
from workbench.methods.rotnet import RotNet
from workbench.methods.simclr import SimCLR
from workbench.methods.swav import SwAV

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR, "moco": MoCo, "swav": SwAV, "rotnet": RotNet, "depict": DEPICT, "gsimclr": GSimCLR,
    "tml": TML, "zerodce": ZeroDCE,
}

__all__ = ["Method", "StepOutput", "ContrastiveOptions", "SimCLR", "MoCo", "SwAV", "RotNet", "DEPICT", "GSimCLR",
           "TML", "ZeroDCE", "METHODS"]
