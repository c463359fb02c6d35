"""Heads on top of the backbone feature h."""
from __future__ import annotations

from torch import nn


class ProjectionMLP(nn.Sequential):
    """SimCLR's projection head g: ``z = W2 ReLU(BN(W1 h))`` (the loss sees z; probes use h)."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128, batch_norm: bool = True):
        hidden_dim = hidden_dim or in_dim
        layers = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        super().__init__(*layers)
        self.out_dim = out_dim
