"""Datasets (embedded defaults first) and batched per-sample contrastive views."""
from workbench.data.registry import (
    DATASETS,
    DatasetUnavailable,
    ImageSet,
    DatasetBundle,
    load_dataset,
    describe_datasets,
)
from workbench.data.views import ContrastiveViews, ViewConfig, image_grid, views_grid

__all__ = [
    "DATASETS", "DatasetUnavailable", "ImageSet", "DatasetBundle", "load_dataset", "describe_datasets",
    "ContrastiveViews", "ViewConfig", "image_grid", "views_grid",
]
