"""SimCLR ResNet-18 (CIFAR stem) on CIFAR-10-shaped data on one GPU: the workbench's engine at full speed, and
lightly's CIFAR-10 recipe side by side in the same run.

The workbench side is the real engine (``Trainer``), with bf16 autocast (``--precision auto``), channels-last
weights, ``torch.compile`` of the backbone, the views computed on the GPU from the ``uint8`` images held there,
the live diagnostics every ``log_every`` steps and the run store's writes. The per-epoch kNN evaluation is left
out of the timed epochs. The data is CIFAR-10 when ``<data-root>/cifar-10-batches-py`` is on disk, otherwise
50,000 random 32x32 RGB images (the speed does not depend on the pixels).

lightly's side follows its CIFAR-10 benchmark: PIL images through ``SimCLRTransform(input_size=32,
cj_strength=0.5, gaussian_blur=0)`` in DataLoader workers, the same ResNet-18, ``SimCLRProjectionHead(512, 512,
128)``, ``NTXentLoss``, fp32 as its documentation trains, the same optimiser.

Prints one line per epoch as it ends (so a run stopped early still says something), then a table: images/s,
seconds per epoch, peak GPU memory, and the share of a step in the views, the model (forward, loss, backward,
optimiser) and the diagnostics (measured separately, synchronised, after training).

    python benchmarks/gpu.py                       # on a CUDA machine; elsewhere it says so and exits 0
    python benchmarks/gpu.py --device cpu --images 256 --batch 64 --epochs 1 --backbone convnet --no-compile
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import machine_line, markdown_table, median

import torch

from workbench.engine.callbacks import Callback


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cifar_bundle(n: int, data_root: str):
    """CIFAR-10's training images when on disk (the first ``n``), else ``n`` random 32x32 RGB images."""
    from workbench.data.registry import DatasetBundle, ImageSet, load_dataset

    if os.path.isdir(os.path.join(data_root, "cifar-10-batches-py")):
        full = load_dataset("cifar10", data_root)
        return full.with_train_subset(min(n, len(full.train))), "CIFAR-10"
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    test = ImageSet(images[:1000].clone(), labels[:1000].clone())
    return DatasetBundle("cifar10-shaped", ImageSet(images, labels), test, classes=[str(i) for i in range(10)],
                         crop_scale=(0.08, 1.0), source="random uint8"), "random CIFAR-10-shaped"


class EpochClock(Callback):
    """Times each epoch (synchronised) and prints it as soon as it ends."""

    def __init__(self, images_per_epoch: int, device: torch.device):
        self.n, self.device, self.times, self.mark = images_per_epoch, device, [], 0.0

    def on_fit_start(self, trainer) -> None:
        sync(self.device)
        self.mark = time.perf_counter()

    def on_epoch_end(self, trainer) -> None:
        sync(self.device)
        dt = time.perf_counter() - self.mark
        self.times.append(dt)
        mem = torch.cuda.max_memory_allocated(self.device) / 2 ** 30 if self.device.type == "cuda" else float("nan")
        note = " (torch.compile's compilation included)" if trainer.epoch == 0 and trainer.cfg.compile else ""
        print(f"  workbench epoch {trainer.epoch + 1}: {dt:.2f} s, {self.n / dt:,.0f} images/s, peak GPU memory "
              f"{mem:.2f} GiB{note}", flush=True)
        self.mark = time.perf_counter()


