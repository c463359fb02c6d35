"""SimCLR training throughput and kNN accuracy: the workbench's engine vs the same model trained the lightly way.

The workbench trains at its defaults: ``--precision auto`` (bf16 autocast on a CPU with native bf16, the loss and
diagnostics in fp32) and channels-last weights. lightly is run as its documentation shows (fp32), and once more
with what an expert would set by hand to match (bf16 autocast around the model, channels-last weights, the loss in
fp32): the "expert" row.

Both sides train the same network from the same initial weights on the same fixed random subset of Fashion-MNIST
(28x28, CPU, batch 256, drop-last): ``workbench.nn.SmallConvNet(in_channels=1)`` + ``ProjectionMLP(256, 256, 128)``,
AdamW (lr 1e-3, weight decay 1e-4) with the workbench's per-step schedule (1 warm-up epoch, then cosine to 0),
temperature 0.2, both views in one forward pass (BatchNorm sees both).

* ``workbench``: the real engine, ``workbench.engine.trainer.Trainer`` with
  ``TrainConfig(method="simclr", dataset="fashion-mnist", backbone="convnet", device="cpu", ...)`` (what
  ``workbench.train`` runs), including its live diagnostics, run store writes and per-epoch checkpoints. The
  engine always trains on a dataset's whole training split, so the benchmark hands the Trainer a bundle whose
  training split is the subset (it patches the ``load_dataset`` the trainer module calls; the package is not
  changed). The engine's own per-epoch kNN evaluation (``EpochEvaluation``) is removed from its callbacks so it is
  not timed; the kNN below is computed the same way for both sides after training.
* ``lightly``: a ``torch.utils.data.DataLoader`` over PIL images with ``lightly.transforms.SimCLRTransform``
  (input_size=28, min_scale=0.2, cj_strength=0.5 so brightness/contrast/saturation/hue = 0.4/0.4/0.4/0.1 like the
  workbench, gaussian_blur=0, normalised with the dataset's mean/std) and ``lightly.loss.NTXentLoss(0.2)``, in a
  plain training loop; with ``num_workers=0`` and with ``num_workers=2`` (persistent workers), each its own run.

The runs are interleaved epoch by epoch (a callback on the workbench trainer runs one epoch of each lightly run
after every workbench epoch), so all sides share the machine's noisy periods; images/s is the median over epochs
of (subset images / epoch wall time) and the speed-up the median over epochs of the paired ratio
(lightly epoch time / the workbench epoch just before it). The kNN accuracy uses ``workbench.diagnostics.knn_accuracy`` on backbone
features of the 10k test images with the training subset as memory, k=200, t=0.1, images scaled to [0, 1] and
normalised with the dataset's mean/std.

    python benchmarks/simclr_vs_lightly.py [--subset 10000] [--epochs 5] [--workers 0,2]
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import goal, machine_line, markdown_table, median, setup_threads, timed

import torch
from torch import nn

from workbench.engine.callbacks import Callback
from workbench.threads import intra_op_threads

BATCH = 256
EXPERT = "lightly, num_workers={}, bf16 autocast + channels-last + the workbench's threads"


def precision_name(dtype) -> str:
    return "fp32" if dtype is None else str(dtype).replace("torch.bfloat16", "bf16").replace("torch.float16", "fp16")
LR, WD, TAU = 1e-3, 1e-4, 0.2
KNN_K, KNN_T = 200, 0.1


# ------------------------------------------------------------------------------------------------ data
def subset_bundle(n: int, seed: int = 0):
    """Fashion-MNIST with its training split cut to a fixed random subset of ``n`` images (mean/std of the
    full split kept, so both sides normalise identically)."""
    from workbench.data.registry import DatasetBundle, load_dataset

    full = load_dataset("fashion-mnist")
    idx = torch.randperm(len(full.train), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return DatasetBundle(full.name, full.train.subset(idx), full.test, classes=full.classes, mean=full.mean,
                         std=full.std, crop_scale=full.crop_scale, source=full.source)


class PILImages(torch.utils.data.Dataset):
    """The subset as PIL images (mode ``L``), returning ``(transform(image), label)`` as lightly expects."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        from PIL import Image

        self.images = [Image.fromarray(im) for im in images[:, 0].numpy()]
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


