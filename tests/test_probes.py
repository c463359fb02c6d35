"""The probes of issue 13, each against an independent naive implementation (loops over classes and episodes,
numpy's SVD, scikit-learn called directly), and ``workbench eval`` end to end."""
import json
import math

import numpy as np
import pytest
import torch

from workbench.diagnostics.budgets import label_budgets, sample_per_class
from workbench.diagnostics.fewshot import fewshot_accuracy, prepare_features, sample_episodes
from workbench.diagnostics.linear import choose_C, linear_probe
from workbench.diagnostics.naive_bayes import SharedDiagonalGaussianNB, naive_bayes_accuracy
from workbench.diagnostics.spectrum import rankme, spectrum


def blobs(n_per_class=30, classes=4, d=6, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (classes, d))
    scales = rng.uniform(0.5, 2.0, d) * spread
    x = np.concatenate([c + rng.normal(0, 1, (n_per_class, d)) * scales for c in centres])
    y = np.repeat(np.arange(classes), n_per_class)
    p = rng.permutation(len(y))
    return x[p], y[p]


# ---------------------------------------------------------------------------------------------- naive Bayes
def naive_shared_nb_predict(train_x, train_y, test_x):
    """Transcription of the reference's formula, one class and one dimension at a time."""
    classes = sorted(set(train_y.tolist()))
    n, d = train_x.shape
    priors, means, variances = {}, {}, {}
    for c in classes:
        rows = [train_x[i] for i in range(n) if train_y[i] == c]
        priors[c] = len(rows) / n
        means[c] = [sum(r[j] for r in rows) / len(rows) for j in range(d)]
        variances[c] = [sum((r[j] - means[c][j]) ** 2 for r in rows) / len(rows) + 1e-9 for j in range(d)]
    shared = [sum(priors[c] * variances[c][j] for c in classes) for j in range(d)]
    preds = []
    for x in test_x:
        scores = {c: math.log(priors[c]) - 0.5 * sum((x[j] - means[c][j]) ** 2 / shared[j] for j in range(d))
                  for c in classes}
        preds.append(max(scores, key=scores.get))
    return np.array(preds)


def test_naive_bayes_matches_a_loop_over_classes_with_unequal_priors():
    x, y = blobs(n_per_class=25, classes=3, d=5, seed=1, spread=2.0)
    keep = np.flatnonzero((y != 2) | (np.arange(len(y)) % 3 == 0))  # class 2 rarer: the priors matter
    train_x, train_y, test_x = x[keep][:50], y[keep][:50], x[keep][50:]
    ours = SharedDiagonalGaussianNB().fit(train_x, train_y).predict(test_x)
    np.testing.assert_array_equal(ours, naive_shared_nb_predict(train_x, train_y, test_x))


