"""Callbacks: hooks the trainer calls; the diagnostics that feed the run store live here.

Each hook gets the trainer. ``on_step_end`` may add scalars and histograms to ``trainer.pending``; the trainer
writes everything of one step in one transaction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.diagnostics import geometry, scores
from workbench.diagnostics.clustering import cluster_scores, kmeans
from workbench.diagnostics.knn import default_knn_k, knn_predict
from workbench.engine.features import extract_features


class Callback:
    def on_fit_start(self, trainer) -> None: ...
    def on_step_end(self, trainer, out) -> None: ...
    def on_epoch_end(self, trainer) -> None: ...
    def on_fit_end(self, trainer, status: str) -> None: ...


class LiveDiagnostics(Callback):
    """Every ``every`` steps: pos/neg score histograms and means, alignment, uniformity, collapse std, effective rank.

    Positive and negative scores are the method's own (``out.pos``, ``out.neg``, e.g. a queue) or else the
    in-batch ones of SimCLR (the two views of an image; every other pair in the batch)."""

    def __init__(self, every: int = 10, bins: int = 100):
        self.every, self.bins = every, bins

    def on_step_end(self, trainer, out) -> None:
        if trainer.step % self.every and trainer.step != 1:
            return
        if out.z1 is None and out.pos is None:
            return
        with torch.no_grad():
            if out.pos is not None:
                pos, neg = out.pos, out.neg
            else:
                pos, neg = scores.in_batch_scores(out.z1, out.z2)
            s, h = scores.score_summary(pos, neg, self.bins)
            for name, (p, n) in out.extra_scores.items():  # e.g. the scores after Feature Transformation
                s2, h2 = scores.score_summary(p, n, self.bins)
                s.update({f"{k}_{name}": v for k, v in s2.items()})
                h.update({f"{k}_{name}": v for k, v in h2.items()})
            if out.z1 is not None:
                z1, z2 = out.z1, out.z2
                d = z1.shape[1]
                s.update(
                    align=geometry.alignment(z1, z2),
                    uniform=geometry.uniformity(z1),
                    collapse_std=geometry.collapse_std(z1),
                    collapse_ref=d ** -0.5,
                    effective_rank=geometry.effective_rank(z1),
                )
        trainer.pending["scalars"].update(s)
        trainer.pending["histograms"].update(h)


class EpochEvaluation(Callback):
    """Before training and every ``every`` epochs: weighted kNN accuracy on the held-out split, an embedding
    snapshot of a fixed probe subset (features, labels, kNN predictions), and once a grid of augmented views."""

    def __init__(self, every: int = 1, k: int | None = None, t: float = 0.1, probe_size: int = 1000,
                 batch_size: int = 1024):
        self.every, self.k, self.t, self.probe_size, self.batch_size = every, k, t, probe_size, batch_size
        self.probe_index = None

    def on_fit_start(self, trainer) -> None:
        test = trainer.bundle.test
        g = torch.Generator().manual_seed(1234)  # the same probe points in every epoch and every resume
        self.probe_index = torch.randperm(len(test), generator=g)[: self.probe_size].sort().values
        if trainer.step == 0:
            self.evaluate(trainer)
            trainer.flush()
            from workbench.data.views import views_grid

            grid = views_grid(trainer.bundle.train.images[:8].to(trainer.device), trainer.method.views, n_images=8)
            trainer.writer.add_image(0, "views", grid, {"rows": ["original", "view 1", "view 2"]})
            if self.probe_size:
                thumbs = test.images[self.probe_index]
                if thumbs.shape[-1] > 32:  # thumbnails for the app, not for analysis
                    thumbs = F.interpolate(thumbs.float(), size=(32, 32), mode="area").round().to(torch.uint8)
                trainer.writer.add_arrays(0, "probe_images", {"classes": trainer.bundle.classes}, images=thumbs,
                                          labels=test.labels[self.probe_index], index=self.probe_index)

    def on_epoch_end(self, trainer) -> None:
        if (trainer.epoch + 1) % self.every == 0 or trainer.epoch + 1 == trainer.cfg.epochs:
            self.evaluate(trainer)

    def features(self, trainer, images: torch.Tensor, block: int | None = None) -> torch.Tensor:
        """The method's probe features h, or the pooled output of backbone block ``block``."""
        return extract_features(trainer.method, images, trainer.device, block, self.batch_size)

    def knn_accuracy(self, trainer, test_feat, mem_feat) -> tuple[float, torch.Tensor, int]:
        b = trainer.bundle
        k = self.k or default_knn_k(b.memory.labels)
        pred = knn_predict(test_feat, mem_feat, b.memory.labels, k=k, t=self.t,
                           num_classes=max(b.num_classes, int(b.memory.labels.max()) + 1)).cpu()
        return (pred == b.test.labels).float().mean().item(), pred, k

    def evaluate(self, trainer) -> None:
        b = trainer.bundle
        was_training = trainer.method.training
        trainer.method.eval()
        try:
            test_feat = self.features(trainer, b.test.images)
            labelled = b.memory.has_labels and b.test.has_labels
            result, arrays = {}, {}
            if labelled:
                acc, pred, k = self.knn_accuracy(trainer, test_feat, self.features(trainer, b.memory.images))
                result.update(knn_acc=acc, knn_k=k)
                for block in range(1, trainer.method.probe_blocks + 1):  # RotNet: the middle blocks transfer best
                    result[f"knn_acc_block{block}"] = self.knn_accuracy(
                        trainer, self.features(trainer, b.test.images, block),
                        self.features(trainer, b.memory.images, block))[0]
            idx = self.probe_index
            if len(idx):
                probe = test_feat[idx]
                # Wang & Liu measure uniformity and tolerance on the embedding the loss acts on (z), not on h
                z = trainer.method.embed(probe.to(trainer.device))
                result["probe_uniform"] = geometry.uniformity(z)
                # k-means on the probe features: the cluster view for methods without clusters of their own
                clusters = kmeans(probe.cpu().numpy(), b.num_classes or 10, seed=0)
                arrays = dict(features=probe.cpu().half(), labels=b.test.labels[idx], index=idx, kmeans=clusters)
                codes = trainer.method.assign(probe.to(trainer.device))
                if codes is not None:  # the method's own clusters (SwAV prototypes, DEPICT)
                    arrays["codes"] = codes.cpu().numpy()
                if labelled:
                    labels = b.test.labels[idx]
                    arrays["knn_pred"] = pred[idx]
                    result["tolerance"] = geometry.tolerance(z, labels.to(z.device))
                    result.update(cluster_scores(labels.numpy(), clusters).as_dict("kmeans_"))
                    if codes is not None:
                        result.update(cluster_scores(labels.numpy(), arrays["codes"]).as_dict("cluster_"))
            trainer.pending["scalars"].update(result)
            if arrays:
                trainer.writer.add_arrays(trainer.step, "embeddings", {"epoch": trainer.epochs_done, **result},
                                          **arrays)
        finally:
            trainer.method.train(was_training)
