"""Zero-DCE: Zero-Reference Deep Curve Estimation for Low-Light Image Enhancement (Guo et al., CVPR 2020).

A small network (DCE-Net, 79,416 parameters) predicts, for every pixel and channel, the parameters of ``n = 8``
quadratic light-enhancement curves applied in turn::

    LE_k(x) = LE_{k-1}(x) + r_k (LE_{k-1}(x)^2 - LE_{k-1}(x)),    r_k = tanh(DCE-Net(x))_k in [-1, 1]

trained without any reference image by four non-reference losses (weights of the official code)::

    L = L_spa + 10 L_exp + 5 L_col + 200 L_tv(r)

Here it is the baseline a user would pick instead of TML: it trains on the same normal-light patches, but sees
only their pseudo low-light versions from the degradation family (never the normal images).

Follows ``Li-Chongyi/Zero-DCE`` (``model.py``: DCE-Net; ``Myloss.py``: the four losses; ``lowlight_train.py``: Adam
lr 1e-4 with weight decay 1e-4 (L2, ``torch.optim.Adam``), constant, no warm-up, gradient-norm clipping at 0.1,
batch 8, conv weights N(0, 0.02)). Those are the defaults of a zerodce run (``common_defaults``: ``--optimizer``,
``--lr``, ``--weight-decay``, ``--lr-schedule``, ``--warmup-epochs``, ``--grad-clip``, ``--batch-size`` override
them). Departs: the training crops are
``--patch-size`` (64) pseudo low-light patches of normal-light photos, where the official code trains on 256x256
real under- and over-exposed images (SICE).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.config import MethodOptions, option
from workbench.lowlight.data import Degradation
from workbench.lowlight.losses.zerodce import zero_dce_loss
from workbench.methods.base import StepOutput
from workbench.lowlight.methods.base import LowLightMethod
from workbench.lowlight.nn.dcenet import DCENet


@dataclass
class ZeroDCEOptions(MethodOptions):
    dce_iterations: int = option(8, "n: light-enhancement curves applied in turn", ge=1, note="the paper uses 8")


class ZeroDCE(LowLightMethod):
    name = "zerodce"
    Options = ZeroDCEOptions
    common_defaults = dict(optimizer="adam", lr=1e-4, weight_decay=1e-4, grad_clip=0.1, batch_size=8,
                           lr_schedule="constant", warmup_epochs=0.0)

    def __init__(self, iterations: int = 8, degradation: Degradation | None = None):
        super().__init__(degradation)
        self.net = DCENet(iterations=iterations)

    @classmethod
    def from_config(cls, cfg, bundle):
        return cls(iterations=cfg.dce_iterations)

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        x = self.augment(images, generator)
        with torch.no_grad():
            low = self.degradation(x, generator)[0]
        enhanced, curves = self.net(low)
        loss, parts = zero_dce_loss(low.float(), enhanced.float(), curves.float())
        return StepOutput(loss=loss, logs=parts)

    def stage_outputs(self, low: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"zerodce": self.net(low)[0].clamp(0, 1)}
