"""MoCo training throughput and kNN accuracy: the workbench's engine vs the same MoCo trained the lightly way.

The sibling of ``simclr_vs_lightly.py`` (same data: a fixed 10k subset of Fashion-MNIST, 28x28, CPU, batch 256,
drop-last; same interleaving of epochs and the same kNN), at equal work: the same backbone
(``workbench.nn.SmallConvNet``) and head (Linear-ReLU-Linear, 256-256-128, as ``lightly.models.modules.
MoCoProjectionHead`` and the official ``moco/builder.py``), the same initial weights, queue K = 4096, momentum
m = 0.99, temperature 0.1, one direction per step (``--symmetric false``: lightly's MoCo example computes
``criterion(query, key)`` once), AdamW lr 1e-3 / wd 1e-4 with the workbench's warm-up + cosine schedule.

* ``workbench``: ``Trainer(TrainConfig(method="moco", symmetric=False, ...))`` at its defaults otherwise, i.e.
  with split batch-norm (8 splits, the CIFAR demo's shuffle-BN on one device), the key shuffle, keys of the query's
  own image excluded from its negatives, the queue's diagnostics (``queue_self_frac``, ``queue_same_label_frac``),
  the live diagnostics and run-store writes: more work than the lightly side does, not less.
* ``lightly``: a DataLoader over PIL images with ``lightly.transforms.MoCoV2Transform`` (the SimCLR benchmark's
  settings), ``lightly.models.utils.update_momentum`` on backbone and head, ``lightly.loss.NTXentLoss(0.1,
  memory_bank_size=(4096, 128))`` (its memory bank is MoCo's queue); num_workers 0 and 2; and once more with the
  workbench's precision and memory format (bf16 autocast, channels-last), the "expert" row.

    python benchmarks/moco_vs_lightly.py [--subset 10000] [--epochs 3] [--workers 0,2]
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import goal, machine_line, setup_threads
from simclr_vs_lightly import (BATCH, EXPERT, Interleave, PILImages, compare, knn, precision_name, subset_bundle,
                               threads)

import torch
from torch import nn

LR, WD, TAU, M, K = 1e-3, 1e-4, 0.1, 0.99, 4096


class LightlyMoCo:
    """MoCo trained as lightly's MoCo example does; ``epoch()`` trains one epoch and returns its wall time."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, bundle, workers: int, total_steps: int,
                 warmup_steps: int, expert: bool = False, seed: int = 0):
        from lightly.loss import NTXentLoss
        from lightly.models.utils import deactivate_requires_grad
        from lightly.transforms import MoCoV2Transform

        from workbench.engine.optim import build_scheduler

        if expert:
            backbone, projector = (m.to(memory_format=torch.channels_last) for m in (backbone, projector))
        self.backbone, self.projector, self.expert = backbone, projector, expert
        self.threads = torch.get_num_threads()  # the benchmark's --threads; the expert row: the workbench's
        self.backbone_m, self.projector_m = copy.deepcopy(backbone), copy.deepcopy(projector)
        deactivate_requires_grad(self.backbone_m)
        deactivate_requires_grad(self.projector_m)
        transform = MoCoV2Transform(input_size=bundle.image_size, min_scale=bundle.crop_scale[0], cj_strength=0.5,
                                    gaussian_blur=0.0, normalize={"mean": list(bundle.mean), "std": list(bundle.std)})
        self.loader = torch.utils.data.DataLoader(
            PILImages(bundle.train.images, bundle.train.labels, transform), batch_size=BATCH, shuffle=True,
            drop_last=True, num_workers=workers, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(seed))
        self.criterion = NTXentLoss(temperature=TAU, memory_bank_size=(K, projector.layers[-1].out_features))
        params = list(backbone.parameters()) + list(projector.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
        self.scheduler = build_scheduler(self.optimizer, total_steps, warmup_steps)
        self.losses: list[float] = []

    def epoch(self) -> float:
        from lightly.models.utils import update_momentum

        for m in (self.backbone, self.projector, self.backbone_m, self.projector_m):
            m.train()
        with threads(self.threads):
            return self._epoch(update_momentum)

    def _epoch(self, update_momentum) -> float:
        t0 = time.perf_counter()
        for (x_q, x_k), _ in self.loader:
            update_momentum(self.backbone, self.backbone_m, m=M)
            update_momentum(self.projector, self.projector_m, m=M)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.expert):
                query = self.projector(self.backbone(x_q))
                with torch.no_grad():
                    key = self.projector_m(self.backbone_m(x_k))
            loss = self.criterion(query.float(), key.float())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.losses.append(loss.item())
        return time.perf_counter() - t0


