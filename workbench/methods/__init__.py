"""Self-supervised methods, one file each. ``METHODS`` maps the CLI name to the class."""
from workbench.methods.base import Method, StepOutput
from workbench.methods.depict import DEPICT
from workbench.methods.gsimclr import GSimCLR
from workbench.methods.moco import MoCo
from workbench.methods.rotnet import RotNet
from workbench.methods.simclr import SimCLR
from workbench.methods.swav import SwAV

METHODS: dict[str, type[Method]] = {"simclr": SimCLR, "moco": MoCo, "swav": SwAV, "rotnet": RotNet, "depict": DEPICT, "gsimclr": GSimCLR}

__all__ = ["Method", "StepOutput", "SimCLR", "MoCo", "SwAV", "RotNet", "DEPICT", "GSimCLR", "METHODS"]
