"""Frozen features of a method for the probes: the method's probe features h, or a backbone block's pooled output.

One home for the evaluation's forward passes (the epoch evaluation during training and ``workbench eval``): eval
mode, no gradient, no augmentation, in chunks, optionally with a progress bar."""
from __future__ import annotations

import torch

from workbench.nn.backbones import block_features


@torch.no_grad()
def extract_features(method, images: torch.Tensor, device: torch.device, block: int | None = None,
                     batch_size: int = 1024, progress: bool = False, desc: str = "features") -> torch.Tensor:
    """``(N, d)`` float features of uint8 ``images (N, C, H, W)``; ``block`` (1-based) reads that backbone block.

    Chunks of at most ``batch_size`` images, fewer for large views (``ContrastiveViews.eval_batch``). The caller
    sets eval mode (the epoch evaluation restores train mode itself afterwards)."""
    from tqdm import tqdm

    chunks = images.split(method.views.eval_batch(batch_size))
    out = []
    for chunk in tqdm(chunks, desc=desc, unit="batch", disable=not progress or len(chunks) < 2, leave=False):
        x = method.views.prepare(chunk.to(device, non_blocking=True))
        h = method.features(x) if block is None else block_features(method.backbone, x, block)
        out.append(h.float())
    return torch.cat(out) if out else torch.empty(0)
