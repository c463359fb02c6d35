"""Callbacks: hooks the trainer calls; the diagnostics that feed the run store live here.

Each hook gets the trainer. ``on_step_end`` may add scalars and histograms to ``trainer.pending``; the trainer
writes everything of one step in one transaction.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from workbench.data.lowlight import HELD_OUT_SEED, held_out_pairs
from workbench.diagnostics import geometry, scores
from workbench.diagnostics.clustering import cluster_scores, kmeans
from workbench.diagnostics.probes import default_knn_k, knn_predict


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

    @torch.no_grad()
    def features(self, trainer, images: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in images.split(self.batch_size):
            x = trainer.prepare_eval_images(chunk)
            out.append(trainer.method.features(x).float())
        return torch.cat(out) if out else torch.empty(0)

    def evaluate(self, trainer) -> None:
        b = trainer.bundle
        was_training = trainer.method.training
        trainer.method.eval()
        try:
            test_feat = self.features(trainer, b.test.images)
            labelled = b.memory.has_labels and b.test.has_labels
            result, arrays = {}, {}
            if labelled:
                mem_feat = self.features(trainer, b.memory.images)
                k = self.k or default_knn_k(b.memory.labels)
                pred = knn_predict(test_feat, mem_feat, b.memory.labels, k=k, t=self.t,
                                   num_classes=max(b.num_classes, int(b.memory.labels.max()) + 1)).cpu()
                result.update(knn_acc=(pred == b.test.labels).float().mean().item(), knn_k=k)
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


class EvalSet:
    """Fixed evaluation pairs (lists of (1, 3, H, W) tensors: sizes may differ) and the dark inputs' own per-image
    scores, computed once: the floor every evaluation is shown against."""

    def __init__(self, lows: list[torch.Tensor], refs: list[torch.Tensor]):
        from workbench.diagnostics import image_quality as iq

        self.lows, self.refs = lows, refs
        self.psnr_input = np.concatenate([iq.psnr(x, r) for x, r in zip(lows, refs)])
        self.ssim_input = np.concatenate([iq.ssim(x, r) for x, r in zip(lows, refs)])


class LowLightEvaluation(Callback):
    """Before training and every ``every`` epochs, for low-light enhancement methods: PSNR and SSIM (the protocol of
    :mod:`workbench.diagnostics.image_quality`) of the method's output on fixed held-out synthetic pairs (the test
    images darkened once by the degradation family under a fixed seed), with the dark input's own scores logged
    beside them as the floor to beat (``psnr_input``); each stage of the method (TML: ``psnr_pm`` before the
    enhancing model); mean brightness and exposure error of the output; the same on the user's LOL pairs when
    the dataset carries them (``lol_dir``: ``lol_psnr``, ...); LPIPS (``lpips``) only where its weights are already on disk (an info
    event says why not otherwise); and input / enhanced / reference images of the first ``n_show`` pairs, stored as
    arrays for the app."""

    SEED = HELD_OUT_SEED

    def __init__(self, every: int = 1, n_show: int = 6, batch_size: int = 8):
        self.every, self.n_show, self.batch_size = every, n_show, batch_size
        self.sets: dict[str, EvalSet] = {}  # by metric prefix: "" (synthetic pairs), "lol_"
        self.lpips = False

    def on_fit_start(self, trainer) -> None:
        from workbench.data.views import image_grid
        from workbench.diagnostics import image_quality as iq

        why_not = iq.perceptual_metrics_available()["lpips"]
        self.lpips = why_not is None
        if why_not and trainer.step == 0:
            trainer.writer.event(0, f"LPIPS not computed: {why_not}", "info")

        low, ref = held_out_pairs(trainer.bundle.test.images, trainer.method.degradation, self.SEED)
        self.sets = {"": EvalSet(list(low.split(1)), list(ref.split(1)))}
        for path, why in trainer.bundle.pair_failures:
            trainer.writer.event(trainer.step, f"LOL pairs: skipped {path}: {why}", "warning")
        if trainer.bundle.pairs:
            as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
            self.sets["lol_"] = EvalSet([as_tensor(lo) for _, lo, _ in trainer.bundle.pairs],
                                        [as_tensor(hi) for _, _, hi in trainer.bundle.pairs])
        if trainer.step == 0:
            self.evaluate(trainer)
            trainer.flush()
            # what the run trains on: normal-light patches and their pseudo low-light inputs
            x = trainer.bundle.train.images[:8].to(trainer.device).float() / 255
            dark = trainer.method.degradation(x, torch.Generator(x.device).manual_seed(self.SEED))[0]
            grid = image_grid(torch.cat([x, dark]), nrow=len(x))
            trainer.writer.add_image(0, "views", grid, {"rows": ["normal-light patch", "synthetic low-light"]})

    def on_epoch_end(self, trainer) -> None:
        if (trainer.epoch + 1) % self.every == 0 or trainer.epoch + 1 == trainer.cfg.epochs:
            self.evaluate(trainer)

    @torch.no_grad()
    def _enhance(self, trainer, lows: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Every stage's output for every image (images of one set may differ in size: batched when they match)."""
        out: dict[str, list[torch.Tensor]] = {}
        i = 0
        while i < len(lows):
            j = i + 1
            while j < len(lows) and j - i < self.batch_size and lows[j].shape == lows[i].shape:
                j += 1
            batch = torch.cat(lows[i:j]).to(trainer.device)
            for key, y in trainer.method.enhance_stages(batch).items():
                out.setdefault(key, []).extend(y.float().cpu().split(1))
            i = j
        return out

    def evaluate(self, trainer) -> None:
        from workbench.diagnostics import image_quality as iq

        result, arrays = {}, {}
        for prefix, s in self.sets.items():
            lows, refs = s.lows, s.refs
            per_image = lambda fn, xs: np.concatenate([fn(x, r) for x, r in zip(xs, refs)])  # noqa: E731
            result[f"{prefix}psnr_input"] = float(s.psnr_input.mean())
            result[f"{prefix}ssim_input"] = float(s.ssim_input.mean())
            stages = self._enhance(trainer, lows)
            final = list(stages)[-1]
            for key, outs in stages.items():
                suffix = "" if key == final else "_" + key.replace("+", "_")
                psnr, ssim = per_image(iq.psnr, outs), per_image(iq.ssim, outs)
                result[f"{prefix}psnr{suffix}"] = float(psnr.mean())
                result[f"{prefix}ssim{suffix}"] = float(ssim.mean())
                if key == final:
                    result[f"{prefix}brightness"] = float(np.mean([iq.mean_brightness(y).mean() for y in outs]))
                    result[f"{prefix}exposure_error"] = float(np.mean([iq.exposure_error(y).mean() for y in outs]))
                    if self.lpips:
                        result[f"{prefix}lpips"] = float(per_image(iq.lpips, outs).mean())
                    if prefix == "":
                        n = min(self.n_show, len(outs))
                        to8 = lambda xs: (torch.cat(xs[:n]) * 255).round().clamp(0, 255).to(torch.uint8)  # noqa
                        arrays = dict(input=to8(lows), enhanced=to8(outs), reference=to8(refs),
                                      psnr=psnr[:n], ssim=ssim[:n], psnr_input=s.psnr_input[:n])
                        if len(stages) > 1:
                            arrays["first_stage"] = to8(list(stages.values())[0])
        trainer.pending["scalars"].update(result)
        if arrays:
            trainer.writer.add_arrays(trainer.step, "lowlight", {"epoch": trainer.epochs_done,
                                                                 "stages": list(stages), **result}, **arrays)
