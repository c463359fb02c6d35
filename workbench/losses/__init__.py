"""Loss functions: pure functions plus thin nn.Module wrappers, each with its equation in the docstring."""
from workbench.losses.ntxent import nt_xent, NTXentLoss

__all__ = ["nt_xent", "NTXentLoss"]
