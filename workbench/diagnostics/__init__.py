"""Diagnostics computed from embeddings: similarity scores, geometry, probes."""
from workbench.diagnostics.scores import in_batch_scores, score_histogram, score_summary
from workbench.diagnostics.geometry import alignment, uniformity, collapse_std, effective_rank, tolerance
from workbench.diagnostics.knn import knn_predict, knn_accuracy, default_knn_k

__all__ = [
    "in_batch_scores", "score_histogram", "score_summary",
    "alignment", "uniformity", "collapse_std", "effective_rank", "tolerance",
    "knn_predict", "knn_accuracy", "default_knn_k",
]
from workbench.diagnostics.image_quality import (
    PROTOCOL, psnr, ssim, quality, mean_brightness, exposure_error, perceptual_metrics_available, lpips,
)

__all__ += [
    "PROTOCOL", "psnr", "ssim", "quality", "mean_brightness", "exposure_error", "perceptual_metrics_available",
    "lpips",
]
