"""Probes on frozen features: label budgets (linear vs naive Bayes vs kNN), few-shot, spectrum, and their cost.

For digits (8x8, the whole 1,437-image training split) and Fashion-MNIST (28x28, a seeded ``--fashion-subset`` of
the training split as the labelled pool, the 10k test split held out), two representations of the same
architecture (the engine's SmallConvNet, built exactly as ``workbench train`` builds it, CPU):

* random init: the weights the run starts from (``seed 0``), never trained;
* SimCLR: ``workbench.train(method="simclr", ...)`` at its defaults (tau 0.5, batch 256) for ``--digits-epochs``
  / ``--fashion-epochs`` epochs on the same pool.

On each, :func:`workbench.engine.evaluate.evaluate_features` runs the probes exactly as ``workbench eval`` does:
the linear probe (logistic regression on standardised features, C chosen on a validation split of the labelled
pool), naive Bayes with a shared diagonal covariance, weighted kNN (k = min(200, labels per class / 2),
t = 0.1), each at 1, 2, 5, 10, 20, 50 labels per class (mean +- std over ``--draws`` seeded class-balanced draws)
and with all labels; 5-way 1- and 5-shot transductive k-means over ``--episodes`` episodes of the test split
(mean +- 95% interval); RankMe of the pool's features. The time of each probe (all its budgets and draws) and of
the feature extraction is printed beside.

*Revisiting Discriminative vs. Generative Classifiers* finds naive Bayes ahead of logistic regression at the
smallest label budgets; the ``NB - linear`` column says whether that holds here.

    python benchmarks/probes.py [--digits-epochs 30] [--fashion-epochs 3] [--fashion-subset 10000]
                                [--draws 5] [--episodes 600] [--datasets digits,fashion-mnist]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import machine_line, markdown_table, setup_threads

import torch


def features_of(method, bundle) -> tuple[torch.Tensor, torch.Tensor, float]:
    from workbench.engine.features import extract_features

    method.eval()
    t0 = time.perf_counter()
    feats = [extract_features(method, s.images, torch.device("cpu")) for s in (bundle.memory, bundle.test)]
    return feats[0], feats[1], time.perf_counter() - t0


def representations(dataset: str, epochs: int, subset: int | None, runs_dir: str):
    """``[(name, method, bundle)]``: the initial weights and the SimCLR-trained ones, on the same pool."""
    from workbench import TrainConfig
    from workbench.engine.build import build
    from workbench.engine.trainer import Trainer

    cfg = TrainConfig(method="simclr", dataset=dataset, backbone="convnet", device="cpu", epochs=epochs,
                      subset=subset, progress=False, runs_dir=runs_dir, run_name=f"simclr-{dataset}")
    init = build(cfg, torch.device("cpu"))
    trainer = Trainer(cfg)
    t0 = time.perf_counter()
    trainer.fit()
    train_s = time.perf_counter() - t0
    return [("random init", init.method, init.bundle), (f"SimCLR {epochs} ep ({train_s:.0f} s)", trainer.method,
                                                         trainer.bundle)]


def fmt(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None or std != std else f"{mean:.3f} +- {std:.3f}"


def dataset_tables(dataset: str, epochs: int, subset: int | None, draws: int, episodes: int) -> str:
    from workbench.engine.evaluate import evaluate_features

    with tempfile.TemporaryDirectory(prefix="bench-probes-") as runs_dir:
        reps = representations(dataset, epochs, subset, runs_dir)
        results = []
        for name, method, bundle in reps:
            train_x, test_x, extract_s = features_of(method, bundle)
            ev = evaluate_features(train_x, bundle.memory.labels.numpy(), test_x, bundle.test.labels.numpy(),
                                   probes=("linear", "nb", "budgets", "fewshot", "spectrum"), draws=draws,
                                   episodes=episodes, progress=False)
            ev.seconds = {"features": extract_s, **ev.seconds}
            results.append((name, ev, len(train_x), len(test_x)))
    budget_rows = []
    for name, ev, _, _ in results:
        t = ev.table[ev.table["probe"].isin(["linear", "nb", "knn"])]
        for n, group in t.groupby(t["labels_per_class"].fillna(1e9), sort=True):
            by = {r.probe: r for r in group.itertuples()}
            std = lambda p: None if n == 1e9 else by[p].std  # noqa: E731
            budget_rows.append([name, "all" if n == 1e9 else int(n), fmt(by["linear"].accuracy, std("linear")),
                                fmt(by["nb"].accuracy, std("nb")), fmt(by["knn"].accuracy, std("knn")),
                                f"{by['nb'].accuracy - by['linear'].accuracy:+.3f}"])
    fewshot_rows = [[name, fmt(ev.scalars.get("fewshot_5w1s_acc", float("nan")), ev.scalars.get("fewshot_5w1s_acc_ci95")),
                     fmt(ev.scalars.get("fewshot_5w5s_acc", float("nan")), ev.scalars.get("fewshot_5w5s_acc_ci95")),
                     f"{ev.scalars['rankme']:.1f} (n={int(ev.scalars['rankme_n'])})"] for name, ev, _, _ in results]
    time_rows = []
    for name, ev, _, _ in results:
        per_probe = ev.table.groupby("probe")["seconds"].sum()
        time_rows.append([name, f"{ev.seconds['features']:.2f}",
                          *(f"{per_probe.get(p, float('nan')):.2f}" for p in ("linear", "nb", "knn", "fewshot 5-way")),
                          f"{ev.seconds['spectrum']:.2f}"])
    pool, test = results[0][2], results[0][3]
    return (f"### {dataset}: {pool} labelled training images as the pool, {test} test images\n\n"
            "Label budgets (test accuracy; mean +- std over draws):\n\n"
            + markdown_table(["features", "labels/class", "linear", "naive Bayes", "kNN", "NB - linear"], budget_rows)
            + f"\n\nFew-shot (5-way, 15 queries, {episodes} episodes of the test split; mean +- 95% interval) and "
              "RankMe of the pool's features:\n\n"
            + markdown_table(["features", "5-way 1-shot", "5-way 5-shot", "RankMe"], fewshot_rows)
            + f"\n\nSeconds per probe (all budgets x {draws} draws; {episodes} episodes x 2 settings):\n\n"
            + markdown_table(["features", "feature extraction", "linear (all budgets)", "naive Bayes", "kNN",
                              "few-shot", "spectrum + RankMe"], time_rows))


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="digits,fashion-mnist")
    p.add_argument("--digits-epochs", type=int, default=30)
    p.add_argument("--fashion-epochs", type=int, default=3)
    p.add_argument("--fashion-subset", type=int, default=10000, help="labelled pool and SimCLR training set")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    setup_threads(args.threads)
    parts = []
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        epochs = args.digits_epochs if dataset == "digits" else args.fashion_epochs
        subset = None if dataset == "digits" else args.fashion_subset
        parts.append(dataset_tables(dataset, epochs, subset, args.draws, args.episodes))
    text = "\n\n".join(parts) + f"\n\n{machine_line()}\n"
    print(text)
    return text


if __name__ == "__main__":
    main()
