"""Method zoo: every workbench method, and lightly's SimCLR / MoCo / SwAV, for the same wall-clock budget.

Each contender trains on the same seeded random subset of Fashion-MNIST (28x28 grayscale, default 10,000
training images, the subset ``TrainConfig(subset=..., seed=0)`` draws), on the CPU, with the same backbone
(``workbench.nn.SmallConvNet(in_channels=1)``, same initial weights: built after ``torch.manual_seed(0)`` exactly
as the engine builds it) and, unless the method declares its own (``Method.common_defaults``, see below), the same
batch (256) and optimiser (AdamW, lr 1e-3, weight decay 1e-4, the workbench's per-step schedule: 1 warm-up epoch,
then cosine over ``--epochs`` epochs, default 100, so that within a budget of a few minutes the learning rate stays
near its peak). It trains until ``--budget`` seconds of wall clock (default 120) are used, then stops after the
step in flight.

A method that declares its paper's values of these common options (``common_defaults``: DEPICT's Adam lr 1e-3
without decay, batch 100, a 120-epoch schedule) runs with them, as a plain ``workbench train --method ...`` would:
the table's "batch" and "optimiser" columns say what each row used, and its images/s are counted at that batch.
The same holds for the methods' own options: G-SimCLR's and DEPICT's autoencoder pre-training runs for their own
``--pretrain-epochs`` (5 and 60) unless ``--pretrain-epochs`` here says otherwise.

* workbench (simclr, moco, swav, rotnet, gsimclr, depict): the real engine, ``Trainer(TrainConfig(method=...,
  dataset="fashion-mnist", backbone="convnet", device="cpu", subset=..., progress=False), callbacks=[Budget])``
  with every method's own defaults (its own temperature; MoCo symmetric with split-BN, queue capped below the
  training set, m 0.99; SwAV 30 prototypes, 2 x 28 px + 2 x 16 px crops, prototypes frozen for the first epoch;
  G-SimCLR and DEPICT start with their autoencoder pre-training). Live diagnostics, run-store writes and
  checkpoints run as in any training and count in the budget; the engine's per-epoch evaluation
  (``EpochEvaluation``) is removed so that it does not (the budget rarely ends on an epoch boundary, so the
  metrics below are computed on the final model after the stop instead). The ``Budget`` callback sets
  ``trainer.stop_event`` once the budget is used; the run ends ``stopped``.
* lightly (SimCLR, MoCo, SwAV): lightly's own pieces in the plain loop of its examples, over a
  ``DataLoader`` of PIL images (``num_workers=0``), hyper-parameters matched to the workbench defaults where
  lightly exposes them:

  - SimCLR: ``SimCLRTransform(input_size=28, min_scale=0.2, cj_strength=0.5, gaussian_blur=0)``,
    ``SimCLRProjectionHead(256, 256, 128)``, ``NTXentLoss(temperature=0.2)``, one forward pass per view.
  - MoCo v2: ``MoCoV2Transform(input_size=28, gaussian_blur=0)``, ``MoCoProjectionHead(256, 256, 128)``, key
    encoder = ``copy.deepcopy`` + ``deactivate_requires_grad``, ``update_momentum(m=0.99)`` every step,
    ``NTXentLoss(temperature=0.2, memory_bank_size=(4096, 128))``; asymmetric and without shuffle-BN, as in
    lightly's example.
  - SwAV: ``SwaVTransform(crop_sizes=(28, 16), crop_counts=(2, 2), crop_min_scales=(0.2, 0.05),
    crop_max_scales=(1.0, 0.4), cj_strength=0.5, gaussian_blur=0)``, ``SwaVProjectionHead(256, 256, 128)``,
    ``SwaVPrototypes(128, 30, n_steps_frozen_prototypes=<1 epoch>)`` (re-normalised every step),
    ``SwaVLoss(temperature=0.2, sinkhorn_epsilon=0.05, sinkhorn_iterations=3)``.

  The colour jitter of these transforms (0.4/0.4/0.4/0.1, p=0.8), grayscale p=0.2, crop scale (0.2, 1) and flip
  p=0.5 are the workbench's; all images are normalised with the dataset's mean/std.

Reported per contender: epochs (fractional) and steps done; images/s as the median over steps of the per-step
rate (the workbench's logged ``img_per_s``: from indexing the batch, views included, to the optimiser step; for
lightly the same span from fetching the batch, i.e. the per-image transforms, to the optimiser step) and overall
(images trained / wall time of the training, everything included); the last loss; the kNN accuracy (weighted,
k=200, t=0.1, ``workbench.diagnostics.knn_accuracy``) of backbone features of the 10k test images against the
training subset as memory, images scaled to [0, 1] and normalised, eval mode; k-means ACC/NMI (10 clusters,
``workbench.diagnostics.clustering.kmeans``, L2-normalised features) of the test features; and, for methods with
clusters of their own (SwAV prototypes, DEPICT's head), ACC/NMI of those assignments of the test features.

Contenders run one after the other in one process (no interleaving: the budget is wall clock), so a busy machine
costs whoever runs at that moment; the 1-minute load average is printed for each contender and for the start and
end of the script. Total time is about (number of contenders) x budget + evaluation.

    python benchmarks/zoo.py [--budget 120] [--subset 10000] [--methods simclr,moco,...] [--no-lightly] [--quick]
                             [--dataset digits|fashion-mnist] [--pretrain-epochs N]
"""
from __future__ import annotations

