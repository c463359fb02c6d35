"""What every method provides to the engine and the diagnostics.

A method is an ``nn.Module`` with a backbone (``features`` gives h for the probes), an ``Options`` dataclass of its
own (the paper's names and defaults, next to its code) and a ``step(images, step, generator) -> StepOutput``: it
makes its own views of the raw ``uint8`` batch, computes its loss and returns what the diagnostics need. ``step`` is
the 0-based index of the training step (schedules such as a pre-training stage read it); the method never sees the
engine. ``task`` names the kind of work it does (:mod:`workbench.engine.task`): how its data is loaded and how it is
evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from workbench.config import MethodOptions, option


@dataclass
class StepOutput:
    """The result of one training step.

    ``loss``: the scalar to minimise. ``logs``: cheap scalars the method wants logged every step (floats, or 0-d
    tensors, which the engine reads from the device together, once per write of the run store).
    ``z1, z2``: L2-normalised embeddings of two views of the same images, detached (the pos/neg score histograms,
    alignment, uniformity and collapse measures are computed from these). ``pos, neg``: the method's own
    positive and negative similarity scores where they are not the in-batch ones (e.g. MoCo's queue).
    ``warnings`` and ``notes`` become events of the run (levels ``warning`` and ``info``). ``fresh_optimizer``:
    the optimiser's state (Adam's moments and step count, SGD's momentum) is cleared before this step's update, as
    when a method's stage starts a new optimiser (DEPICT's stages, officially separate runs).
    """

    loss: torch.Tensor
    logs: dict[str, float | torch.Tensor] = field(default_factory=dict)
    z1: torch.Tensor | None = None
    z2: torch.Tensor | None = None
    pos: torch.Tensor | None = None
    neg: torch.Tensor | None = None
    extra_scores: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # informational events (e.g. a training stage begins)
    fresh_optimizer: bool = False



def fit_pretraining(pretrain_epochs: float, epochs: int, steps_per_epoch: int, method: str,
                    main_stage: str) -> tuple[int, str | None]:
    """Pretraining steps for a two-stage method (G-SimCLR, DEPICT) and a line for the run when they had to change:
    a plan that fills the whole run would end "finished" without ever training the ``main_stage``, so pretraining
    then gets half of the run."""
    pretrain, total = round(pretrain_epochs * steps_per_epoch), epochs * steps_per_epoch
    if not pretrain or pretrain < total:
        return pretrain, None
    half = total // 2
    return half, (f"{method} plan: --pretrain-epochs {pretrain_epochs} would fill this run's {total} steps; "
                  f"pretraining gets {half} and {main_stage} {total - half} (give more --epochs for the planned "
                  "pretraining)")

@dataclass
class ContrastiveOptions(MethodOptions):
    """What the contrastive methods share: the temperature of their softmax and the projection's output size."""

    tau: float = option(0.2, "temperature of the contrastive softmax (NT-Xent, InfoNCE, SwAV)", ge=0.01, le=10,
                        note="typical 0.05 to 1.0; solo-learn's CIFAR default 0.2, SimCLR's CIFAR 0.5, SwAV's 0.1")
    proj_dim: int = option(128, "output size of the projection MLP (z)", ge=2, le=65_536)


class Method(nn.Module):
    name = "method"
    task = "representation"  # the kind of work (workbench.engine.task): "representation" or "lowlight"
    Options: type[MethodOptions] = MethodOptions
    sync_batchnorm = False  # True: batch-norm is global under DDP (in-batch contrast: SimCLR, SwAV, G-SimCLR)
    needs_index = False  # True: step() also takes ``index``, the batch's positions in the training set (MoCo)
    probe_blocks = 0  # > 0: the evaluation also reports kNN accuracy on each backbone block (RotNet)
    common_defaults: dict = {}  # the paper's values of common options (optimizer, lr, batch_size, ...): Zero-DCE

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.notes_for_first_step: list[str] = []  # what building the method decided (e.g. a capped option)
        self.warnings_for_first_step: list[str] = []  # what building it found doubtful (shown as warnings)

    @classmethod
    def from_config(cls, cfg, backbone: nn.Module, views, bundle) -> "Method":
        """Build the method from a run's configuration (:class:`~workbench.engine.config.TrainConfig`: its own
        ``Options`` and the common ones, by name), the backbone and views its task built, and the
        :class:`~workbench.data.DatasetBundle` it will train on."""
        raise NotImplementedError

    def assign(self, h: torch.Tensor) -> torch.Tensor | None:
        """Cluster assignments of backbone features, for methods that have clusters of their own."""
        return None

    def batch_order(self, steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor | None:
        """``(steps, batch_size)`` indices of the next epoch's batches for methods that choose them (G-SimCLR);
        ``None``: a random permutation."""
        return None

    def steps_per_epoch(self, n: int, batch_size: int) -> int | None:
        """Batches per epoch for methods whose ``batch_order`` returns batches of their own sizes (G-SimCLR: every
        image once, the last batch shorter); ``None``: the engine's ``n // batch_size`` full batches."""
        return None

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:  # pragma: no cover
        raise NotImplementedError

    def forward(self, images: torch.Tensor, step: int, generator: torch.Generator,
                index: torch.Tensor | None = None) -> StepOutput:
        """One training step's forward pass (so DistributedDataParallel can wrap a method). ``index``: the batch's
        positions in the training set, passed on to methods that ask for them (``needs_index``)."""
        out = self.step(images, step, generator, index=index) if self.needs_index else self.step(images, step,
                                                                                                 generator)
        if self.notes_for_first_step:
            out.notes[:0], self.notes_for_first_step = self.notes_for_first_step, []
        if self.warnings_for_first_step:
            out.warnings[:0], self.warnings_for_first_step = self.warnings_for_first_step, []
        return out

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features h of already-normalised images (used by the kNN probe and snapshots)."""
        return self.backbone(x)

    @torch.no_grad()
    def embed(self, h: torch.Tensor) -> torch.Tensor:
        """The L2-normalised embedding z the loss acts on, from backbone features h (tolerance, uniformity)."""
        return torch.nn.functional.normalize(h, dim=1)