# ------------------------------------------------------------------------------------------------ lightly side
class LightlyRun:
    """SimCLR trained the lightly way; ``epoch()`` trains one epoch and returns its wall time in seconds."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, bundle, workers: int, total_steps: int,
                 warmup_steps: int, seed: int = 0, expert: bool = False):
        from lightly.loss import NTXentLoss
        from lightly.transforms import SimCLRTransform

        from workbench.engine.optim import build_scheduler

        self.workers, self.expert = workers, expert
        self.threads = torch.get_num_threads()  # the benchmark's --threads; the expert row: the workbench's
        if expert:  # what an expert sets by hand: the workbench's precision and memory format
            backbone, projector = (m.to(memory_format=torch.channels_last) for m in (backbone, projector))
        self.backbone, self.projector = backbone, projector
        transform = SimCLRTransform(input_size=bundle.image_size, min_scale=bundle.crop_scale[0], cj_strength=0.5,
                                    gaussian_blur=0.0,
                                    normalize={"mean": list(bundle.mean), "std": list(bundle.std)})
        data = PILImages(bundle.train.images, bundle.train.labels, transform)
        self.loader = torch.utils.data.DataLoader(
            data, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers,
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))
        self.criterion = NTXentLoss(temperature=TAU)
        params = list(backbone.parameters()) + list(projector.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
        self.scheduler = build_scheduler(self.optimizer, total_steps, warmup_steps)
        self.losses: list[float] = []

    def epoch(self) -> float:
        self.backbone.train()
        self.projector.train()
        with threads(self.threads):
            return self._epoch()

    def _epoch(self) -> float:
        t0 = time.perf_counter()
        for (x0, x1), _ in self.loader:
            n = len(x0)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.expert):
                z = self.projector(self.backbone(torch.cat([x0, x1])))
            loss = self.criterion(z[:n].float(), z[n:].float())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.losses.append(loss.item())
        return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------ workbench side
def build_trainer(bundle, epochs: int, runs_dir: str, callback, precision: str = "auto"):
    """The engine's Trainer on the subset bundle, without its (untimed here) per-epoch evaluation."""
    from workbench import TrainConfig
    from workbench.engine.build import build
    from workbench.engine.callbacks import LiveDiagnostics
    from workbench.engine.trainer import Trainer

    cfg = TrainConfig(method="simclr", dataset="fashion-mnist", backbone="convnet", device="cpu", epochs=epochs,
                      batch_size=BATCH, optimizer="adamw", lr=LR, weight_decay=WD, tau=TAU, seed=0,
                      progress=False, runs_dir=runs_dir, run_name="workbench", precision=precision)
    parts = build(cfg, torch.device("cpu"), bundle=bundle, callbacks=[LiveDiagnostics(cfg.log_every, cfg.hist_bins)])
    return Trainer(cfg, callbacks=[callback], parts=parts)


class Interleave(Callback):
    """Engine callback: times each workbench epoch and, after it, runs one epoch of every other contender.

    A workbench epoch is timed from the end of the previous interleaved block to its ``on_epoch_end``, so it
    includes the engine's per-step diagnostics and store writes and the previous epoch's checkpoint."""

    def __init__(self, others: dict):
        self.others = others
        self.times: dict[str, list[float]] = {"workbench": [], **{k: [] for k in others}}
        self.mark = 0.0

    def on_fit_start(self, trainer) -> None:
        self.mark = time.perf_counter()

    def on_epoch_end(self, trainer) -> None:
        self.times["workbench"].append(time.perf_counter() - self.mark)
        names = list(self.others)
        shift = trainer.epoch % max(1, len(names))
        for name in names[shift:] + names[:shift]:  # rotate the order of the other contenders
            self.times[name].append(self.others[name].epoch())
        print(f"  epoch {trainer.epoch + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in self.times.items()),
              flush=True)
        self.mark = time.perf_counter()


