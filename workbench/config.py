"""Training configuration: one flat dataclass, validated field by field with messages that name the field."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field and the allowed values."""


@dataclass
class TrainConfig:
    # what to train
    method: str = "simclr"
    dataset: str | None = None  # None: "digits" (the embedded default), "photos" for low-light methods
    data_root: str = "data"
    download: bool = False
    image_size: int | None = None  # None: the dataset's own size
    subset: int | None = None  # train on this many images (a seeded random subset; the kNN bank uses it too)
    backbone: str = "auto"  # auto: resnet18 on CUDA for >= 32 px, else the small convnet
    proj_dim: int = 128
    # contrastive temperature (SimCLR NT-Xent, MoCo InfoNCE, SwAV softmax)
    tau: float = 0.2  # solo-learn's CIFAR default; SimCLR's official CIFAR value is 0.5, SwAV's 0.1
    # MoCo v2 (+ Feature Transformation)
    moco_momentum: float = 0.99  # key encoder EMA m (CIFAR demo 0.99, ImageNet 0.999)
    queue_size: int = 4096
    symmetric: bool = True  # both views act as queries (better at small scale)
    split_bn: int = 8  # sub-batches of split batch-norm simulating shuffle-BN on one device (1 = plain BN)
    ft_pos: bool = False  # positive extrapolation, lambda+ = 1 + Beta(a+, a+)
    ft_neg: bool = False  # negative interpolation, lambda- ~ Beta(a-, a-)
    ft_alpha_pos: float = 2.0
    ft_alpha_neg: float = 1.6
    # SwAV
    prototypes: int | None = None  # K; None: 3 x the number of classes (ImageNet uses 3000)
    swav_eps: float = 0.05
    sinkhorn_iters: int = 3
    small_crops: int | None = None  # multi-crop: 2 large views + this many small; None: 2 from 24 px up, else 0
    freeze_prototypes_epochs: float = 1.0
    # DEPICT (and the autoencoder stage of G-SimCLR)
    n_clusters: int | None = None  # None: the number of classes
    pretrain_epochs: float = 5.0  # autoencoder (reconstruction only) before the clustering objective
    # RotNet
    feature_block: int | None = None  # backbone block whose pooled output the probes use (None: the last)
    # low-light enhancement (TML, Zero-DCE): random patches of normal-light images
    patch_size: int = 64  # training crops (pixels)
    patches: int = 2048  # random crops drawn per run from the training images (an epoch)
    troublemaker: str = "learned"  # learned: fit the TM network first; synthetic: the degradation family itself
    tm_epochs: float = 1.0  # epochs fitting the troublemaker (learned TM only)
    em_epochs: float | None = None  # epochs of the enhancing model at the end; None: a third of what TM leaves
    ugdc_width: int = 16  # PM's first-level channels (the paper's 64; EM uses half); doubles each level
    ugdc_levels: int = 3  # UNet levels (the paper's 5)
    gdc_grid: int = 8  # GDC tokens: a grid x grid pooled query map
    ssim_weight: float = 0.2  # TML loss: smooth L1 + ssim_weight * (1 - SSIM)
    dce_iterations: int = 8  # Zero-DCE curve iterations
    lol_dir: str | None = None  # a LOL-style folder of low/high pairs: TM fitted to them, and evaluated on them
    # optimisation
    epochs: int = 30
    batch_size: int | None = None  # None: 256 (contrastive methods), 16 (low-light methods)
    optimizer: str = "adamw"  # adamw | sgd | lars
    lr: float | None = None  # None: 1e-3 for adamw, 0.06 * batch/256 for sgd, 0.3 * batch/256 for lars
    weight_decay: float | None = None  # None: 1e-4 for adamw, 5e-4 for sgd, 1e-6 for lars
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + grad scaling)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0
    # diagnostics and storage
    log_every: int = 10  # steps between pos/neg histograms and geometry diagnostics
    hist_bins: int = 100
    knn_k: int | None = None  # None: min(200, samples per class / 2)
    knn_t: float = 0.1
    probe_size: int = 1000  # points in the embedding snapshot
    eval_every: int = 1  # epochs between kNN + snapshot
    runs_dir: str = "runs"
    run_name: str | None = None
    resume: bool = False
    progress: bool = True

    CHOICES = {"optimizer": ("adamw", "sgd", "lars"), "backbone": ("auto", "convnet", "resnet18"),
               "troublemaker": ("learned", "synthetic")}

    def __post_init__(self):
        if self.dataset is None or self.batch_size is None:  # defaults that depend on the kind of method
            lowlight = self.lowlight
            if self.dataset is None:
                self.dataset = "photos" if lowlight else "digits"
            if self.batch_size is None:
                self.batch_size = 16 if lowlight else 256
        self.validate()

    @property
    def lowlight(self) -> bool:
        """Whether the method is a low-light enhancement method (trained on normal-light patches)."""
        from workbench.methods import is_lowlight

        return is_lowlight(self.method)

    def validate(self) -> None:
        def need(cond: bool, name: str, allowed: str):
            if not cond:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not allowed: {allowed}")

        need(self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.batch_size >= 2, "batch_size", "an integer >= 2 (contrastive methods need negatives)")
        need(self.tau > 0, "tau", "a temperature > 0 (typical 0.05 to 1.0)")
        need(self.lr is None or self.lr > 0, "lr", "a learning rate > 0, or None for the optimizer's default")
        need(self.weight_decay is None or self.weight_decay >= 0, "weight_decay", ">= 0")
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(self.warmup_epochs >= 0, "warmup_epochs", ">= 0")
        need(self.log_every >= 1, "log_every", "an integer >= 1")
        need(self.hist_bins >= 2, "hist_bins", "an integer >= 2")
        need(self.knn_k is None or self.knn_k >= 1, "knn_k", "an integer >= 1, or None for automatic")
        need(self.knn_t > 0, "knn_t", "> 0")
        need(self.probe_size >= 0, "probe_size", ">= 0")
        need(self.eval_every >= 1, "eval_every", "an integer >= 1")
        need(self.proj_dim >= 2, "proj_dim", "an integer >= 2")
        need(0 <= self.moco_momentum <= 1, "moco_momentum", "in [0, 1] (1 freezes the key encoder)")
        need(self.queue_size >= 1, "queue_size", "an integer >= 1")
        need(self.split_bn >= 1, "split_bn", "an integer >= 1 (1 = ordinary batch-norm)")
        need(self.ft_alpha_pos > 0, "ft_alpha_pos", "> 0")
        need(self.ft_alpha_neg > 0, "ft_alpha_neg", "> 0")
        need(self.prototypes is None or self.prototypes >= 2, "prototypes", "an integer >= 2, or None (automatic)")
        need(self.swav_eps > 0, "swav_eps", "> 0 (typical 0.03 to 0.05)")
        need(self.sinkhorn_iters >= 1, "sinkhorn_iters", "an integer >= 1")
        need(self.small_crops is None or self.small_crops >= 0, "small_crops", "an integer >= 0, or None")
        need(self.freeze_prototypes_epochs >= 0, "freeze_prototypes_epochs", ">= 0")
        need(self.n_clusters is None or self.n_clusters >= 2, "n_clusters", "an integer >= 2, or None")
        need(self.pretrain_epochs >= 0, "pretrain_epochs", ">= 0")
        need(self.feature_block is None or self.feature_block >= 1, "feature_block", "an integer >= 1, or None")
        need(self.image_size is None or self.image_size >= 4, "image_size", "an integer >= 4, or None")
        need(self.subset is None or self.subset >= 2, "subset", "an integer >= 2, or None for the whole split")
        need(self.patch_size >= 8, "patch_size", "an integer >= 8")
        need(self.patches >= 2, "patches", "an integer >= 2")
        need(self.tm_epochs >= 0, "tm_epochs", ">= 0")
        need(self.em_epochs is None or self.em_epochs >= 0, "em_epochs", ">= 0, or None (a third)")
        need(self.ugdc_width >= 2, "ugdc_width", "an integer >= 2 (the paper uses 64)")
        need(1 <= self.ugdc_levels <= 7, "ugdc_levels", "an integer in [1, 7] (the paper uses 5)")
        need(self.gdc_grid >= 1, "gdc_grid", "an integer >= 1")
        need(self.ssim_weight >= 0, "ssim_weight", ">= 0")
        need(self.dce_iterations >= 1, "dce_iterations", "an integer >= 1 (the paper uses 8)")
        for name, choices in self.CHOICES.items():
            need(getattr(self, name) in choices, name, f"one of {', '.join(choices)}")
        from workbench.methods import METHODS

        need(self.method in METHODS, "method", f"one of {', '.join(sorted(METHODS))}")

    # defaults that depend on other fields
    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return {"adamw": 1e-3, "sgd": 0.06 * self.batch_size / 256, "lars": 0.3 * self.batch_size / 256}[self.optimizer]

    @property
    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return {"adamw": 1e-4, "sgd": 5e-4, "lars": 1e-6}[self.optimizer]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
