"""Autoencoders for the clustering-flavoured methods (DEPICT, G-SimCLR).

Encoder: the small convnet (conv-BN-ReLU blocks, pooled to a vector h). Decoder: an MLP from h back to the pixels,
which works for any input size up to about 32 px (a conv decoder would tie the network to one input size).
"""
from __future__ import annotations

import torch
from torch import nn

from workbench.nn.backbones import SmallConvNet


class MLPDecoder(nn.Module):
    def __init__(self, in_dim: int, out_shape: tuple[int, int, int], hidden: int = 512):
        super().__init__()
        self.out_shape = out_shape
        c, h, w = out_shape
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c * h * w))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(len(h), *self.out_shape)


class ConvAutoencoder(nn.Module):
    """``x -> h = encoder(x) -> x_hat = decoder(h)``; ``out_dim`` is the size of h."""

    def __init__(self, in_channels: int, size: int, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder or SmallConvNet(in_channels)
        self.out_dim = self.encoder.out_dim
        self.decoder = MLPDecoder(self.out_dim, (in_channels, size, size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.decoder(h)
