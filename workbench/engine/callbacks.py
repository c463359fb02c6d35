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
from workbench.diagnostics.spectrum import rankme, spectrum
from workbench.engine.features import extract_features
from workbench.threads import intra_op_threads


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
        with torch.no_grad():  # (on one thread: 5.85 against 5.29 ms in two benchmark runs, no gain: left on the pool)
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
    """Before training and every ``every`` epochs: weighted kNN accuracy on the held-out split, the spectrum and
    RankMe of the training features, an embedding snapshot of a fixed probe subset (features, labels, kNN
    predictions), and once a grid of augmented views."""

    def __init__(self, every: int = 1, k: int | None = None, t: float = 0.1, probe_size: int = 1000,
                 batch_size: int = 1024):
        self.every, self.k, self.t, self.probe_size, self.batch_size = every, k, t, probe_size, batch_size
        self.probe_index = None

    def on_fit_start(self, trainer) -> None:
        test = trainer.bundle.test
        g = torch.Generator().manual_seed(1234)  # the same probe points in every epoch and every resume
        self.probe_index = torch.randperm(len(test), generator=g)[: self.probe_size].sort().values
        if trainer.step == 0:
            b = trainer.bundle
            if not (b.memory.has_labels and b.test.has_labels):
                trainer.writer.event(0, f"{b.name} has no class labels: no kNN accuracy, probes or clustering scores "
                                        "(the losses, similarity scores, embeddings and spectrum are live as usual)")
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
            mem_feat = self.features(trainer, b.memory.images)
            labelled = b.memory.has_labels and b.test.has_labels
            # the spectrum of the training features (the largest set at hand: RankMe needs n >> d)
            result = {"rankme": rankme(mem_feat), "rankme_n": float(len(mem_feat))}
            trainer.writer.add_arrays(trainer.step, "spectrum", {"epoch": trainer.epochs_done, "source": "training",
                                                                 "rankme": result["rankme"], "n": len(mem_feat)},
                                      singular_values=spectrum(mem_feat))
            trainer.eval_features = {"step": trainer.step, "test": test_feat, "memory": mem_feat}  # online probe
            arrays = {}
            if labelled:
                acc, pred, k = self.knn_accuracy(trainer, test_feat, mem_feat)
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


class OnlineLinearProbe(Callback):
    """A linear classifier trained alongside the method on its detached backbone features (solo-learn's and
    lightly's online probe), scored on the held-out split at every evaluation as ``online_linear_acc``.

    A forward hook on the backbone keeps the features the training step computes anyway (the first ``B`` rows
    of its first call in the step: the first view of each image of the batch), so the probe costs one linear
    layer's forward and backward, never a backbone pass. Its gradient never reaches the backbone (the features
    are detached) and it has its own optimiser (Adam, ``lr``), so it cannot change what the method learns. The
    features are standardised: in training by a BatchNorm without affine parameters (batch statistics), at the
    evaluation by the statistics of the eval-mode training features. It tracks the offline probe's ranking,
    not its value (it sees augmented views and a moving backbone). It restarts from scratch on a resume.
    Needs labels on the training split; methods whose step does not call the backbone log nothing."""

    def __init__(self, lr: float = 1e-2):  # 1e-3 learnt too little in a short run (digits, 15 steps: 0.53 vs 0.78)
        self.lr = lr
        self.probe = None
        self.captured: torch.Tensor | None = None
        self.hook = None

    def on_fit_start(self, trainer) -> None:
        backbone = getattr(trainer.method, "backbone", None)
        if backbone is None or not trainer.bundle.train.has_labels:
            return

        def keep_first(module, inputs, output):
            if module.training and self.captured is None and torch.is_tensor(output) and output.ndim == 2:
                self.captured = output.detach()

        self.hook = backbone.register_forward_hook(keep_first)

    def on_step_end(self, trainer, out) -> None:
        h, self.captured = self.captured, None
        index = getattr(trainer, "batch_index", None)
        if h is None or index is None:
            return
        labels = trainer.bundle.train.labels[index.cpu()].to(h.device)
        h = h[: len(labels)].float()
        if len(h) < len(labels) or len(h) < 2:
            return
        if self.probe is None:
            classes = max(trainer.bundle.num_classes, int(trainer.bundle.train.labels.max()) + 1)
            self.probe = torch.nn.Sequential(torch.nn.BatchNorm1d(h.shape[1], affine=False),
                                             torch.nn.Linear(h.shape[1], classes)).to(h.device)
            self.optimizer = torch.optim.Adam(self.probe.parameters(), lr=self.lr)
        # on a CPU, one thread: the probe's ~20 small ops each woke the sleeping intra-op pool (OMP_WAIT_POLICY=
        # PASSIVE): 1.61 ms a step on 2 threads against 0.74 ms on one (256 x 256 features, 10 classes, 2 cores)
        with torch.enable_grad(), intra_op_threads(1 if h.device.type == "cpu" else None):
            self.probe.train()
            loss = F.cross_entropy(self.probe(h), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        trainer.pending["scalars"]["online_linear_loss"] = loss.detach()  # read with the step's other scalars

    @torch.no_grad()
    def on_epoch_end(self, trainer) -> None:
        feats = trainer.eval_features
        if self.probe is None or not feats or feats["step"] != trainer.step or not trainer.bundle.test.has_labels:
            return
        test, memory = feats["test"], feats["memory"]
        if test.shape[1] != self.probe[1].in_features:  # the method's probe features are not the backbone's
            was = trainer.method.training
            trainer.method.eval()
            test, memory = (extract_features(_BackboneFeatures(trainer.method), getattr(trainer.bundle, s).images,
                                             trainer.device) for s in ("test", "memory"))
            trainer.method.train(was)
        # Standardise with the eval-mode statistics of the training features, not the BatchNorm's running ones:
        # early in a run the backbone's own BN running statistics lag, so its eval-mode features sit on another
        # scale than the train-mode ones the probe saw (measured on digits after 15 steps: mean 0.09 vs 0.40).
        device = next(self.probe.parameters()).device
        mean, std = memory.mean(0).to(device), memory.std(0).to(device)
        pred = self.probe[1]((test.to(device) - mean) / (std + 1e-5)).argmax(1).cpu()
        trainer.pending["scalars"]["online_linear_acc"] = (pred == trainer.bundle.test.labels).float().mean().item()

    def on_fit_end(self, trainer, status: str) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None


class _BackboneFeatures:
    """A method seen through its backbone's output (what the online probe trains on)."""

    def __init__(self, method):
        self.views, self.backbone = method.views, method.backbone

    def features(self, x):
        return self.backbone(x)