def breakdown(trainer, reps: int) -> dict[str, float]:
    """Median seconds of the pieces of one step, synchronised: views, model step, diagnostics (one logged step)."""
    from workbench.engine.callbacks import LiveDiagnostics
    from workbench.engine.device import autocast
    from workbench.losses.ntxent import nt_xent

    m, dev = trainer.method, trainer.device
    images = trainer.train_images[: trainer.batch_size].to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    opt = copy.deepcopy(trainer.optimizer)  # the real optimiser's kind; its state is not the run's any more
    live = LiveDiagnostics(every=1)
    out_holder = {}

    def views():
        out_holder["x"] = m.views(images, n=2, g=g)

    def model():
        x_i, x_j = out_holder["x"]
        with autocast(dev, trainer.autocast_dtype):
            z = m.projector(m.backbone(torch.cat([x_i, x_j])))
        loss = nt_xent(z[: len(x_i)], z[len(x_i):], m.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out_holder["z"] = torch.nn.functional.normalize(z.detach().float(), dim=1)

    def diagnostics():
        from workbench.methods.base import StepOutput

        z = out_holder["z"]
        n = len(z) // 2
        trainer.pending = {"scalars": {}, "histograms": {}}
        live.on_step_end(trainer, StepOutput(loss=torch.zeros(()), z1=z[:n], z2=z[n:]))
        trainer.pending = {"scalars": {}, "histograms": {}}

    times = {"views": [], "model step": [], "diagnostics (one logged step)": []}
    for rep in range(reps + 1):
        for name, fn in zip(times, (views, model, diagnostics)):
            sync(dev)
            t0 = time.perf_counter()
            fn()
            sync(dev)
            if rep:
                times[name].append(time.perf_counter() - t0)
    return {k: median(v) for k, v in times.items()}


class LightlyCifar:
    """lightly's CIFAR-10 SimCLR recipe on the same images; ``epoch()`` returns its synchronised wall time."""

    def __init__(self, bundle, backbone_name: str, batch: int, workers: int, device: torch.device, lr: float,
                 wd: float, tau: float):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.transforms import SimCLRTransform
        from PIL import Image

        from workbench.nn.backbones import build_backbone

        self.device = device
        transform = SimCLRTransform(input_size=bundle.image_size, cj_strength=0.5, gaussian_blur=0.0,
                                    normalize={"mean": list(bundle.mean), "std": list(bundle.std)})
        pil = [Image.fromarray(im) for im in bundle.train.images.permute(0, 2, 3, 1).numpy()]

        class Data(torch.utils.data.Dataset):
            def __len__(self):
                return len(pil)

            def __getitem__(self, i):
                return transform(pil[i]), 0

        self.loader = torch.utils.data.DataLoader(Data(), batch_size=batch, shuffle=True, drop_last=True,
                                                  num_workers=workers, persistent_workers=workers > 0,
                                                  pin_memory=device.type == "cuda")
        self.backbone = build_backbone(backbone_name, bundle.channels).to(device)
        d = self.backbone.out_dim
        self.head = SimCLRProjectionHead(d, d, 128).to(device)
        self.criterion = NTXentLoss(temperature=tau)
        self.opt = torch.optim.AdamW(list(self.backbone.parameters()) + list(self.head.parameters()), lr=lr,
                                     weight_decay=wd)
        self.images = 0

    def epoch(self) -> float:
        sync(self.device)
        t0 = time.perf_counter()
        self.images = 0
        for (x0, x1), _ in self.loader:
            x0, x1 = x0.to(self.device, non_blocking=True), x1.to(self.device, non_blocking=True)
            z = self.head(self.backbone(torch.cat([x0, x1])))
            loss = self.criterion(z[: len(x0)], z[len(x0):])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.images += len(x0)
        sync(self.device)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto: the CUDA GPU, and nothing to do without one; cpu: the "
                   "path check at a tiny size")
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--backbone", default="resnet18", choices=("resnet18", "convnet"))
    p.add_argument("--precision", default="auto")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--lightly-epochs", type=int, default=1, help="epochs of lightly's recipe (0: leave it out)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="lightly's DataLoader workers")
    p.add_argument("--reps", type=int, default=10, help="repetitions of the per-piece breakdown")
    p.add_argument("--data-root", default="data")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    if args.device == "auto" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU on this machine, nothing to measure (use --device cpu for a tiny "
              "check of the script's path).")
        return 0
    device = torch.device("cuda" if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    from workbench import TrainConfig
    from workbench.engine.build import build
    from workbench.engine.callbacks import LiveDiagnostics
    from workbench.engine.trainer import Trainer
    from workbench.engine.device import autocast  # noqa: F401  (fail early on an old checkout)

    bundle, source = cifar_bundle(args.images, args.data_root)
    lr, wd, tau = 1e-3, 1e-4, 0.5
    print(f"SimCLR {args.backbone} on {len(bundle.train):,} {source} images, batch {args.batch}, {args.epochs} "
          f"epochs, device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as runs_dir:
        cfg = TrainConfig(method="simclr", dataset="cifar10", backbone=args.backbone, device=str(device),
                          epochs=args.epochs, batch_size=args.batch, optimizer="adamw", lr=lr, weight_decay=wd,
                          tau=tau, precision=args.precision, channels_last=True, compile=args.compile,
                          progress=False, runs_dir=runs_dir, run_name="gpu")
        steps = bundle.steps_per_epoch(min(args.batch, len(bundle.train)))
        clock = EpochClock(steps * min(args.batch, len(bundle.train)), device)
        parts = build(cfg, device, bundle=bundle, callbacks=[LiveDiagnostics(cfg.log_every, cfg.hist_bins)])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(cfg, callbacks=[clock], parts=parts)
        result = trainer.fit()
        if result.status != "finished":
            print(f"the workbench run ended {result.status}")
            return 1
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
        pieces = breakdown(trainer, args.reps) if args.reps else {}

    rows = []
    steady = clock.times[1:] or clock.times
    per_epoch = median(steady)
    rows.append(["workbench (bf16 autocast, channels-last, compile)" if args.compile else "workbench",
                 f"{clock.n / per_epoch:,.0f}", f"{per_epoch:.2f}", f"{clock.times[0]:.2f}", f"{peak:.2f}"])
    if args.lightly_epochs:
        try:
            import lightly  # noqa: F401
        except ImportError:
            print("lightly is not installed (pip install -e '.[bench]'): its row is left out")
        else:
            run = LightlyCifar(bundle, args.backbone, min(args.batch, len(bundle.train)), args.workers, device, lr, wd,
                               tau)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for e in range(args.lightly_epochs):
                times.append(run.epoch())
                print(f"  lightly epoch {e + 1}: {times[-1]:.2f} s, {run.images / times[-1]:,.0f} images/s",
                      flush=True)
            lpeak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
            rows.append([f"lightly CIFAR-10 recipe (fp32, {args.workers} workers)", f"{run.images / median(times):,.0f}",
                         f"{median(times):.2f}", f"{times[0]:.2f}", f"{lpeak:.2f}"])
    print("\n" + markdown_table(["pipeline", "images/s", "s per epoch (median, after the first)", "first epoch (s)",
                                 "peak GPU memory (GiB)"], rows))
    if pieces:
        total = sum(v for k, v in pieces.items() if not k.startswith("diagnostics"))
        diag = pieces["diagnostics (one logged step)"] / cfg.log_every
        brows = [[k, f"{v * 1000:.2f}", f"{(v / cfg.log_every if k.startswith('diagnostics') else v) / (total + diag):.1%}"]
                 for k, v in pieces.items()]
        print(f"\nShare of a step (median of {args.reps}, synchronised; diagnostics run every {cfg.log_every} steps):\n"
              + markdown_table(["piece", "ms", "share of the step"], brows))
    print(f"\n{machine_line()}; whole script {time.perf_counter() - t_start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
