"""``workbench eval RUN``: the papers' probes on a representation run's frozen features, written into its store.

    result = evaluate_run("runs/simclr-digits")          # all probes, the last checkpoint
    result.table                                         # one row per probe / label budget / block
    result.scalars["linear_acc"]

The probes themselves are pure functions of feature arrays (:mod:`workbench.diagnostics`); this module loads the
weights, extracts the features of the labelled training split (``memory``) and the held-out split (``test``) and
runs them. The run store gets, at the checkpoint's step: ``linear_acc``, ``nb_acc``, ``knn_acc``,
``{probe}_acc@{n}`` (+ ``_std``) for n labels per class, ``fewshot_5w1s_acc`` / ``fewshot_5w5s_acc`` (+ ``_ci95``),
``linear_acc_block{i}``, ``rankme`` (+ ``rankme_n``), the spectrum as an ``eval_spectrum`` array artifact (the
training's own ``spectrum`` artifacts stay as they are) and the whole table as a ``probes`` artifact.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.config import ConfigError
from workbench.diagnostics.arrays import as_numpy
from workbench.diagnostics.budgets import BUDGETS, budget_key, label_budgets
from workbench.diagnostics.fewshot import fewshot_accuracy
from workbench.diagnostics.linear import linear_probe
from workbench.diagnostics.spectrum import rankme, spectrum
from workbench.engine.config import TrainConfig
from workbench.engine.device import resolve_device
from workbench.engine.features import extract_features
from workbench.nn.backbones import block_count
from workbench.runs.store import CHECKPOINT, RunWriter

PROBES = ("linear", "nb", "budgets", "fewshot", "blocks", "spectrum")
EVAL_SPECTRUM = "eval_spectrum"  # its own artifact kind: the training's "spectrum" at the same step stays
FEWSHOT_SHOTS = (1, 5)


def parse_probes(probes) -> tuple[str, ...]:
    """``"linear,nb"`` or ``["linear", "nb"]`` -> ``("linear", "nb")``; ``None`` or ``"all"`` -> every probe.
    Unknown names are an error that lists the allowed ones."""
    text = probes if probes is None or isinstance(probes, str) else ",".join(probes)
    if text is None or text.strip() in ("", "all"):
        return PROBES
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in names if p not in PROBES]
    if unknown:
        raise ConfigError(f"probes: unknown {', '.join(map(repr, unknown))}; allowed: {', '.join(PROBES)} (or all)")
    return names


@dataclass
class Evaluation:
    """What one evaluation found: ``scalars`` (the run-store keys), ``table`` (one row per probe, label budget,
    few-shot setting and block; columns ``key, probe, labels_per_class, block, accuracy, std, ci95, draws,
    seconds``; ``seconds`` the time of that row's fits), the ``spectrum`` and the checkpoint's ``step`` and ``epoch``."""

    scalars: dict[str, float]
    table: pd.DataFrame
    spectrum: np.ndarray | None = None
    step: int = 0
    epoch: int = 0
    run_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def load_representation(run_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                        device: str = "cpu"):
    """``(cfg, method, bundle, state)`` of a representation run, the method in eval mode with the checkpoint's
    weights. Clear errors for a run without a checkpoint and for a low-light run."""
    from workbench.engine.representation import REPRESENTATION

    path = Path(checkpoint) if checkpoint else Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise ConfigError(f"no run at {run_dir} (`workbench runs --runs-dir DIR` lists the runs)")
    if not path.exists():
        raise ConfigError(f"run {run_dir}: no checkpoint at {path}. A run saves one at the end of each epoch: let "
                          "it finish an epoch, or name one with --checkpoint")
    dev = resolve_device(device)
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
        cfg = TrainConfig.from_dict(state["config"])
    except Exception as e:
        raise ConfigError(f"run {run_dir}: cannot read the checkpoint {path} ({type(e).__name__}: {e})") from e
    if cfg.task is not REPRESENTATION:
        raise ConfigError(f"run {run_dir} trained {cfg.method!r}, a low-light enhancement run: the probes (linear, "
                          "naive Bayes, few-shot, spectrum) apply to representation runs. Its evaluation is PSNR/SSIM "
                          "against the reference images, on the app's Curves and Enhancement pages and in "
                          "`workbench enhance`.")
    bundle = cfg.task.load_data(cfg, probe=True)
    method, _ = cfg.task.build_method(cfg, bundle, dev)
    try:
        method.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ConfigError(f"run {run_dir}: the checkpoint does not fit this version's {cfg.method} model "
                          f"({str(e).splitlines()[0]})") from e
    return cfg, method.to(dev).eval(), bundle, state


def evaluate_features(train_x, train_y, test_x, test_y, probes=PROBES, budgets=BUDGETS, draws: int = 5,
                      episodes: int = 600, seed: int = 0, knn_t: float = 0.1, block_features=None,
                      progress: bool = True) -> Evaluation:
    """The probes on given features (no model): ``block_features`` maps a block number to its
    ``(train_x, test_x)``. Used by :func:`evaluate_run` and by the benchmarks and notebooks."""
    from tqdm import tqdm

    probes = parse_probes(probes)
    rows, scalars, seconds = [], {}, {}
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    head = [p for p in ("linear", "nb") if p in probes] + ["knn"]
    chosen = budgets if "budgets" in probes else (None,)
    fits = sum((1 if n is None else draws) for n in chosen) * len(head)
    bar = tqdm(total=fits, desc="label budgets" if "budgets" in probes else "probes", unit="fit",
               disable=not progress, leave=False)
    t0 = time.perf_counter()
    for rec in label_budgets(train_x, train_y, test_x, test_y, chosen, head, draws, seed, knn_t=knn_t,
                             progress=bar):
        key = budget_key(rec["probe"], rec["labels_per_class"])
        scalars[key] = rec["accuracy"]
        if rec["labels_per_class"] is not None:
            scalars[f"{key}_std"] = rec["std"]
        rows.append(dict(key=key, block=None, ci95=None, **rec))
    bar.close()
    seconds["budgets" if "budgets" in probes else "linear"] = time.perf_counter() - t0
    if "fewshot" in probes:
        t0 = time.perf_counter()
        base = as_numpy(train_x).mean(0)
        for shots in FEWSHOT_SHOTS:
            t1 = time.perf_counter()
            try:
                r = fewshot_accuracy(test_x, test_y, base, n_shot=shots, episodes=episodes, seed=seed)
            except ValueError as e:  # too few classes or images per class in this test split
                rows.append(dict(key=f"fewshot_5w{shots}s_acc", probe="fewshot 5-way", labels_per_class=shots,
                                 accuracy=float("nan"), note=str(e)))
                continue
            scalars[r.key], scalars[f"{r.key}_ci95"] = r.accuracy, r.ci95
            rows.append(dict(key=r.key, probe=f"fewshot {r.n_way}-way", labels_per_class=shots, block=None,
                             accuracy=r.accuracy, std=float(r.episode_accuracies.std()), ci95=r.ci95,
                             draws=episodes, seconds=time.perf_counter() - t1))
        seconds["fewshot"] = time.perf_counter() - t0
    if "blocks" in probes and block_features:
        t0 = time.perf_counter()
        for block, (bx, tx) in tqdm(sorted(block_features.items()), desc="block-wise probes", unit="block",
                                    disable=not progress, leave=False):
            t1 = time.perf_counter()
            acc = linear_probe(bx, train_y, tx, test_y, seed=seed).accuracy
            key = f"linear_acc_block{block}"
            scalars[key] = acc
            rows.append(dict(key=key, probe="linear", labels_per_class=None, block=block, accuracy=acc, draws=1,
                             seconds=time.perf_counter() - t1))
        seconds["blocks"] = time.perf_counter() - t0
    spec = None
    if "spectrum" in probes:
        t0 = time.perf_counter()
        z = torch.as_tensor(as_numpy(train_x, np.float32))
        spec = spectrum(z)
        scalars.update(rankme=rankme(z), rankme_n=float(len(z)))
        seconds["spectrum"] = time.perf_counter() - t0
    table = pd.DataFrame(rows, columns=["key", "probe", "labels_per_class", "block", "accuracy", "std", "ci95",
                                        "draws", "seconds", *(["note"] if any("note" in r for r in rows) else [])])
    table = table.astype({"labels_per_class": float, "block": float, "accuracy": float, "std": float,
                          "ci95": float, "seconds": float})
    return Evaluation(scalars, table, spec, seconds=seconds)


def evaluate_run(run_dir: str | os.PathLike, probes=PROBES, checkpoint: str | os.PathLike | None = None,
                 device: str = "cpu", draws: int = 5, episodes: int = 600, seed: int = 0, write: bool = True,
                 progress: bool = True, batch_size: int = 512) -> Evaluation:
    """Load the run's weights, extract features of its labelled training and held-out splits, run ``probes`` and
    (``write``) add the results to the run's store at the checkpoint's step."""
    probes = parse_probes(probes)
    if draws < 1 or episodes < 1:
        raise ConfigError(f"draws and episodes must be >= 1, got draws={draws}, episodes={episodes}")
    if not 0 <= seed < 2 ** 32:  # numpy's seeds for the label draws and episodes
        raise ConfigError(f"seed must be an integer from 0 to 2^32 - 1, got {seed}")
    cfg, method, bundle, state = load_representation(run_dir, checkpoint, device)
    if not (bundle.memory.has_labels and bundle.test.has_labels):
        raise ConfigError(f"run {run_dir}: dataset {cfg.dataset!r} has no labels, and every probe needs them")
    dev = next(method.parameters()).device
    t0 = time.perf_counter()
    feats = {split: extract_features(method, getattr(bundle, split).images, dev, batch_size=batch_size,
                                     progress=progress, desc=f"features ({split})") for split in ("memory", "test")}
    blocks = {}
    if "blocks" in probes:
        for b in range(1, block_count(method.backbone) + 1):
            blocks[b] = tuple(extract_features(method, getattr(bundle, split).images, dev, block=b,
                                               batch_size=batch_size, progress=progress,
                                               desc=f"block {b} features ({split})")
                              for split in ("memory", "test"))
    extract_s = time.perf_counter() - t0
    result = evaluate_features(feats["memory"], bundle.memory.labels.numpy(), feats["test"],
                               bundle.test.labels.numpy(), probes, draws=draws, episodes=episodes, seed=seed,
                               knn_t=cfg.knn_t, block_features=blocks, progress=progress)
    result.seconds = {"features": extract_s, **result.seconds}
    result.step, result.epoch, result.run_dir = int(state["step"]), int(state["epochs_done"]), Path(run_dir)
    if write:
        write_evaluation(run_dir, result, probes, draws, episodes)
    return result


def write_evaluation(run_dir, result: Evaluation, probes, draws: int, episodes: int) -> None:
    """Add an evaluation to the run's store (scalars at the checkpoint's step, the spectrum and the table as
    artifacts, an event), without touching the run's status: the run may still be training."""
    writer = RunWriter.annotate(run_dir)
    try:
        writer.log(result.step, result.scalars)
        info = {"epoch": result.epoch, "probes": list(probes), "draws": draws, "episodes": episodes,
                "source": "workbench eval", "seconds": result.seconds}
        if result.spectrum is not None:
            writer.add_arrays(result.step, EVAL_SPECTRUM, {**info, "rankme": result.scalars.get("rankme"),
                                                        "n": result.scalars.get("rankme_n")},
                              singular_values=result.spectrum)
        table = result.table.astype(object).where(result.table.notna(), None)
        writer.add_artifact(result.step, "probes", json.dumps(table.to_dict("records")).encode(), ".json", info)
        s = result.scalars
        summary = ", ".join(f"{k} {s[k]:.3f}" for k in ("linear_acc", "nb_acc", "knn_acc", "fewshot_5w5s_acc",
                                                         "rankme") if k in s)
        writer.event(result.step, f"workbench eval (epoch {result.epoch}): {summary}")
    finally:
        writer.close()