# ------------------------------------------------------------------------------------------------ breakdown
def step_breakdown(views, dataset, backbone: nn.Module, projector: nn.Module, images: torch.Tensor,
                   reps: int, bf16_threads: int) -> dict[str, float]:
    """Median seconds per batch of the pieces of one step, interleaved: the workbench's batched views, lightly's
    per-image transform + collate, and the shared model step (forward, NT-Xent, backward, AdamW) on 2 x 256
    views. Runs on throwaway copies of the model; explains how far a faster pipeline can move the total."""
    from workbench.losses.ntxent import nt_xent

    g = torch.Generator().manual_seed(0)
    collate = torch.utils.data.default_collate

    def model_step_fn(bf16: bool):
        b, p = copy.deepcopy(backbone), copy.deepcopy(projector)
        if bf16:
            b, p = b.to(memory_format=torch.channels_last), p.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(list(b.parameters()) + list(p.parameters()), lr=LR, weight_decay=WD)

        def model_step():
            x = torch.cat(views(images, n=2, g=g))
            with intra_op_threads(bf16_threads if bf16 else None):
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    z = p(b(x))
                loss = nt_xent(z[:BATCH], z[BATCH:], TAU)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return time.perf_counter() - t0
        return model_step

    pieces = {
        "workbench views (batched)": lambda: timed(views, images, n=2, g=g)[0],
        "lightly transform + collate (per image)": lambda: timed(
            lambda: collate([dataset[i] for i in range(BATCH)]))[0],
        "model step (fwd + loss + bwd + AdamW)": model_step_fn(False),
        f"model step, bf16 autocast + channels-last, {bf16_threads} thread(s)": model_step_fn(True),
    }
    times: dict[str, list[float]] = {k: [] for k in pieces}
    for rep in range(reps + 1):  # repetition 0 warms up
        for name, fn in pieces.items():
            dt = fn()
            if rep:
                times[name].append(dt)
    return {k: median(v) for k, v in times.items()}


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def features(backbone: nn.Module, images: torch.Tensor, mean, std, chunk: int = 1024) -> torch.Tensor:
    """Backbone features of ``uint8`` images scaled to [0, 1] and normalised (no augmentation), eval mode."""
    was = backbone.training
    backbone.eval()
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    out = [backbone((x.float() / 255 - m) / s) for x in images.split(chunk)]
    backbone.train(was)
    return torch.cat(out)


def knn(backbone: nn.Module, bundle) -> float:
    from workbench.diagnostics import knn_accuracy

    mem = features(backbone, bundle.train.images, bundle.mean, bundle.std)
    test = features(backbone, bundle.test.images, bundle.mean, bundle.std)
    return knn_accuracy(test, bundle.test.labels, mem, bundle.train.labels, k=KNN_K, t=KNN_T)