import argparse
import copy
import gc
import os
import tempfile
import time
from dataclasses import dataclass, field

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import Budget, machine_line, markdown_table, median, setup_threads

import torch
import torch.nn.functional as F
from torch import nn

WORKBENCH_METHODS = ["simclr", "moco", "swav", "rotnet", "gsimclr", "depict"]
LIGHTLY_METHODS = ["simclr", "moco", "swav"]
BATCH = 256
LR, WD, TAU = 1e-3, 1e-4, 0.2  # AdamW and the workbench's default temperature (TrainConfig.tau)
OPTIMIZER = "adamw"
KNN_K, KNN_T = 200, 0.1
SEED = 0


# ------------------------------------------------------------------------------------------------ results
@dataclass
class Result:
    name: str
    steps: int = 0
    epochs: float = 0.0
    train_s: float = 0.0
    step_rates: list[float] = field(default_factory=list)
    last_loss: float = float("nan")
    status: str = ""
    load_start: float = float("nan")
    metrics: dict = field(default_factory=dict)
    notes: str = ""
    batch: int = BATCH
    optimizer: str = f"{OPTIMIZER} lr {LR:g} wd {WD:g}"

    @property
    def rate_median(self) -> float:
        return median(self.step_rates) if self.step_rates else float("nan")

    @property
    def rate_overall(self) -> float:
        return self.steps * self.batch / self.train_s if self.train_s else float("nan")


def load1() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def features(backbone: nn.Module, images: torch.Tensor, mean, std, chunk: int = 1024) -> torch.Tensor:
    """Backbone features of ``uint8`` images scaled to [0, 1] and normalised (no augmentation), eval mode."""
    was = backbone.training
    backbone.eval()
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    out = [backbone((x.float() / 255 - m) / s).float() for x in images.split(chunk)]
    backbone.train(was)
    return torch.cat(out)


@torch.no_grad()
def evaluate(backbone: nn.Module, bundle, assign=None) -> dict:
    """kNN accuracy, k-means ACC/NMI and (with ``assign``: backbone features -> cluster ids or None) the method's
    own cluster ACC/NMI, all on the full test split."""
    from workbench.diagnostics import knn_accuracy
    from workbench.diagnostics.clustering import cluster_scores, kmeans

    t0 = time.perf_counter()
    mem = features(backbone, bundle.memory.images, bundle.mean, bundle.std)
    test = features(backbone, bundle.test.images, bundle.mean, bundle.std)
    labels = bundle.test.labels.numpy()
    out = {"knn_acc": knn_accuracy(test, bundle.test.labels, mem, bundle.memory.labels, k=KNN_K, t=KNN_T)}
    km = cluster_scores(labels, kmeans(test.numpy(), bundle.num_classes or 10, seed=0))
    out.update(kmeans_acc=km.acc, kmeans_nmi=km.nmi, kmeans_ari=km.ari)
    codes = assign(test) if assign is not None else None
    if codes is not None:
        codes = codes.cpu().numpy()
        cs = cluster_scores(labels, codes)
        out.update(cluster_acc=cs.acc, cluster_nmi=cs.nmi, cluster_ari=cs.ari, clusters_used=len(set(codes.tolist())))
    out["eval_s"] = time.perf_counter() - t0
    return out


