"""What every method provides to the engine and the diagnostics.

A method is an ``nn.Module`` with a backbone (``features`` gives h for the probes) and a
``step(images, generator) -> StepOutput``: it makes its own views of the raw ``uint8`` batch, computes its loss and
returns what the diagnostics need.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StepOutput:
    """The result of one training step.

    ``loss``: the scalar to minimise. ``logs``: cheap scalars the method wants logged every step.
    ``z1, z2``: L2-normalised embeddings of two views of the same images, detached (the pos/neg score histograms,
    alignment, uniformity and collapse measures are computed from these). ``pos, neg``: the method's own
    positive and negative similarity scores where they are not the in-batch ones (e.g. MoCo's queue).
    ``warnings`` and ``notes`` become events of the run (levels ``warning`` and ``info``).
    """

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)
    z1: torch.Tensor | None = None
    z2: torch.Tensor | None = None
    pos: torch.Tensor | None = None
    neg: torch.Tensor | None = None
    extra_scores: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # informational events (e.g. a training stage begins)


class Method(nn.Module):
    name = "method"
    kind = "representation"  # or "lowlight": an image-to-image enhancer, evaluated by PSNR/SSIM, not by probes

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    @classmethod
    def from_config(cls, cfg, backbone: nn.Module, views, bundle) -> "Method":
        """Build the method from a :class:`~workbench.config.TrainConfig` (each method reads its own fields) and
        the :class:`~workbench.data.DatasetBundle` it will train on."""
        raise NotImplementedError

    def assign(self, h: torch.Tensor) -> torch.Tensor | None:
        """Cluster assignments of backbone features, for methods that have clusters of their own."""
        return None

    def step(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:  # pragma: no cover
        raise NotImplementedError

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """One training step's forward pass (so DistributedDataParallel can wrap a method)."""
        return self.step(images, generator)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features h of already-normalised images (used by the kNN probe and snapshots)."""
        return self.backbone(x)

    @torch.no_grad()
    def embed(self, h: torch.Tensor) -> torch.Tensor:
        """The L2-normalised embedding z the loss acts on, from backbone features h (tolerance, uniformity)."""
        return torch.nn.functional.normalize(h, dim=1)