def build_trainer(bundle, epochs: int, runs_dir: str, callback, precision: str):
    from workbench import TrainConfig
    from workbench.engine.build import build
    from workbench.engine.callbacks import LiveDiagnostics
    from workbench.engine.trainer import Trainer

    cfg = TrainConfig(method="moco", dataset="fashion-mnist", backbone="convnet", device="cpu", epochs=epochs,
                      batch_size=BATCH, optimizer="adamw", lr=LR, weight_decay=WD, tau=TAU, moco_momentum=M,
                      queue_size=K, symmetric=False, seed=0, progress=False, runs_dir=runs_dir, run_name="workbench",
                      precision=precision)
    parts = build(cfg, torch.device("cpu"), bundle=bundle, callbacks=[LiveDiagnostics(cfg.log_every, cfg.hist_bins)])
    return Trainer(cfg, callbacks=[callback], parts=parts)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="auto")
    p.add_argument("--no-expert", dest="expert", action="store_false")
    args = p.parse_args(argv)
    setup_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    t_start = time.perf_counter()
    bundle = subset_bundle(args.subset)
    steps_per_epoch = len(bundle.train) // BATCH
    with tempfile.TemporaryDirectory(prefix="bench-moco-") as runs_dir:
        interleave = Interleave({})
        trainer = build_trainer(bundle, args.epochs, runs_dir, interleave, args.precision)
        m = trainer.method
        # the workbench's backbone has split batch-norm layers: lightly gets the same weights in plain BatchNorm2d
        from workbench.nn.backbones import SmallConvNet

        init_backbone = SmallConvNet(in_channels=bundle.train.images.shape[1])
        init_backbone.load_state_dict(m.backbone.state_dict())
        init_projector = copy.deepcopy(m.projector)
        total, warmup = steps_per_epoch * args.epochs, round(trainer.cfg.warmup_epochs * steps_per_epoch)
        runs = {f"lightly, num_workers={w}": LightlyMoCo(copy.deepcopy(init_backbone), lightly_head(init_projector),
                                                         bundle, w, total, warmup) for w in workers}
        if args.expert and workers and trainer.autocast_dtype == torch.bfloat16:
            w = max(workers)
            runs[EXPERT.format(w)] = LightlyMoCo(copy.deepcopy(init_backbone), lightly_head(init_projector), bundle,
                                                 w, total, warmup, expert=True)
            runs[EXPERT.format(w)].threads = trainer.threads or args.threads
        interleave.others = runs
        interleave.times.update({k: [] for k in runs})
        print(f"training {args.epochs} epochs x {steps_per_epoch} steps on {len(bundle.train)} images, interleaved: "
              f"workbench, {', '.join(runs)}", flush=True)
        result = trainer.fit()
        assert result.status == "finished", result.status
        accs = {"workbench": knn(m.backbone, bundle)}
        losses = {"workbench": result.metrics.get("loss", float("nan"))}
        for name, run in runs.items():
            accs[name], losses[name] = knn(run.backbone, bundle), run.losses[-1]

    times = interleave.times
    table, speedup, best, expert = compare(times, steps_per_epoch * BATCH, losses, accs)
    ratio = speedup[best] if best else float("nan")
    text = (f"### MoCo on Fashion-MNIST 28x28, CPU: workbench engine vs lightly ({len(bundle.train)} train images, "
            f"{args.epochs} epochs, batch {BATCH}, K={K}, m={M}, one direction per step)\n\n{table}\n\n"
            f"Workbench precision: {precision_name(trainer.autocast_dtype)}, channels-last weights: "
            f"{trainer.cfg.channels_last}, split-BN {trainer.cfg.split_bn}, intra-op threads "
            f"{trainer.threads or args.threads} (lightly: {args.threads}; its expert row: the workbench's). "
            + (f"Workbench MoCo vs the faster lightly variant ({best}): {ratio:.2f}x (goal >= 1.5x: "
               f"{goal(ratio >= 1.5)}). " if best else "")
            + (f"Vs lightly with the workbench's precision and memory format: {speedup[expert]:.2f}x. "
               if expert else "")
            + f"\n{machine_line()}; whole script {time.perf_counter() - t_start:.0f} s.\n")
    print(text)
    return text


def lightly_head(projector: nn.Module) -> nn.Module:
    """lightly's MoCoProjectionHead (Linear-ReLU-Linear) holding the workbench head's initial weights."""
    from lightly.models.modules import MoCoProjectionHead

    linears = [mod for mod in projector.modules() if isinstance(mod, nn.Linear)]
    head = MoCoProjectionHead(linears[0].in_features, linears[0].out_features, linears[-1].out_features)
    mine = [mod for mod in head.modules() if isinstance(mod, nn.Linear)]
    for dst, src in zip(mine, linears, strict=True):
        dst.load_state_dict(src.state_dict())
    return head


if __name__ == "__main__":
    main()
