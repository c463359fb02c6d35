"""The representation-learning task: a backbone learns features from unlabelled images (SimCLR, MoCo, SwAV, RotNet,
G-SimCLR, DEPICT), judged by probes on the held-out split (kNN), the geometry of its embedding and its clusters."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.config import Options, option
from workbench.data.registry import DATASETS, DatasetBundle, load_dataset
from workbench.data.views import ContrastiveViews, ViewConfig
from workbench.engine.callbacks import EpochEvaluation, LiveDiagnostics, OnlineLinearProbe
from workbench.engine.task import Task
from workbench.nn.backbones import build_backbone


@dataclass
class RepresentationOptions(Options):
    backbone: str = option("auto", "the encoder f; auto: resnet18 on CUDA for images of 32 px and more, else the "
                           "small convnet", choices=("auto", "convnet", "resnet18"))
    image_size: int | None = option(None, "view size in pixels (default: the dataset's own)", ge=4, le=1024)
    subset: int | None = option(None, "train on this many images (a seeded random subset; the kNN bank uses it "
                                "too); default: the whole split", ge=2)
    hist_bins: int = option(100, "bins of the pos/neg score histograms on [-1, 1]", ge=2, le=10_000)
    knn_k: int | None = option(None, "neighbours of the weighted kNN probe; default: min(200, samples per class / 2)",
                               ge=1)
    knn_t: float = option(0.1, "temperature of the kNN probe's weights", ge=0.001, le=10)
    probe_size: int = option(1000, "held-out points in each embedding snapshot", ge=0)


def backbone_name(cfg, size: int, device: torch.device) -> str:
    if cfg.backbone != "auto":
        return cfg.backbone
    return "resnet18" if device.type == "cuda" and size >= 32 else "convnet"


class RepresentationTask(Task):
    name = "representation"
    title = "representation-learning"
    Options = RepresentationOptions
    default_dataset = "digits"
    default_batch_size = 256
    pages = ("curves", "scores", "embeddings", "clusters", "probes", "images")
    score = ("knn_acc", "kNN accuracy")

    def datasets(self) -> list[str]:
        return list(DATASETS)

    def load_data(self, cfg, probe: bool = False) -> DatasetBundle:
        bundle = load_dataset(cfg.dataset, cfg.data_root, cfg.download and not probe, cfg.image_size)
        if cfg.subset and cfg.subset < len(bundle.train):
            bundle = bundle.with_train_subset(cfg.subset, seed=cfg.seed)
        return bundle

    def build_method(self, cfg, bundle: DatasetBundle, device: torch.device):
        from workbench.methods import METHODS

        size = cfg.image_size or bundle.image_size
        views = ContrastiveViews(ViewConfig(size=size, crop_scale=bundle.crop_scale), bundle.mean, bundle.std)
        name = backbone_name(cfg, size, device)
        backbone = build_backbone(name, bundle.channels)
        return METHODS[cfg.method].from_config(cfg, backbone, views, bundle), {"backbone": name}

    def callbacks(self, cfg) -> list:
        return [LiveDiagnostics(cfg.log_every, cfg.hist_bins),
                EpochEvaluation(cfg.eval_every, cfg.knn_k, cfg.knn_t, cfg.probe_size),
                OnlineLinearProbe()]

    def knob(self, config: dict) -> str:
        return f"tau {config['tau']}" if "tau" in config else ""


REPRESENTATION = RepresentationTask()
