"""Autoencoders for the clustering-flavoured methods (DEPICT, G-SimCLR).

Encoder: the small convnet (conv-BN-ReLU blocks, pooled to a vector h). Decoder: an MLP from h back to the pixels,
which works for any input size up to about 32 px (a conv decoder would tie the network to one input size).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

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


def dropout_mask(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout of ``x`` at rate ``p`` drawn from ``generator`` (reproducible, unlike ``F.dropout``)."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep.to(x.dtype) / (1 - p)


@contextmanager
def running_stats_frozen(module: nn.Module):
    """Inside the block, ``module``'s batch-norm layers still normalise with the batch's statistics in training
    mode but leave their running statistics (what eval mode uses) as they are."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) running + 0 batch
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def encode_blocks(encoder: "SmallConvNet | DEPICTEncoder", x: torch.Tensor, dropouts: tuple[float, ...] = (),
                  generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The output of every conv block (after its ReLU) of a :class:`SmallConvNet` (or a :class:`DEPICTEncoder`)
    and the pooled (flattened) h.

    ``dropouts[0]`` drops input pixels, ``dropouts[l]`` the output of block l (DEPICT's corrupted path); the
    clean path is ``dropouts=()``. The corrupted path leaves batch-norm's running statistics alone, so that eval
    mode (DEPICT's clean targets and held-out scores) normalises with the statistics of clean images, not a blend
    with dropout's: with that blend, on digits at DEPICT's official constant lr, its clustering stage emptied a
    cluster and ACC fell from 0.878 to 0.754 (with clean statistics: 0.864 to 0.874)."""
    rates = list(dropouts) + [0.0] * (len(encoder.features) + 1)
    with running_stats_frozen(encoder) if any(r > 0 for r in rates) else nullcontext():
        h, blocks = dropout_mask(x, rates[0], generator), []
        for layer in encoder.features:
            h = layer(h)
            if isinstance(layer, (nn.ReLU, nn.LeakyReLU)):
                blocks.append(h)
                h = dropout_mask(h, rates[len(blocks)], generator)
        return blocks, encoder.pool(h).flatten(1)


class LayerwiseDecoder(nn.Module):
    """Mirror of a :class:`SmallConvNet`: an embedding ``z`` -> the last block's map (a linear layer) -> each earlier
    block's map (2x2 stride-2 transposed convs, cropped to the encoder's sizes) -> the pixels (a 3x3 conv).

    ``forward(z, shapes)`` returns ``[x_hat, d_1, ..., d_L]``: ``d_l`` is the reconstruction of block l's output and
    ``shapes`` the encoder's block shapes ``(C, H, W)`` for l = 1..L plus the input's."""

    def __init__(self, in_dim: int, in_channels: int, widths: tuple[int, ...] = (32, 64, 128, 256),
                 last_hw: tuple[int, int] = (4, 4)):
        super().__init__()
        self.fc = nn.Linear(in_dim, widths[-1] * last_hw[0] * last_hw[1])
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in reversed(range(len(widths) - 1)))
        self.out = nn.Conv2d(widths[0], in_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, z: torch.Tensor, shapes: list[tuple[int, int, int]]) -> list[torch.Tensor]:
        *blocks, image = shapes
        d = self.act(self.fc(z)).view(len(z), *blocks[-1])
        recs = [d]
        for up, (_, hgt, wid) in zip(self.up, reversed(blocks[:-1])):
            d = self.act(up(d))[..., :hgt, :wid]
            recs.append(d)
        return [self.out(d)[..., : image[1], : image[2]]] + recs[::-1]


def depict_layout(size: int) -> tuple[tuple[int, int, int], ...]:
    """``(kernel, stride, padding)`` of the official DEPICT encoder's two convs (``dataset_settings``): MNIST (28 px)
    and USPS (16 px) ``[4, 5] / [2, 2] / [0, 2]``, used up to 28 px (8 px digits: 8 -> 3 -> 2); the 32 px sets
    (FRGC, CMU-PIE) pad the first conv by 2 as well."""
    return ((4, 2, 0), (5, 2, 2)) if size < 32 else ((4, 2, 2), (5, 2, 2))


class DEPICTEncoder(nn.Module):
    """The official DEPICT encoder (``build_MdA``): two strided convs of ``width`` (50) channels with LeakyReLU(0.01),
    no batch-norm and no pooling; ``h`` is the flattened output of the second (50 x 7 x 7 = 2,450 for 28 px), which
    DEPICT's tanh embedding reads. Glorot-uniform weights, zero biases (lasagne's defaults)."""

    def __init__(self, in_channels: int, size: int, width: int = 50):
        super().__init__()
        layers: list[nn.Module] = []
        c, hw = in_channels, size
        for k, s, p in depict_layout(size):
            layers += [nn.Conv2d(c, width, k, stride=s, padding=p), nn.LeakyReLU(0.01)]
            c, hw = width, (hw + 2 * p - k) // s + 1
        self.features = nn.Sequential(*layers)
        self.pool = nn.Identity()
        self.out_dim = c * hw * hw
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


class DEPICTDecoder(nn.Module):
    """The official DEPICT decoder (``build_MdA``), the mirror of a :class:`DEPICTEncoder`: a dense layer from the
    embedding back to the last conv's map (LeakyReLU), then a transposed conv per encoder conv with the same kernel,
    stride and padding (LeakyReLU, the last one linear: officially tanh on images scaled to [-1, 1], here the
    workbench's mean/std-normalised pixels). ``forward(z, shapes)`` returns ``[x_hat, d_1, ..., d_L]`` as
    :class:`LayerwiseDecoder` does."""

    def __init__(self, in_dim: int, encoder: DEPICTEncoder):
        super().__init__()
        convs = [m for m in encoder.features if isinstance(m, nn.Conv2d)]
        self.fc = nn.Linear(in_dim, encoder.out_dim)
        self.up = nn.ModuleList(nn.ConvTranspose2d(c.out_channels, c.in_channels, c.kernel_size, stride=c.stride,
                                                   padding=c.padding) for c in reversed(convs))
        self.act = nn.LeakyReLU(0.01)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, shapes: list[tuple[int, int, int]]) -> list[torch.Tensor]:
        *blocks, image = shapes
        d = self.act(self.fc(z)).view(len(z), *blocks[-1])
        recs = [d]
        targets = list(reversed(blocks[:-1])) + [image]
        for i, (up, (_, hgt, wid)) in enumerate(zip(self.up, targets)):
            d = up(d, output_size=(hgt, wid))
            if i < len(self.up) - 1:
                d = self.act(d)
                recs.append(d)
        return [d] + recs[::-1]