def reference_backbone() -> nn.Module:
    """The backbone every contender starts from: what the engine builds first under ``manual_seed(seed)``."""
    from workbench.nn import SmallConvNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return SmallConvNet(in_channels=1)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------------ workbench
def zoo_config(method: str, args, runs_dir: str):
    """The run's configuration: the zoo's shared batch / optimiser / schedule length, except where the method
    declares its own (``Method.common_defaults``), which it keeps as a plain ``workbench train`` would."""
    from workbench import TrainConfig
    from workbench.engine.registry import method_class

    shared = dict(epochs=args.epochs, batch_size=BATCH, optimizer=OPTIMIZER, lr=LR, weight_decay=WD)
    own = method_class(method).common_defaults
    cfg = TrainConfig(method=method, dataset=args.dataset, backbone="convnet", device="cpu", subset=args.subset,
                      seed=SEED, progress=False, runs_dir=runs_dir, run_name=method,
                      **{k: v for k, v in shared.items() if k not in own})
    if args.pretrain_epochs is not None and method in ("gsimclr", "depict"):  # their autoencoder stage
        cfg = cfg.replace(pretrain_epochs=args.pretrain_epochs)
    return cfg


def run_workbench(method: str, args, runs_dir: str, reference: nn.Module) -> tuple[Result, object]:
    from workbench.engine.build import build
    from workbench.engine.callbacks import LiveDiagnostics
    from workbench.engine.trainer import Trainer
    from workbench.runs.store import RunReader

    cfg = zoo_config(method, args, runs_dir)
    res = Result(f"workbench {method}", load_start=load1(), batch=cfg.batch_size,
                 optimizer=f"{cfg.optimizer} lr {cfg.lr:g} wd {cfg.weight_decay:g}")
    budget = Budget(args.budget)
    # the live diagnostics every run has, not the per-epoch evaluation: the benchmark scores each method itself
    parts = build(cfg, torch.device("cpu"), callbacks=[LiveDiagnostics(cfg.log_every, cfg.hist_bins)])
    trainer = Trainer(cfg, callbacks=[budget], parts=parts)
    if type(trainer.method.backbone) is not type(reference):  # a method with its own encoder (DEPICT's official)
        res.notes = f"own encoder ({type(trainer.method.backbone).__name__}); "
    elif not same_weights(trainer.method.backbone, reference):
        res.notes = "initial backbone differs from the reference! "
    result = trainer.fit()
    res.train_s = budget.t_end - budget.t0
    res.status, res.steps = result.status, result.step
    res.epochs = result.step / trainer.steps_per_epoch
    with RunReader(result.run_dir) as r:
        res.step_rates = r.scalar("img_per_s").tolist()
        loss = r.scalar("loss")
        res.last_loss = float(loss.iloc[-1]) if len(loss) else float("nan")
        warnings = r.events()
    m = trainer.method
    pre = getattr(m, "pretrain_steps", None)
    if pre is not None:  # G-SimCLR and DEPICT: autoencoder pre-training first
        done = result.step
        res.notes += (f"AE pre-training {min(done, pre)}/{pre} steps" +
                      (f", then {done - pre} steps of {'SimCLR' if method == 'gsimclr' else 'clustering'}"
                       if done > pre else " (not finished: no clustering yet)" if method == "depict"
                       else " (not finished: the SimCLR backbone is untrained)"))
    if "level" in warnings and (warnings["level"] == "warning").any():
        res.notes += "; warnings: " + " | ".join(warnings.loc[warnings["level"] == "warning", "message"]
                                                 .astype(str).str.slice(0, 80))
    m.eval()
    res.metrics = evaluate(m.backbone, trainer.bundle, assign=m.assign if method in ("swav", "depict") else None)
    if method == "depict" and "cluster_acc" not in res.metrics:
        res.notes += "; assign() gave no clusters"
    return res, trainer.bundle