def test_shared_naive_bayes_is_not_scikit_learns_per_class_one():
    """On classes with very different spreads the two variants disagree (shared: linear boundaries)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.2, (200, 2)), rng.normal(0, 3.0, (200, 2))])
    y = np.repeat([0, 1], 200)
    shared = naive_bayes_accuracy(x[::2], y[::2], x[1::2], y[1::2], "shared")
    per_class = naive_bayes_accuracy(x[::2], y[::2], x[1::2], y[1::2], "per_class")
    assert per_class > shared + 0.2  # only quadratic boundaries separate a small blob inside a wide one
    with pytest.raises(ValueError, match="per_class"):
        naive_bayes_accuracy(x, y, x, y, "full")


# ---------------------------------------------------------------------------------------------- linear probe
def test_linear_probe_equals_scikit_learn_called_directly_at_a_fixed_C():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = blobs(n_per_class=40, classes=3, d=8, seed=2, spread=3.0)
    tr, te = slice(0, 80), slice(80, None)
    scaler = StandardScaler().fit(x[tr])
    direct = LogisticRegression(C=0.05, max_iter=1000).fit(scaler.transform(x[tr]), y[tr])
    expected = direct.predict(scaler.transform(x[te]))
    got = linear_probe(x[tr], y[tr], x[te], y[te], Cs=(0.05,))
    np.testing.assert_array_equal(got.predictions, expected)
    assert got.accuracy == pytest.approx((expected == y[te]).mean())


def test_C_is_chosen_on_the_training_labels_only():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = blobs(n_per_class=40, classes=3, d=10, seed=3, spread=4.0)
    tr, te = slice(0, 90), slice(90, None)
    Cs = (1e-3, 1e-1, 10.0)
    # the validation split, by hand: the C with the best held-out accuracy (ties to the smaller C)
    fx, vx, fy, vy = train_test_split(x[tr], y[tr], test_size=0.2, stratify=y[tr], random_state=0)
    scores = []
    for C in Cs:
        s = StandardScaler().fit(fx)
        scores.append((LogisticRegression(C=C, max_iter=1000).fit(s.transform(fx), fy).predict(s.transform(vx))
                       == vy).mean())
    assert choose_C(x[tr], y[tr], Cs)[0] == Cs[int(np.argmax(scores))]
    a = linear_probe(x[tr], y[tr], x[te], y[te], Cs=Cs)
    b = linear_probe(x[tr], y[tr], x[te], np.roll(y[te], 1), Cs=Cs)  # other test labels: the same C
    assert a.C == b.C and a.val_accuracy == b.val_accuracy
    # one label per class: nothing to hold out, so the protocol's default C = 1
    one = np.array([np.flatnonzero(y[tr] == c)[0] for c in range(3)])
    C, val = choose_C(x[tr][one], y[tr][one], Cs)
    assert C == 1.0 and math.isnan(val)


# ---------------------------------------------------------------------------------------------- label budgets
def test_label_budget_subsets_are_balanced_seeded_and_skip_budgets_above_the_smallest_class():
    y = np.repeat(np.arange(3), [12, 7, 20])
    idx = sample_per_class(y, 5, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [5, 5, 5] and len(set(idx)) == 15
    x, yb = blobs(n_per_class=12, classes=3, d=4, seed=4)
    records = label_budgets(x, yb, x, yb, budgets=(1, 5, 20, None), probes=("nb",), draws=4)
    assert [r["labels_per_class"] for r in records] == [1, 5, None]  # 20 > 12 images of the smallest class
    assert records[0]["draws"] == 4 and records[-1]["draws"] == 1 and records[-1]["std"] == 0.0
    # the all-labels record is the plain probe; a budget's mean and std are over the seeded draws
    assert records[-1]["accuracy"] == pytest.approx(naive_bayes_accuracy(x, yb, x, yb))
    again = label_budgets(x, yb, x, yb, budgets=(1, 5, 20, None), probes=("nb",), draws=4)
    timeless = lambda recs: [{k: v for k, v in r.items() if k != "seconds"} for r in recs]  # noqa: E731
    assert timeless(records) == timeless(again)  # seeded draws
    accs = []
    for d in range(4):
        sub = sample_per_class(yb, 5, np.random.default_rng([0, 5, d]))
        accs.append(naive_bayes_accuracy(x[sub], yb[sub], x, yb))
    assert records[1]["accuracy"] == pytest.approx(np.mean(accs)) and records[1]["std"] == pytest.approx(np.std(accs))


# ---------------------------------------------------------------------------------------------- few-shot
def naive_episode(f_support, f_query, max_iter=50):
    """One episode of the protocol in numpy, written from the reference's description."""
    W, S, d = f_support.shape
    q = f_query + (f_support.reshape(-1, d).mean(0) - f_query.mean(0))
    cents = f_support.mean(1)
    assign = None
    for _ in range(max_iter):
        new = np.array([np.argmin([np.linalg.norm(qi - c) for c in cents]) for qi in q])
        if assign is not None and (new == assign).all():
            break
        assign = new
        cents = np.stack([(f_support[w].sum(0) + q[assign == w].sum(0)) / (S + (assign == w).sum())
                          for w in range(W)])
    return assign


