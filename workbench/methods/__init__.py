"""Self-supervised methods, one file each. ``METHODS`` maps the CLI name to the class."""
from workbench.methods.base import Method, StepOutput
from workbench.methods.simclr import SimCLR

METHODS: dict[str, type[Method]] = {"simclr": SimCLR}

__all__ = ["Method", "StepOutput", "SimCLR", "METHODS"]