# ------------------------------------------------------------------------------------------------ lightly
class LightlySimCLR(nn.Module):
    def __init__(self, backbone, bundle, steps_per_epoch):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.transforms import SimCLRTransform

        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(backbone.out_dim, backbone.out_dim, 128)
        self.criterion = NTXentLoss(temperature=TAU)
        self.transform = SimCLRTransform(input_size=bundle.image_size, min_scale=bundle.crop_scale[0],
                                         cj_strength=0.5, gaussian_blur=0.0, normalize=normalize(bundle))

    def loss(self, views, step):
        x0, x1 = views
        return self.criterion(self.head(self.backbone(x0)), self.head(self.backbone(x1)))

    def trainable(self):
        return list(self.backbone.parameters()) + list(self.head.parameters())


class LightlyMoCo(nn.Module):
    def __init__(self, backbone, bundle, steps_per_epoch, momentum: float = 0.99, queue: int = 4096):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        from lightly.transforms import MoCoV2Transform

        super().__init__()
        self.backbone = backbone
        self.head = MoCoProjectionHead(backbone.out_dim, backbone.out_dim, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.head_momentum = copy.deepcopy(self.head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.head_momentum)
        self.m = momentum
        self.criterion = NTXentLoss(temperature=TAU, memory_bank_size=(queue, 128))
        self.transform = MoCoV2Transform(input_size=bundle.image_size, min_scale=bundle.crop_scale[0],
                                         gaussian_blur=0.0, normalize=normalize(bundle))

    def loss(self, views, step):
        from lightly.models.utils import update_momentum

        x_query, x_key = views
        update_momentum(self.backbone, self.backbone_momentum, m=self.m)
        update_momentum(self.head, self.head_momentum, m=self.m)
        query = self.head(self.backbone(x_query))
        with torch.no_grad():
            key = self.head_momentum(self.backbone_momentum(x_key)).detach()
        return self.criterion(query, key)

    def trainable(self):
        return list(self.backbone.parameters()) + list(self.head.parameters())


class LightlySwAV(nn.Module):
    def __init__(self, backbone, bundle, steps_per_epoch, prototypes: int = 30):
        from lightly.loss import SwaVLoss
        from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
        from lightly.transforms import SwaVTransform

        super().__init__()
        self.backbone = backbone
        self.head = SwaVProjectionHead(backbone.out_dim, backbone.out_dim, 128)
        self.prototypes = SwaVPrototypes(128, n_prototypes=prototypes, n_steps_frozen_prototypes=steps_per_epoch)
        self.criterion = SwaVLoss(temperature=TAU, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
        size = bundle.image_size
        self.transform = SwaVTransform(crop_sizes=(size, max(4, round(size * 0.57))), crop_counts=(2, 2),
                                       crop_min_scales=(bundle.crop_scale[0], 0.05), crop_max_scales=(1.0, 0.4),
                                       cj_strength=0.5, gaussian_blur=0.0, normalize=normalize(bundle))

    def forward_view(self, x, step):
        z = F.normalize(self.head(self.backbone(x)), dim=1, p=2)
        return self.prototypes(z, step)

    def loss(self, views, step):
        self.prototypes.normalize()
        out = [self.forward_view(v, step) for v in views]
        return self.criterion(out[:2], out[2:])

    @torch.no_grad()
    def assign(self, h):
        was = self.training
        self.eval()
        z = F.normalize(self.head(h), dim=1, p=2)
        codes = self.prototypes(z, step=10 ** 9).argmax(1)
        self.train(was)
        return codes

    def trainable(self):
        return list(self.backbone.parameters()) + list(self.head.parameters()) + list(self.prototypes.parameters())


LIGHTLY = {"simclr": LightlySimCLR, "moco": LightlyMoCo, "swav": LightlySwAV}


def normalize(bundle) -> dict:
    return {"mean": list(bundle.mean), "std": list(bundle.std)}


def run_lightly(method: str, args, bundle, reference: nn.Module) -> Result:
    from simclr_vs_lightly import PILImages  # noqa: E402  (the same PIL dataset as the SimCLR comparison)

    from workbench.engine.optim import build_scheduler

    res = Result(f"lightly {method}", load_start=load1())
    steps_per_epoch = len(bundle.train) // BATCH
    torch.manual_seed(SEED)  # heads, and lightly's transforms draw from the global RNG
    model = LIGHTLY[method](copy.deepcopy(reference), bundle, steps_per_epoch)
    data = PILImages(bundle.train.images, bundle.train.labels, model.transform)
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(SEED))
    optimizer = torch.optim.AdamW(model.trainable(), lr=LR, weight_decay=WD)
    scheduler = build_scheduler(optimizer, steps_per_epoch * args.epochs, round(1.0 * steps_per_epoch))
    model.train()
    step, loss_value = 0, float("nan")
    t0 = time.perf_counter()
    it = iter(loader)
    while step < steps_per_epoch * args.epochs:
        ts = time.perf_counter()
        try:
            views, _ = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        loss = model.loss(views, step)
        loss_value = loss.item()
        if not torch.isfinite(loss):
            res.notes = f"loss became {loss_value} at step {step + 1}"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        now = time.perf_counter()
        res.step_rates.append(BATCH / (now - ts))
        if now - t0 >= args.budget:
            break
    res.train_s = time.perf_counter() - t0
    res.status = "stopped" if step < steps_per_epoch * args.epochs else "finished"
    res.steps, res.epochs, res.last_loss = step, step / steps_per_epoch, loss_value
    model.eval()
    res.metrics = evaluate(model.backbone, bundle, assign=getattr(model, "assign", None))
    return res


# ------------------------------------------------------------------------------------------------ report
def fmt(x, spec: str) -> str:
    return "—" if x is None or x != x else format(x, spec)


def row(r: Result) -> list:
    m = r.metrics
    base = r.status == "baseline"
    return [r.name, "—" if base else r.batch, "—" if base else r.optimizer, f"{r.epochs:.1f}", r.steps,
            fmt(r.rate_median, ",.0f"), fmt(r.rate_overall, ",.0f"), fmt(r.last_loss, ".3f"),
            fmt(m.get("knn_acc"), ".2%"), fmt(m.get("kmeans_acc"), ".2%"), fmt(m.get("kmeans_nmi"), ".3f"),
            fmt(m.get("kmeans_ari"), ".3f"), fmt(m.get("cluster_acc"), ".2%"), fmt(m.get("cluster_nmi"), ".3f"),
            fmt(m.get("cluster_ari"), ".3f"), f"{r.load_start:.2f}", r.notes]


HEADERS = ["contender", "batch", "optimiser", "epochs", "steps", "img/s (median step)", "img/s (overall)", "last loss",
           "kNN acc", "k-means ACC", "k-means NMI", "k-means ARI", "cluster ACC", "cluster NMI", "cluster ARI",
           "load at start", "notes"]


def head_to_head(results: dict[str, Result]) -> str:
    rows = []
    for m in LIGHTLY_METHODS:
        w, lt = results.get(f"workbench {m}"), results.get(f"lightly {m}")
        if not (w and lt):
            continue
        rows.append([m, f"{w.rate_overall / lt.rate_overall:.2f}x", f"{w.steps / max(1, lt.steps):.2f}x",
                     f"{w.metrics['knn_acc']:.2%} vs {lt.metrics['knn_acc']:.2%}",
                     f"{(w.metrics['knn_acc'] - lt.metrics['knn_acc']) * 100:+.1f} pt",
                     f"{w.metrics['kmeans_nmi']:.3f} vs {lt.metrics['kmeans_nmi']:.3f}"])
    if not rows:
        return ""
    return markdown_table(["method", "workbench / lightly img/s (overall)", "steps ratio",
                           "kNN acc (workbench vs lightly)", "kNN difference", "k-means NMI (workbench vs lightly)"],
                          rows)


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=None, help="training seconds per contender (default 120; "
                                                               "--quick: 20)")
    p.add_argument("--subset", type=int, default=None, help="training images (default 10000; --quick: 2000)")
    p.add_argument("--methods", default=",".join(WORKBENCH_METHODS),
                   help="comma-separated workbench methods (lightly runs those it has: simclr, moco, swav)")
    p.add_argument("--lightly", action=argparse.BooleanOptionalAction, default=True,
                   help="also train lightly's SimCLR / MoCo / SwAV (those in --methods; default: yes)")
    p.add_argument("--workbench", action=argparse.BooleanOptionalAction, default=True,
                   help="train the workbench's methods (default: yes; --no-workbench runs lightly only)")
    p.add_argument("--epochs", type=int, default=100, help="length of the lr schedule (warm-up 1 epoch + cosine); "
                                                           "the budget normally stops training long before")
    p.add_argument("--quick", action="store_true", help="budget 20 s and subset 2000 (for development)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pretrain-epochs", type=float, default=None,
                   help="G-SimCLR's and DEPICT's autoencoder epochs before their main stage (default: each method's "
                        "own, 5 and 60; a CPU budget of a couple of minutes may need fewer)")
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "digits"),
                   help="the data (default fashion-mnist; digits: 8x8, the subset is the whole training split)")
    args = p.parse_args(argv)
    args.budget = args.budget if args.budget is not None else (20.0 if args.quick else 120.0)
    args.subset = args.subset if args.subset is not None else (2000 if args.quick else 10000)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in WORKBENCH_METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {WORKBENCH_METHODS}")
    if not (args.workbench and methods) and not (args.lightly and set(methods) & set(LIGHTLY_METHODS)):
        p.error("nothing to run: choose --methods (lightly has simclr, moco, swav) and --workbench/--lightly")
    setup_threads(args.threads)
    load_start, t_start = os.getloadavg(), time.perf_counter()
    reference = reference_backbone()

    results: dict[str, Result] = {}
    bundle = None

    def report(r: Result) -> None:
        results[r.name] = r
        print(f"  {r.name}: {r.status}, {r.steps} steps in {r.train_s:.1f} s, "
              f"{r.rate_overall:,.0f} img/s overall, kNN {r.metrics.get('knn_acc', float('nan')):.2%}, "
              f"eval {r.metrics.get('eval_s', 0):.1f} s {r.notes}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-zoo-") as runs_dir:
        for method in methods if args.workbench else []:
            r, bundle = run_workbench(method, args, runs_dir, reference)
            report(r)
            gc.collect()
    if args.lightly:
        if bundle is None:  # no workbench method ran: the same subset the engine would draw
            from workbench.data import load_dataset

            bundle = load_dataset(args.dataset).with_train_subset(args.subset, seed=SEED)
        for method in [m for m in LIGHTLY_METHODS if m in methods]:
            report(run_lightly(method, args, bundle, reference))
            gc.collect()
    if bundle is not None:  # the baselines every method should beat, on the same test split
        results["raw pixels"] = Result("raw pixels", status="baseline", metrics=evaluate(nn.Flatten(), bundle))
        results["random init"] = Result("random init", status="baseline", metrics=evaluate(reference, bundle))
    load_end = os.getloadavg()

    wb = [row(r) for n, r in results.items() if not n.startswith("lightly")]
    lt = [row(r) for n, r in results.items() if n.startswith("lightly")]
    text = (f"### Method zoo on {args.dataset}, CPU: {args.budget:.0f} s of training per contender "
            f"({len(bundle.train)} train images, SmallConvNet; batch {BATCH}, AdamW lr {LR:g} wd {WD:g} unless the "
            "method declares its own: see the batch and optimiser columns)\n\n"
            + markdown_table(HEADERS, wb + lt))
    h2h = head_to_head(results)
    if h2h:
        text += "\n\nSame method, same budget, workbench engine vs lightly:\n\n" + h2h
    text += (f"\n\nContenders ran one after the other, each for its own {args.budget:.0f} s (not interleaved); "
             "'load at start' is the 1-minute load average when it started, "
             f"this script's own {args.threads} threads "
             "included.\nepochs = steps / the steps per epoch at the row's batch. img/s (median step): "
             "median over "
             "steps of the per-step rate (workbench: the logged img_per_s; lightly: batch fetch incl. per-image "
             "transforms through the optimiser step); img/s (overall): images trained (steps x the row's batch) / "
             "training wall time "
             "(workbench incl. live diagnostics, run-store writes and checkpoints). kNN: weighted, "
             f"k={KNN_K}, t={KNN_T}, backbone features of the {len(bundle.test)} test images against the "
             f"{len(bundle.memory)} training images, final model. k-means: 10 clusters of the L2-normalised test "
             "features. cluster: the method's own assignments (SwAV: nearest prototype; DEPICT: head argmax) of "
             "the test features.\n"
             f"Load average (1/5/15 min): start {' / '.join(f'{x:.2f}' for x in load_start)}, end "
             f"{' / '.join(f'{x:.2f}' for x in load_end)}.\n"
             f"{machine_line()}; whole script {time.perf_counter() - t_start:.0f} s.\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