@pytest.mark.parametrize("shots", [1, 5])
def test_fewshot_matches_a_loop_over_episodes(shots):
    x, y = blobs(n_per_class=25, classes=7, d=6, seed=5, spread=2.5)
    base = x.mean(0) + 0.3
    got = fewshot_accuracy(x, y, base, n_way=5, n_shot=shots, n_query=15, episodes=40, seed=3)
    support, query = (i.numpy() for i in sample_episodes(y, 5, shots, 15, 40, torch.Generator().manual_seed(3)))
    f = x - base
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    accs = []
    for e in range(40):
        assert len(set(y[support[e, :, 0]])) == 5  # five different classes
        for w in range(5):
            assert set(y[support[e, w]]) == set(y[query[e, w]]) == {y[support[e, w, 0]]}
            assert not set(support[e, w].tolist()) & set(query[e, w].tolist())
        pred = naive_episode(f[support[e]], f[query[e].reshape(-1)])
        accs.append((pred == np.repeat(np.arange(5), 15)).mean())
    np.testing.assert_allclose(got.episode_accuracies, accs, atol=1e-6)
    assert got.accuracy == pytest.approx(np.mean(accs), abs=1e-6)
    assert got.ci95 == pytest.approx(1.96 * np.std(accs) / math.sqrt(40), abs=1e-6)
    assert prepare_features(x, base).norm(dim=1).sub(1).abs().max() < 1e-5


def test_fewshot_says_what_is_missing():
    x, y = blobs(n_per_class=10, classes=6, d=3)
    with pytest.raises(ValueError, match="5 classes with at least 16 images"):
        fewshot_accuracy(x, y, x.mean(0), n_shot=1, n_query=15)


# ---------------------------------------------------------------------------------------------- spectrum
def test_rankme_and_spectrum_against_numpy_svd():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(300, 12)) @ np.diag([5, 4, 3, 2, 1, .5, .1, .1, .01, .01, .01, .01])
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + 1e-7
    assert rankme(torch.tensor(z)) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-4)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    zn = zn - zn.mean(0)
    np.testing.assert_allclose(spectrum(torch.tensor(z)), np.linalg.svd(zn, compute_uv=False) / math.sqrt(300),
                               rtol=1e-4, atol=1e-6)
    collapsed = np.outer(rng.normal(size=300), rng.normal(size=12))
    assert rankme(torch.tensor(collapsed)) < 1.01


# ---------------------------------------------------------------------------------------------- end to end
def test_online_probe_does_not_change_what_the_method_learns(quick):
    """The online probe trains on detached features with its own optimiser: the same seed gives the same weights
    with and without it, while it does log an accuracy."""
    from workbench.engine.callbacks import EpochEvaluation, LiveDiagnostics, OnlineLinearProbe
    from workbench.engine.trainer import Trainer
    from workbench.runs import RunReader

    cfg = quick(method="simclr", epochs=2, subset=256, batch_size=64)
    with_probe = Trainer(cfg.replace(run_name="with"))
    assert any(isinstance(c, OnlineLinearProbe) for c in with_probe.callbacks)
    with_probe.fit()
    without = Trainer(cfg.replace(run_name="without"))
    without.callbacks = [c for c in without.callbacks if isinstance(c, (EpochEvaluation, LiveDiagnostics))]
    without.fit()
    for (name, a), b in zip(with_probe.method.state_dict().items(), without.method.state_dict().values()):
        assert torch.equal(a, b), name
    with RunReader(with_probe.run_dir) as r:
        acc = r.scalar("online_linear_acc")
        assert len(acc) == 2 and acc.between(0, 1).all()
        assert r.scalar("rankme").notna().all() and len(r.artifacts("spectrum")) == 3  # before + 2 epochs