# ------------------------------------------------------------------------------------------------ results
def compare(times: dict[str, list[float]], images_per_epoch: int, losses: dict, accs: dict):
    """The results table of interleaved epochs (``times[name]``, "workbench" first), the workbench's paired
    speed-up over each contender (median over epochs of that epoch's time / the workbench epoch just before it),
    the faster lightly variant as documented (fp32) and the expert row (name holds "bf16"), or ``None``."""
    rates = {k: images_per_epoch / median(v) for k, v in times.items()}
    speedup = {k: median(t_l / t_w for t_l, t_w in zip(v, times["workbench"])) for k, v in times.items()}
    plain = [k for k in times if k != "workbench" and "bf16" not in k]  # lightly as its documentation shows
    best = min(plain, key=speedup.get, default=None)
    expert = next((k for k in times if "bf16" in k), None)
    rows = [[k, f"{rates[k]:,.0f}", f"{speedup[k]:.2f}x", f"{losses[k]:.3f}", f"{accs[k]:.2%}",
             " ".join(f"{t:.1f}" for t in times[k])] for k in times]
    table = markdown_table(["training pipeline", "images/s", "workbench speed-up", "last loss", "kNN acc",
                            "epoch times (s)"], rows)
    return table, speedup, best, expert


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subset", type=int, default=10000, help="training images (fixed random subset)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", default="0,2", help="DataLoader num_workers values for the lightly side")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="auto", help="the workbench's --precision (auto: bf16 on a CPU with "
                   "native bf16)")
    p.add_argument("--no-expert", dest="expert", action="store_false",
                   help="leave out the lightly row with the workbench's precision and memory format")
    p.add_argument("--breakdown-reps", type=int, default=5, help="repetitions of the per-step breakdown (0: skip)")
    args = p.parse_args(argv)
    setup_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    t_start = time.perf_counter()

    bundle = subset_bundle(args.subset)
    steps_per_epoch = len(bundle.train) // BATCH
    with tempfile.TemporaryDirectory(prefix="bench-simclr-") as runs_dir:
        interleave = Interleave({})
        trainer = build_trainer(bundle, args.epochs, runs_dir, interleave, args.precision)
        init_backbone = copy.deepcopy(trainer.method.backbone)  # same initial weights for every contender
        init_projector = copy.deepcopy(trainer.method.projector)
        total, warmup = steps_per_epoch * args.epochs, round(trainer.cfg.warmup_epochs * steps_per_epoch)
        lightly_runs = {f"lightly, num_workers={w}": LightlyRun(copy.deepcopy(init_backbone),
                                                                copy.deepcopy(init_projector), bundle, w, total,
                                                                warmup) for w in workers}
        precision = trainer.autocast_dtype
        if args.expert and workers and precision == torch.bfloat16:
            w = max(workers)
            lightly_runs[EXPERT.format(w)] = LightlyRun(copy.deepcopy(init_backbone), copy.deepcopy(init_projector),
                                                        bundle, w, total, warmup, expert=True)
            lightly_runs[EXPERT.format(w)].threads = trainer.threads or args.threads
        breakdown = {}
        if args.breakdown_reps and lightly_runs:
            breakdown = step_breakdown(trainer.method.views, next(iter(lightly_runs.values())).loader.dataset,
                                       init_backbone, init_projector, bundle.train.images[:BATCH],
                                       args.breakdown_reps, trainer.threads or args.threads)
        interleave.others = lightly_runs
        interleave.times.update({k: [] for k in lightly_runs})
        print(f"training {args.epochs} epochs x {steps_per_epoch} steps on {len(bundle.train)} images, "
              f"interleaved: workbench, {', '.join(lightly_runs)}", flush=True)
        result = trainer.fit()
        assert result.status == "finished", result.status
        wb_loss = result.metrics.get("loss", float("nan"))
        accs = {"workbench": knn(trainer.method.backbone, bundle)}
        losses = {"workbench": wb_loss}
        for name, run in lightly_runs.items():
            accs[name] = knn(run.backbone, bundle)
            losses[name] = run.losses[-1]

    times = interleave.times
    table, speedup, best_lightly, expert = compare(times, steps_per_epoch * BATCH, losses, accs)
    ratio = speedup[best_lightly] if best_lightly else float("nan")
    if breakdown:
        model = breakdown["model step (fwd + loss + bwd + AdamW)"]
        brows = [[k, f"{v * 1000:.1f}", f"{v / model:.0%}"] for k, v in breakdown.items()]
        table += ("\n\nPer-step pieces (batch of 256 images -> 2 views each; median of "
                  f"{args.breakdown_reps} interleaved reps):\n\n"
                  + markdown_table(["piece", "ms per batch", "relative to model step"], brows))
        wb_views, lightly_aug = breakdown["workbench views (batched)"], \
            breakdown["lightly transform + collate (per image)"]
        table += (f"\n\nBound from these pieces for a single-process lightly loop: (lightly transform + model) / "
                  f"(workbench views + model) = {(lightly_aug + model) / (wb_views + model):.2f}x.")
    text = (f"### SimCLR on Fashion-MNIST 28x28, CPU: workbench engine vs lightly "
            f"({len(bundle.train)} train images, {args.epochs} epochs, batch {BATCH})\n\n"
            f"{table}\n\nimages/s: median over epochs; speed-up: median over epochs of (that epoch's time / the "
            f"workbench's epoch time just before it). "
            + f"Workbench precision: {precision_name(precision)}, channels-last weights: "
              f"{trainer.cfg.channels_last}, intra-op threads {trainer.threads or args.threads} (lightly: "
              f"{args.threads}; its expert row: the workbench's). "
            + (f"Workbench vs the faster lightly variant ({best_lightly}): {ratio:.2f}x (goal >= 2.0x at kNN within "
               f"1 point: {goal(ratio >= 2.0 and accs['workbench'] >= accs[best_lightly] - 0.01)}). "
               if best_lightly else "")
            + (f"Workbench vs lightly with the workbench's precision and memory format ({expert}): "
               f"{speedup[expert]:.2f}x (goal >= 1.2x: {goal(speedup[expert] >= 1.2)}). " if expert else "")
            + f"kNN: k={KNN_K}, t={KNN_T}, {len(bundle.test)} test images, memory = the {len(bundle.train)} training "
            f"images.\n{machine_line()}; whole script {time.perf_counter() - t_start:.0f} s.\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
