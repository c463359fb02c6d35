"""The method zoo: losses against naive loops, Sinkhorn marginals, queue, momentum, split-BN, rotations,
and learning checks that could fail."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import workbench
from workbench.losses.infonce import extrapolate_positives, info_nce, interpolate_negatives
from workbench.losses.swav import sinkhorn_knopp, swapped_prediction
from workbench.config import ConfigError
from workbench.methods.rotnet import ROTATIONS, rotate_batch
from workbench.nn.momentum import FeatureQueue, momentum_update
from workbench.nn.splitbn import SplitBatchNorm
from workbench.runs import RunReader


def unit(*shape, seed=0, dtype=torch.float64):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=-1)


def test_info_nce_matches_a_loop_with_gradients():
    q = unit(6, 8, seed=1).requires_grad_()
    k, queue, tau = unit(6, 8, seed=2), unit(20, 8, seed=3), 0.2
    loss, pos, neg = info_nce(q, k, queue, tau)
    (g,) = torch.autograd.grad(loss, [q])
    q2 = q.detach().clone().requires_grad_()
    ref = 0
    for i in range(6):
        num = torch.exp(q2[i] @ k[i] / tau)
        den = num + sum(torch.exp(q2[i] @ n / tau) for n in queue)
        ref = ref - torch.log(num / den) / 6
    (g2,) = torch.autograd.grad(ref, [q2])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(g.double(), g2, rtol=1e-4, atol=1e-6)
    assert pos.shape == (6,) and neg.shape == (6, 20)


def test_feature_transformation_formulas():
    q, k, n = unit(4, 8, seed=1), unit(4, 8, seed=2), unit(10, 8, seed=3)
    qt, kt, lam = extrapolate_positives(q, k, 2.0, torch.Generator().manual_seed(0))
    assert 1 < lam < 2
    torch.testing.assert_close(qt, lam * q + (1 - lam) * k)
    torch.testing.assert_close(kt, lam * k + (1 - lam) * q)
    assert ((qt * kt).sum(1) < (q * k).sum(1)).all()  # extrapolated positives are harder
    nt, lam_n = interpolate_negatives(n, 1.6, torch.Generator().manual_seed(0))
    assert 0 < lam_n < 1
    # every mixed negative is a convex combination of two queue entries: it lies inside the unit ball
    assert (nt.norm(dim=1) <= 1 + 1e-9).all() and not torch.equal(nt, n)
    again = interpolate_negatives(n, 1.6, torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(nt, again)  # reproducible under a seed


def naive_sinkhorn(scores, eps, iters):
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        for r in range(k):
            q[r] /= q[r].sum() * k
        for c in range(b):
            q[:, c] /= q[:, c].sum() * b
    return q.T


def test_sinkhorn_matches_naive_and_has_the_marginals():
    scores = unit(16, 8, seed=0).numpy() @ unit(5, 8, seed=1).numpy().T  # B=16, K=5
    ours = sinkhorn_knopp(torch.tensor(scores), eps=0.05, iters=3, scaled=False).numpy()
    np.testing.assert_allclose(ours, naive_sinkhorn(scores, 0.05, 3), rtol=1e-5)
    np.testing.assert_allclose(ours.sum(1), 1 / 16, rtol=1e-5)  # each sample carries 1/B
    many = sinkhorn_knopp(torch.tensor(scores), eps=0.05, iters=200, scaled=False).numpy()
    np.testing.assert_allclose(many.sum(0), 1 / 5, rtol=1e-3)  # each prototype gets 1/K at convergence
    codes = sinkhorn_knopp(torch.tensor(scores), eps=0.05, iters=3).numpy()
    np.testing.assert_allclose(codes.sum(1), 1.0, rtol=1e-5)


def test_sinkhorn_is_stable_for_tiny_eps():
    scores = unit(64, 16, seed=0, dtype=torch.float32) @ unit(32, 16, seed=1, dtype=torch.float32).T
    codes = sinkhorn_knopp(scores, eps=1e-3, iters=3)  # exp(1/1e-3) overflows without the max shift
    assert torch.isfinite(codes).all()


def test_swapped_prediction_matches_a_loop():
    codes = torch.softmax(torch.randn(5, 7, generator=torch.Generator().manual_seed(0)), 1)
    scores = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    ref = -sum(sum(codes[b, k] * torch.log(torch.softmax(scores[b] / 0.1, 0)[k]) for k in range(7))
               for b in range(5)) / 5
    assert swapped_prediction(codes, scores, 0.1).item() == pytest.approx(ref.item(), rel=1e-5)


def test_queue_is_a_ring_buffer():
    q = FeatureQueue(2, 5, random_init=False)
    assert len(q.features()) == 0
    q.enqueue(torch.tensor([[1.0, 0], [2, 0], [3, 0]]))
    assert q.features()[:, 0].tolist() == [1, 2, 3]
    q.enqueue(torch.tensor([[4.0, 0], [5, 0], [6, 0]]))  # wraps: 6 overwrites the oldest (1)
    assert q.keys[:, 0].tolist() == [6, 2, 3, 4, 5] and int(q.ptr) == 1 and len(q.features()) == 5
    q.enqueue(torch.arange(14.0).view(7, 2))  # more than the size: the newest 5 are kept
    assert sorted(q.keys[:, 0].tolist()) == [4, 6, 8, 10, 12]
    full = FeatureQueue(3, 4)
    assert len(full.features()) == 4 and torch.allclose(full.keys.norm(dim=1), torch.ones(4))


def test_momentum_update():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w_t, w_o = target.weight.detach().clone(), online.weight.detach().clone()
    momentum_update(online, target, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * w_t + 0.1 * w_o)
    momentum_update(online, target, 1.0)
    torch.testing.assert_close(target.weight, 0.9 * w_t + 0.1 * w_o)  # m = 1: frozen
    momentum_update(online, target, 0.0)
    torch.testing.assert_close(target.weight, w_o)  # m = 0: a copy


def test_split_batch_norm_normalises_each_split_on_its_own():
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1
    bn = SplitBatchNorm(3, num_splits=2).train()
    out = bn(x)
    for split in range(2):  # samples i with i % 2 == split form one sub-batch (as in the MoCo demo)
        xs = x[split::2]
        ref = (xs - xs.mean((0, 2, 3), keepdim=True)) / torch.sqrt(xs.var((0, 2, 3), unbiased=False,
                                                                             keepdim=True) + bn.eps)
        torch.testing.assert_close(out[split::2], ref, rtol=1e-4, atol=1e-4)
    bn.eval()
    plain = torch.nn.BatchNorm2d(3).eval()
    plain.load_state_dict({k: v for k, v in bn.state_dict().items()})
    torch.testing.assert_close(bn(x), plain(x))


def test_rotnet_rotations_and_labels():
    x = torch.arange(2 * 1 * 3 * 3.0).view(2, 1, 3, 3)
    rotated, labels = rotate_batch(x, ROTATIONS[4])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    torch.testing.assert_close(rotated[:2], x)
    torch.testing.assert_close(rotated[2:4], torch.rot90(x, 1, dims=(2, 3)))
    torch.testing.assert_close(torch.rot90(rotated[6:], 1, dims=(2, 3)), x)  # 270 + 90 = identity
    two, labels = rotate_batch(x, ROTATIONS[2])  # the paper's 2-rotation row: 0 and 180 degrees
    assert labels.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(two[2:], x.flip(2, 3))


def test_rotnet_eight_rotations_match_scipy_between_the_exact_quarter_turns():
    from scipy import ndimage

    yy, xx = np.mgrid[0:16, 0:16].astype(float)
    img = np.exp(-((yy - 5) ** 2 + (xx - 10) ** 2) / 6)  # a blob away from the centre: the direction shows
    rotated, labels = rotate_batch(torch.tensor(img, dtype=torch.float32)[None, None], ROTATIONS[8])
    assert labels.tolist() == list(range(8))
    for k, angle in enumerate(ROTATIONS[8]):
        ref = ndimage.rotate(img, angle, reshape=False, order=1, mode="constant", cval=0.0)  # counter-clockwise
        tol = 1e-6 if angle % 90 == 0 else 0.02  # quarter turns are exact; bilinear conventions differ slightly
        assert np.abs(rotated[k, 0].numpy() - ref).max() < tol, angle


@pytest.mark.parametrize("rotations", [2, 8])
def test_rotnet_trains_with_two_or_eight_rotations(quick, rotations):
    r = workbench.train(quick(method="rotnet", epochs=1, rotations=rotations, run_name=f"rot{rotations}"))
    with RunReader(r.run_dir) as rd:
        acc = rd.scalar("rotation_acc")
        assert rd.config["rotations"] == rotations and len(acc) == r.step
    state = torch.load(r.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert state["head.weight"].shape[0] == rotations
    with pytest.raises(ConfigError, match=r"rotations=3 .*one of 2, 4, 8"):
        workbench.TrainConfig(method="rotnet", rotations=3)


def test_moco_logs_queue_scores_and_feature_transformation(quick):
    r = workbench.train(quick(method="moco", epochs=1, ft_pos=True, ft_neg=True, queue_size=512, run_name="ft"))
    with RunReader(r.run_dir) as rd:
        keys = set(rd.histogram_keys())
        neg = rd.histograms("neg")
        df = rd.scalars()
    assert {"pos", "neg", "pos_ft", "neg_ft"} <= keys
    assert neg.counts.shape[1] == 100 and (neg.counts.sum(1) == 2 * 128 * 512).all()  # symmetric: 2B queries x K
    assert (df["pos_mean_ft"].dropna() < df["pos_mean"].dropna()).all()  # extrapolation made positives harder
    assert df["lambda_pos"].dropna().between(1, 2).all()


def _learning(quick, name, **kw):
    r = workbench.train(quick(method=name, run_name=name, epochs=30, batch_size=256, log_every=10, probe_size=300, **kw))
    with RunReader(r.run_dir) as rd:
        knn = rd.scalar("knn_acc")
        last = rd.last_scalars()
    print(f"\n{name} on digits, 30 epochs: kNN at random init {knn.iloc[0]:.4f}, trained {knn.iloc[-1]:.4f}, "
          + ", ".join(f"{k} {last[k]:.3f}" for k in ("rotation_acc", "cluster_acc", "cluster_nmi") if k in last))
    return knn.iloc[0], knn.iloc[-1], last


@pytest.mark.slow
def test_moco_learns(quick):
    init, trained, _ = _learning(quick, "moco")
    assert trained >= init + 0.03


@pytest.mark.slow
def test_swav_learns_and_its_clusters_beat_chance(quick):
    # tau 0.2: with 8 px digits and K = 30 the scripts' 0.1 (the default) learns little in 30 epochs (kNN 0.914 from
    # 0.906 at random init, against 0.942 at 0.2, measured at this commit); the README says so
    init, trained, last = _learning(quick, "swav", tau=0.2)
    assert trained >= init + 0.02
    assert last["cluster_nmi"] > 0.4  # 30 prototypes vs 10 classes: chance NMI is near 0
    assert last["prototype_usage"] > 0.5  # no collapse onto a few prototypes


@pytest.mark.slow
def test_rotnet_learns_rotations_and_features(quick):
    init, trained, last = _learning(quick, "rotnet", feature_block=3)
    assert last["rotation_acc"] > 0.6  # chance is 0.25
    assert trained > init


def test_depict_target_matches_its_formula_and_balances_clusters():
    from workbench.methods.depict import depict_target

    p = torch.softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * 2, 1).double()
    q = depict_target(p, "paper")
    for i in range(50):
        raw = [float(p[i, k]) / math.sqrt(float(p[:, k].sum())) for k in range(4)]
        assert q[i].tolist() == pytest.approx([r / sum(raw) for r in raw])
    dec = depict_target(p, "dec")
    assert dec[0].tolist() == pytest.approx((p[0] ** 2 / p.sum(0) / (p[0] ** 2 / p.sum(0)).sum()).tolist())
    # a dominant cluster is discounted: with one cluster holding most mass, the target shrinks its share
    skewed = torch.tensor([[0.6, 0.4]] * 9 + [[0.4, 0.6]], dtype=torch.float64)
    assert depict_target(skewed)[:, 0].mean() < skewed[:, 0].mean()


@pytest.mark.slow
def test_gsimclr_learns(quick):
    init, trained, _ = _learning(quick, "gsimclr")
    assert trained >= init + 0.02


@pytest.mark.slow
def test_depict_clusters_digits(quick):
    r = workbench.train(quick(method="depict", run_name="depict", epochs=30, batch_size=256, probe_size=300))
    with RunReader(r.run_dir) as rd:
        kmeans_at_init = rd.scalar("kmeans_acc").iloc[0]
        acc, nmi = rd.scalar("cluster_acc"), rd.scalar("cluster_nmi")
    print(f"\nDEPICT on digits, 30 epochs: k-means ACC on random-init features {kmeans_at_init:.4f}; DEPICT ACC "
          f"{acc.iloc[-1]:.4f}, NMI {nmi.iloc[-1]:.4f}")
    assert acc.iloc[-1] >= kmeans_at_init + 0.1
    assert nmi.iloc[-1] > 0.5


def test_zoo_runs_each_method_at_its_own_common_defaults(tmp_path, monkeypatch):
    """benchmarks/zoo.py: DEPICT keeps its declared Adam / batch 100 / 120 epochs and its own pre-training; the others
    get the zoo's shared AdamW, batch 256; each row's images/s are counted at the batch it used."""
    import argparse
    import importlib
    from pathlib import Path

    from workbench.methods.depict import DEPICT

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    zoo = importlib.import_module("zoo")
    args = argparse.Namespace(dataset="digits", subset=10000, epochs=100, pretrain_epochs=None)
    d = zoo.zoo_config("depict", args, str(tmp_path))
    assert {k: getattr(d, k) for k in DEPICT.common_defaults} == DEPICT.common_defaults
    assert (d.batch_size, d.optimizer, d.weight_decay, d.epochs) == (100, "adam", 0.0, 120)
    assert d.pretrain_epochs == 60  # DEPICT's own, not a zoo-wide 1
    s = zoo.zoo_config("simclr", args, str(tmp_path))
    assert (s.batch_size, s.optimizer, s.lr, s.weight_decay, s.epochs) == (256, "adamw", 1e-3, 1e-4, 100)
    g = zoo.zoo_config("gsimclr", argparse.Namespace(**{**vars(args), "pretrain_epochs": 2.0}), str(tmp_path))
    assert g.pretrain_epochs == 2.0 and g.batch_size == 256
    r = zoo.Result("x", steps=10, train_s=1.0, batch=d.batch_size)
    assert r.rate_overall == pytest.approx(1000.0)
    assert zoo.row(r)[1] == 100 and "adam" in zoo.row(zoo.Result("x", optimizer="adam lr 0.001 wd 0"))[2]