def test_eval_end_to_end_writes_every_key_and_beats_random_init(runs_dir):
    from workbench.cli import main
    from workbench.diagnostics.linear import linear_probe
    from workbench.engine.build import build
    from workbench.engine.config import TrainConfig
    from workbench.engine.features import extract_features
    from workbench.runs import RunReader

    assert main(["train", "--method", "simclr", "--dataset", "digits", "--epochs", "5", "--runs-dir",
                 str(runs_dir), "--run-name", "s", "--progress", "false"]) == 0
    run = runs_dir / "s"
    checkpoint = (run / "checkpoints" / "last.pt").read_bytes()
    with RunReader(run) as r:
        status_before, step, meta_before = r.status().state, r.last_step(), r.meta
    assert main(["eval", "s", "--runs-dir", str(runs_dir), "--draws", "2", "--episodes", "30"]) == 0
    assert (run / "checkpoints" / "last.pt").read_bytes() == checkpoint  # eval never writes weights
    with RunReader(run) as r:
        s = r.last_scalars()
        assert r.status().state == status_before == "finished" and r.last_step() == step  # progress untouched
        assert {k: r.meta[k] for k in ("pid", "step", "heartbeat")} == {k: meta_before[k] for k in
                                                                         ("pid", "step", "heartbeat")}
        keys = ["linear_acc", "nb_acc", "knn_acc", "fewshot_5w1s_acc", "fewshot_5w5s_acc", "fewshot_5w1s_acc_ci95",
                "fewshot_5w5s_acc_ci95", "rankme", *[f"linear_acc_block{i}" for i in range(1, 5)],
                *[f"{p}_acc@{n}" for p in ("linear", "nb", "knn") for n in (1, 2, 5, 10, 20, 50)]]
        assert not [k for k in keys if k not in s]
        assert r.scalars(["linear_acc"]).index.tolist() == [step]
        table = json.loads((run / r.artifacts("probes")["path"].iloc[-1]).read_text())
        assert {row["key"] for row in table} >= set(keys) - {"rankme", "fewshot_5w1s_acc_ci95",
                                                             "fewshot_5w5s_acc_ci95"}
        assert "workbench eval" in " ".join(r.events()["message"])
    # the same probe on the same architecture at its initial weights
    cfg = TrainConfig(method="simclr", dataset="digits")
    parts = build(cfg, torch.device("cpu"))
    parts.method.eval()
    b = parts.bundle
    feats = [extract_features(parts.method, split.images, torch.device("cpu")) for split in (b.memory, b.test)]
    random_init = linear_probe(feats[0], b.memory.labels, feats[1], b.test.labels).accuracy
    assert s["linear_acc"] >= 0.90 and s["linear_acc"] > random_init, (s["linear_acc"], random_init)


def test_eval_errors_name_the_problem(runs_dir, capsys):
    from workbench.cli import main
    from workbench.engine.config import TrainConfig

    assert main(["eval", "nothing", "--runs-dir", str(runs_dir)]) == 2
    assert "no run at" in capsys.readouterr().err
    (runs_dir / "fresh").mkdir()
    assert main(["eval", "fresh", "--runs-dir", str(runs_dir)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    low = runs_dir / "low" / "checkpoints"
    low.mkdir(parents=True)
    torch.save({"config": TrainConfig(method="zerodce").to_dict(), "model": {}, "step": 0, "epochs_done": 0},
               low / "last.pt")
    assert main(["eval", "low", "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert "low-light" in err and "PSNR/SSIM" in err
    assert main(["eval", "low", "--runs-dir", str(runs_dir), "--probes", "linear,svm"]) == 2
    assert "unknown 'svm'; allowed: linear, nb, budgets, fewshot, blocks, spectrum" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [dict(seed=-1), dict(seed=2 ** 32), dict(draws=0), dict(episodes=-5)])
def test_eval_settings_out_of_range_are_named_before_any_work(bad, tmp_path):
    """A negative seed ended deep in numpy ("expected non-negative integer") after the features were extracted."""
    from workbench.config import ConfigError
    from workbench.engine.evaluate import evaluate_run

    name = next(iter(bad))
    with pytest.raises(ConfigError, match="must be") as e:
        evaluate_run(tmp_path / "no-run-needed", **bad)
    assert f"{name}={bad[name]}" in str(e.value) or f"got {bad[name]}" in str(e.value)
