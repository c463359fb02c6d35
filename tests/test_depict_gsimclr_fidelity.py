"""DEPICT and G-SimCLR against independent transcriptions of their official code (issue 12, items 4 and 5).

DEPICT (``herandy/DEPICT``, ``functions.py``): the target is built from the clean soft assignments of the WHOLE
training set (``y_prob ** 2 / cluster_frequency``, rows normalised) once per epoch and held for the epoch; training
stops rebuilding it when successive targets differ by a mean squared error < 1e-7; the reconstruction is
layer-wise (``loss0 + 0.1 loss1 + 0.1 loss2``); the corruption is dropout; the head starts as the unit-norm k-means
centroids (bias 0) trained by cross-entropy on the k-means labels (``train_fn_init``).
G-SimCLR (``SimCLR_Pseudo_Labels_Training.ipynb``, ``Autoencoder.ipynb``): batches follow the within-cluster rank,
so each image is seen once per epoch with one image per pseudo-cluster per batch; ``GaussianNoise(1e-2)`` on [0, 1]
images; k-means on the raw pooled latents.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from workbench.data.views import ContrastiveViews, ViewConfig
from workbench.engine import Callback
from workbench.methods.depict import DEPICT
from workbench.methods.gsimclr import GSimCLR
from workbench.nn import SmallConvNet
from workbench.runs import RunReader

MEAN, STD = (0.5,), (0.25,)


def blobs(n_per=16, k=3, size=8, seed=0):
    """``k`` distinct 8x8 prototypes plus a little noise, ``uint8``: clusters any k-means finds."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(k, 1, size, size, generator=g) * 255
    y = torch.arange(k).repeat_interleave(n_per)
    x = protos[y] + 8 * torch.randn(len(y), 1, size, size, generator=g)
    return x.clamp(0, 255).to(torch.uint8), y


def views():
    return ContrastiveViews(ViewConfig(size=8), mean=MEAN, std=STD)


def tiny_depict(images, k=3, pretrain_steps=0):
    torch.manual_seed(0)
    m = DEPICT(SmallConvNet(1), views(), images, n_clusters=k, size=8, pretrain_steps=pretrain_steps)
    m.dropouts = ()  # no corruption: the corrupted path equals the clean one and the loss can be recomputed
    return m


def official_target(y_prob: np.ndarray) -> np.ndarray:
    """``train_RLC``: ``y_prob ** 2 / cluster_frequency``, then each row divided by its sum."""
    cluster_frequency = np.sum(y_prob, axis=0)
    y_prob = y_prob ** 2 / cluster_frequency
    return np.transpose(y_prob.T / np.sum(y_prob, axis=1))


@torch.no_grad()
def clean_whole_set(m, images):
    """Embeddings and soft assignments of every training image, deterministic (eval mode)."""
    net = copy.deepcopy(m).eval()
    z = net.embed_clusters(net.backbone(net.views.prepare(images)))
    return z.double().numpy(), torch.softmax(net.head(z), 1).double().numpy()


@torch.no_grad()
def train_mode_log_p(m, images):
    net = copy.deepcopy(m).train()
    return F.log_softmax(net.head(net.embed_clusters(net.backbone(net.views.prepare(images)))), 1).double()


def test_depict_target_is_built_over_the_whole_set_once_per_epoch_and_held():
    images, _ = blobs()
    m = tiny_depict(images)
    m.init_epochs = 0  # straight to the DEPICT targets after the first clustering
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(0)
    order = m.batch_order(4, 12, g)
    assert order is not None, "DEPICT must see the epoch's order to hold a whole-set target for the epoch"
    assert sorted(order.flatten().tolist()) == list(range(48))
    q_ref = torch.as_tensor(official_target(clean_whole_set(m, images)[1]))
    for s, rows in enumerate(order):
        expected = -(q_ref[rows] * train_mode_log_p(m, images[rows])).sum(1).mean()
        out = m.step(images[rows], s, g)
        assert out.logs["cluster_loss"] == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    # the network moved during the epoch, yet every step used the target of the epoch's start
    q_now = official_target(clean_whole_set(m, images)[1])
    assert np.mean((q_now - q_ref.numpy()) ** 2) > 1e-7


def test_depict_logs_the_share_of_images_its_clustering_stage_moved_off_the_first_clustering():
    """``moved_from_init``: the clean head's argmax over the whole training set against the first clustering's labels
    (which set the head's cluster ids), recomputed here from a deep copy of the network."""
    images, _ = blobs()
    m = tiny_depict(images)
    m.init_epochs = 0
    g = torch.Generator().manual_seed(0)
    m.batch_order(4, 12, g)  # the first clustering, then the first target
    assert m.epoch_logs["moved_from_init"] == pytest.approx(
        np.mean(clean_whole_set(m, images)[1].argmax(1) != m.labels.numpy()))
    m.labels[:5] = (m.labels[:5] + 1) % 3  # a first clustering the head disagrees with on at least 5 images
    m.batch_order(4, 12, g)
    moved = np.mean(clean_whole_set(m, images)[1].argmax(1) != m.labels.numpy())
    assert moved >= 5 / 48 and m.epoch_logs["moved_from_init"] == pytest.approx(moved)


def test_depict_target_change_is_the_official_mse_and_convergence_stops_rebuilding():
    images, _ = blobs()
    m = tiny_depict(images)
    m.init_epochs = 0
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)

    def epoch(train: bool):
        order = m.batch_order(4, 12, g)
        q = official_target(clean_whole_set(m, images)[1])
        logs = []
        m.train(train)  # eval mode: the steps leave the network as it is (no BatchNorm statistics updated)
        for rows in order:
            out = m.step(images[rows], int(m.steps_done), g)
            logs.append(out)
            if train:
                opt.zero_grad()
                out.loss.backward()
                opt.step()
        m.train()
        return q, logs

    q0, outs = epoch(train=True)  # the official previous target starts at zeros
    assert outs[0].logs["target_change"] == pytest.approx(np.mean(q0 ** 2), rel=1e-5)
    q1, outs = epoch(train=False)
    assert outs[0].logs["target_change"] == pytest.approx(np.mean((q1 - q0) ** 2), rel=1e-4)
    assert outs[0].logs["target_change"] > 1e-7 and not any(o.notes for o in outs)
    _, outs = epoch(train=False)  # nothing changed: mean squared change 0 < 1e-7
    assert outs[0].logs["target_change"] < 1e-7
    assert any("converged" in n for n in outs[0].notes)
    held = m.q.clone()
    epoch(train=True)
    epoch(train=False)
    torch.testing.assert_close(m.q, held)  # converged: no more rebuilding


def test_depict_reconstructs_every_layer_with_the_official_weights():
    images, _ = blobs()
    m = tiny_depict(images, pretrain_steps=10**6)
    captured, decoded = [], []
    hooks = [mod.register_forward_hook(lambda _m, _i, o: captured.append(o.detach().clone()))
             for mod in m.backbone.features if isinstance(mod, torch.nn.ReLU)]
    hooks.append(m.decoder.register_forward_hook(lambda _m, _i, o: decoded.append([t.detach() for t in o])))
    out = m.step(images[:16], 0, torch.Generator().manual_seed(0))
    for h in hooks:
        h.remove()
    x = m.views.prepare(images[:16])
    clean = captured[:4]  # the first pass through the encoder is the clean one
    x_hat, *hidden = decoded[0]
    assert [d.shape for d in hidden] == [e.shape for e in clean]
    expected = F.mse_loss(x_hat, x) + sum(0.1 * F.mse_loss(d, e) for d, e in zip(hidden, clean))
    assert out.logs["reconstruction"] == pytest.approx(float(expected), rel=1e-5)
    assert out.loss.item() == pytest.approx(float(expected), rel=1e-5)


def test_depict_batchnorm_running_statistics_come_from_the_clean_pass_only():
    """Eval mode (the whole-set targets, the held-out scores) normalises with batch-norm's running statistics; the
    corrupted pass must not blend dropout's statistics into them. After a training step they equal the update of a
    single clean forward pass of the same batch (the official encoder has no batch-norm; the backbone at 8 px has)."""
    images, _ = blobs()
    torch.manual_seed(0)
    m = DEPICT(SmallConvNet(1), views(), images, n_clusters=3, size=8, pretrain_steps=10**6)
    assert any(r > 0 for r in m.dropouts)  # the default corruption
    norms = lambda net: [x for x in net.modules() if isinstance(x, torch.nn.BatchNorm2d)]  # noqa: E731
    clean = copy.deepcopy(m.backbone).train()
    with torch.no_grad():
        clean(m.views.prepare(images[:16]))
    m.step(images[:16], 0, torch.Generator().manual_seed(0))
    assert len(norms(m.backbone)) == 4
    for got, want in zip(norms(m.backbone), norms(clean)):
        torch.testing.assert_close(got.running_mean, want.running_mean)
        torch.testing.assert_close(got.running_var, want.running_var)
        assert got.momentum == want.momentum == 0.1  # restored after the corrupted pass


def test_depict_hidden_reconstruction_targets_carry_their_gradient_as_officially():
    """``build_MdA``: ``tar1 = get_output(l_e1, deterministic=True)`` is a Theano expression of the encoder's
    weights, so ``loss1 = 0.1 ||rec1 - tar1||^2`` also pulls the encoder's features towards their reconstruction.
    Transcribed here with autograd on both sides; a target held without gradient gives another encoder gradient."""
    from workbench.nn.autoencoders import encode_blocks

    images, _ = blobs()
    m = tiny_depict(images, pretrain_steps=10**6)  # no dropout: the corrupted path is the clean one
    ref = copy.deepcopy(m)
    m.step(images[:16], 0, torch.Generator().manual_seed(0)).loss.backward()
    x = ref.views.prepare(images[:16])
    blocks, h = encode_blocks(ref.backbone, x)
    x_hat, *hidden = ref.decoder(ref.embed_clusters(h), [tuple(b.shape[1:]) for b in blocks] + [tuple(x.shape[1:])])
    (F.mse_loss(x_hat, x) + sum(0.1 * F.mse_loss(d, e) for d, e in zip(hidden, blocks))).backward()
    first = lambda net: next(p for p in net.backbone.parameters())  # noqa: E731  the first conv's weight
    torch.testing.assert_close(first(m).grad, first(ref).grad, rtol=1e-4, atol=1e-6)


def test_depict_official_encoder_keeps_an_embedding_that_separates_images():
    """The official encoder (no batch-norm) on 16 px digits, 60 pre-training steps at the default lr: the tanh
    embedding still varies across images. With the hidden targets held without gradient its features grew until
    every image had the same saturated z (spread 0.0000, all units at +-1 by step 20)."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images[:400] * 255 / 16).round().to(torch.uint8).unsqueeze(1)
    torch.manual_seed(0)
    m = DEPICT(SmallConvNet(1), ContrastiveViews(ViewConfig(size=16), mean=(0.3,), std=(0.4,)), x, n_clusters=10,
               size=16, encoder="official", pretrain_steps=10**6)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(60):
        opt.zero_grad()
        m.step(x[torch.randperm(len(x), generator=g)[:100]], step, g).loss.backward()
        opt.step()
    z = m.whole_set()[0]
    assert z.std(0).mean() > 0.1  # images still differ in the embedding
    assert (z.abs() > 0.99).float().mean() < 0.5  # and most of its units are not saturated


def test_depict_corrupts_with_dropout():
    images = torch.full((48, 1, 8, 8), 255, dtype=torch.uint8)
    m = tiny_depict(images, pretrain_steps=10**6)
    m.dropouts = (0.1, 0.1, 0.0)  # the official --dropouts
    seen = []
    hook = m.backbone.features[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    m.step(images, 0, torch.Generator().manual_seed(0))
    hook.remove()
    clean_value = (1 - MEAN[0]) / STD[0]
    assert any(torch.allclose(s, torch.full_like(s, clean_value)) for s in seen)  # the clean path
    noisy = [s for s in seen if not torch.allclose(s, torch.full_like(s, clean_value))]
    assert len(noisy) == 1
    dropped = (noisy[0] == 0).double().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.03)
    kept = noisy[0][noisy[0] != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, clean_value / 0.9))


def test_depict_head_starts_from_kmeans_and_is_first_trained_on_its_labels():
    images, y = blobs()
    m = tiny_depict(images)
    m.init_epochs = 1
    m.init_clustering = "kmeans"  # the official choice for MNIST-full (AC-PIC for the small sets: tested below)
    g = torch.Generator().manual_seed(0)
    order = m.batch_order(4, 12, g)
    z, _ = clean_whole_set(m, images)
    ref = KMeans(3, n_init=10, random_state=0).fit_predict(z)
    labels = m.labels.numpy()
    assert normalized_mutual_info_score(ref, labels) == pytest.approx(1.0)
    for k in range(3):
        c = z[labels == k].mean(0)
        np.testing.assert_allclose(m.head.weight[k].detach().numpy(), c / np.linalg.norm(c), rtol=1e-4, atol=1e-5)
    assert torch.count_nonzero(m.head.bias) == 0
    rows = order[0]
    expected = F.nll_loss(train_mode_log_p(m, images[rows]), torch.as_tensor(labels[rows.numpy()]))
    out = m.step(images[rows], 0, g)
    assert out.logs["cluster_loss"] == pytest.approx(float(expected), rel=1e-4)
    for s in range(1, 4):
        m.step(images[order[s]], s, g)
    m.batch_order(4, 12, g)  # after init_epochs epochs: the DEPICT targets
    out = m.step(images[m.order[0]], 4, g)
    assert out.logs["stage"] == 2.0 and "target_change" in out.logs


@pytest.mark.parametrize("choice", ["auto", "acpic"])
def test_depict_auto_init_replaces_a_degenerate_acpic_by_kmeans(monkeypatch, choice):
    """AC-PIC can leave a few outliers as clusters of their own (on a 10,000-image Fashion-MNIST subset: five
    clusters of 2-3 images and one of 3,012); under ``--init-clustering auto`` a cluster below 10% of the balanced
    size n / K sends the initialisation to k-means (the official choice for all but USPS and MNIST-test), and an
    event says so. An AC-PIC result without such a cluster is kept, and ``acpic`` asked for by name is kept."""
    import workbench.methods.depict as depict_module

    images, _ = blobs(n_per=20)  # 60 images, 3 clusters: balanced size 20, the floor 2
    degenerate = np.r_[np.zeros(58, int), [1], [2]]  # clusters of 58, 1 and 1 image
    fine = np.repeat([0, 1, 2], [30, 20, 10])  # the smallest, 10 images, is half the balanced size: kept
    for acpic_labels, fallback in [(degenerate, choice == "auto"), (fine, False)]:
        monkeypatch.setattr(depict_module, "acpic", lambda x, k, labels=acpic_labels: labels.copy())
        torch.manual_seed(0)
        m = DEPICT(SmallConvNet(1), views(), images, n_clusters=3, size=8, pretrain_steps=0, init_clustering=choice)
        assert m.init_clustering == "acpic"  # 60 images: AC-PIC, as for the official small sets
        m.batch_order(4, 12, torch.Generator().manual_seed(0))
        z, _ = clean_whole_set(m, images)
        if fallback:
            ref = KMeans(3, n_init=m.kmeans_restarts, random_state=0).fit_predict(z)
            np.testing.assert_array_equal(m.labels.numpy(), ref)
            assert any("k-means (AC-PIC left clusters of [1, 1, 58]" in n for n in m.epoch_notes)
        else:
            np.testing.assert_array_equal(m.labels.numpy(), acpic_labels)
            assert any("initialised by AC-PIC" in n for n in m.epoch_notes)


def test_depict_init_stage_early_stops_on_the_held_out_nmi_and_keeps_the_best_weights(monkeypatch):
    """``train_RLC``'s init stage: a 10% split held out of the init batches, the NMI between the head's clean
    predictions there and the initial labels after each epoch (no class labels), stop once it has not improved for
    more than ``patience`` epochs, and restore the best epoch's weights."""
    from workbench.methods.depict import DEPICT_STAGE, INIT

    images, _ = blobs()
    m = tiny_depict(images)
    m.init_epochs, m.init_patience, m.init_clustering = 50, 2, "kmeans"
    g = torch.Generator().manual_seed(0)
    order = m.batch_order(4, 10, g)  # clustering, then the init stage's first epoch
    assert int(m.stage) == INIT
    held = set(m.holdout.nonzero().flatten().tolist())
    assert len(held) == 5 and not held & set(order.flatten().tolist())  # round(0.1 * 48), never trained on
    real = m.holdout_nmi()  # the head starts at the clustering's centroids: it agrees with its labels
    assert real == pytest.approx(normalized_mutual_info_score(
        m.labels[sorted(held)].numpy(), m.head(m.whole_set()[0][sorted(held)]).argmax(1).numpy()))
    scores = iter([0.7, 0.6, 0.65, 0.7, 0.9])  # after epochs 1, 2, ...: best at 1, then 3 epochs without gain
    monkeypatch.setattr(m, "holdout_nmi", lambda: next(scores))
    m.init_best.fill_(0.5)
    heads = []
    for epoch in range(1, 6):
        with torch.no_grad():
            m.head.weight.add_(1.0)  # stands for an epoch of training
        heads.append(m.head.weight.detach().clone())
        order = m.batch_order(4, 10, g)
        if int(m.stage) == INIT:
            assert not held & set(order.flatten().tolist())
        else:
            break
    assert epoch == 4 and int(m.stage) == DEPICT_STAGE
    torch.testing.assert_close(m.head.weight.detach(), heads[0])  # the best epoch's weights
    assert len(set(m.order.flatten().tolist())) == 40  # the DEPICT stage: a permutation of all images again


@torch.no_grad()
def held_out_reconstruction(m, images):
    """``train_MdA_val``'s ``validation_error``: ``loss_recons_clean`` (no dropout) on the held-out images, the
    encoder's block outputs collected by hand from a copy in eval mode."""
    net = copy.deepcopy(m).eval()
    x = net.views.prepare(images[net.holdout])
    blocks, h = [], x
    for layer in net.backbone.features:
        h = layer(h)
        if isinstance(layer, torch.nn.ReLU):
            blocks.append(h)
    z = torch.tanh(net.embedding(net.backbone.pool(h).flatten(1)))
    x_hat, *hidden = net.decoder(z, [tuple(b.shape[1:]) for b in blocks] + [tuple(x.shape[1:])])
    return float(((x_hat - x) ** 2).mean() + sum(0.1 * ((d - e) ** 2).mean() for d, e in zip(hidden, blocks)))


def test_depict_pretraining_early_stops_on_the_held_out_reconstruction_and_keeps_the_best_weights(monkeypatch):
    """``--pretrain-patience`` (``train_MdA_val``): a 10% split left out of pre-training, its clean reconstruction
    loss after each epoch, stop once it has not improved for more than ``patience`` epochs and restore the best
    epoch's weights; the init stage's early stop then scores the same split (officially the same
    ``train_test_split``, ``random_state=42``, twice)."""
    from workbench.methods.depict import INIT, PRETRAIN

    images, _ = blobs()
    m = tiny_depict(images, pretrain_steps=10**6)
    m.pretrain_patience, m.init_epochs, m.init_patience, m.init_clustering = 2, 50, 5, "kmeans"
    g = torch.Generator().manual_seed(0)
    order = m.batch_order(4, 10, g)  # the first epoch: the split is drawn, nothing scored yet
    assert int(m.stage) == PRETRAIN
    held = set(m.holdout.nonzero().flatten().tolist())
    assert len(held) == 5 and not held & set(order.flatten().tolist())
    assert m.holdout_reconstruction() == pytest.approx(held_out_reconstruction(m, images), rel=1e-5)
    losses = iter([0.5, 0.6, 0.55, 0.7, 0.3])  # after epochs 1, 2, ...: best at 1, then 3 epochs without gain
    monkeypatch.setattr(m, "holdout_reconstruction", lambda: next(losses))
    weights = []
    for epoch in range(1, 6):
        m.steps_done.add_(4)
        with torch.no_grad():
            m.backbone.features[0].weight.add_(1.0)  # stands for an epoch of training
        weights.append(m.backbone.features[0].weight.detach().clone())
        order = m.batch_order(4, 10, g)
        if int(m.stage) == PRETRAIN:
            assert not held & set(order.flatten().tolist())
            assert m.epoch_logs["pretrain_val_reconstruction"] == [0.5, 0.6, 0.55, 0.7][epoch - 1]
        else:
            break
    assert epoch == 4 and int(m.stage) == INIT
    torch.testing.assert_close(m.backbone.features[0].weight.detach(), weights[0])  # the best epoch's weights
    assert any("pre-training ends early" in n for n in m.epoch_notes)
    assert set(m.holdout.nonzero().flatten().tolist()) == held  # the init stage scores the same split
    assert not held & set(m.order.flatten().tolist())


def test_depict_pretraining_without_patience_holds_nothing_out(quick):
    """The default (-1) pre-trains on every image for ``--pretrain-epochs``; with a patience the run records the
    held-out reconstruction each epoch and the option reaches the method from the command line's config."""
    from workbench.engine.build import build
    from workbench.methods.depict import PRETRAIN

    m = build(quick(method="depict", run_name="depict-no-patience"), torch.device("cpu")).method
    assert m.pretrain_patience == -1
    order = m.batch_order(14, 100, torch.Generator().manual_seed(0))
    assert int(m.stage) == PRETRAIN and not m.holdout.any() and len(set(order.flatten().tolist())) == 1400
    m = build(quick(method="depict", run_name="depict-patience", pretrain_patience=3), torch.device("cpu")).method
    assert m.pretrain_patience == 3
    m.batch_order(14, 100, torch.Generator().manual_seed(0))
    assert int(m.holdout.sum()) == round(0.1 * len(m.images))


@pytest.mark.parametrize("stage_optimizer", ["shared", "fresh"])
def test_depict_stages_start_a_fresh_optimizer_as_officially_when_asked(quick, stage_optimizer):
    """``--stage-optimizer fresh``: officially pre-training, the init stage and the DEPICT stage are each a new
    Adam (``train_MdA_val``, ``train_RLC``: a new ``lasagne.updates.adam`` each); Adam's step count and moments
    start again at each stage's first step. 'shared' keeps one state through the run."""
    from workbench.engine import Trainer
    from workbench.methods.depict import DEPICT_STAGE

    cfg = quick(method="depict", run_name=f"depict-{stage_optimizer}", batch_size=100, epochs=3, pretrain_epochs=1,
                init_epochs=1, init_patience=-1, stage_optimizer=stage_optimizer, probe_size=0)
    moments = {}

    class Watch(Callback):  # the first conv's Adam state at the end of each stage
        def on_epoch_end(self, tr):
            state = tr.optimizer.state[next(tr.method.backbone.parameters())]
            moments[tr.step // tr.steps_per_epoch] = int(state["step"])

    trainer = Trainer(cfg, callbacks=[Watch()])
    steps = trainer.steps_per_epoch
    trainer.fit()
    assert int(trainer.method.stage) == DEPICT_STAGE
    expected = [steps] * 3 if stage_optimizer == "fresh" else [steps, 2 * steps, 3 * steps]
    assert [moments[e] for e in (1, 2, 3)] == expected
    with RunReader(trainer.run_dir) as reader:
        fresh_notes = [m for m in reader.events()["message"] if "fresh optimiser" in m]
    assert len(fresh_notes) == (2 if stage_optimizer == "fresh" else 0)


def test_depict_official_encoder_is_build_mda():
    """``--encoder official``: ``build_MdA`` with the MNIST settings (``dataset_settings``: kernels 4, 5, strides 2,
    paddings 0, 2; 50 feature maps; a tanh dense layer of 10 units; the decoder its mirror): on 28 px images the
    layer shapes and the parameter count of lasagne's layers, 178,211 (+ 110 for the softmax head)."""
    from workbench.nn.autoencoders import DEPICTEncoder, encode_blocks

    images = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)
    m = DEPICT(SmallConvNet(1), ContrastiveViews(ViewConfig(size=28), mean=MEAN, std=STD), images, n_clusters=10,
               size=28, encoder="official")
    assert isinstance(m.backbone, DEPICTEncoder) and m.backbone.out_dim == 50 * 7 * 7
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    official = {"l_e1": 50 * 16 + 50, "l_e2": 50 * 50 * 25 + 50, "l_e3": 2450 * 10 + 10, "l_d2_flat": 10 * 2450 + 2450,
                "l_d1": 50 * 50 * 25 + 50, "l_d0": 50 * 16 + 1}
    assert count(m.backbone) == official["l_e1"] + official["l_e2"]
    assert count(m.embedding) == official["l_e3"]
    assert count(m.decoder) == official["l_d2_flat"] + official["l_d1"] + official["l_d0"]
    assert count(m.backbone) + count(m.embedding) + count(m.decoder) == 178211 and count(m.head) == 110
    x = m.views.prepare(images[:3])
    blocks, h = encode_blocks(m.backbone, x)
    assert [tuple(b.shape[1:]) for b in blocks] == [(50, 13, 13), (50, 7, 7)] and h.shape == (3, 2450)
    x_hat, d1, d2 = m.decoder(m.embed_clusters(h), [tuple(b.shape[1:]) for b in blocks] + [tuple(x.shape[1:])])
    assert x_hat.shape == x.shape and d1.shape == blocks[0].shape and d2.shape == blocks[1].shape
    torch.testing.assert_close(h, m.backbone(x))
    out = m.step(images[:4], 0, torch.Generator().manual_seed(0))  # pre-training step: layer-wise reconstruction
    assert torch.isfinite(out.loss) and out.loss.requires_grad
    # the default (--encoder auto): the official layout from 16 px (USPS) up, the backbone on 8 px digits
    auto28 = DEPICT(SmallConvNet(1), ContrastiveViews(ViewConfig(size=28), mean=MEAN, std=STD), images,
                    n_clusters=10, size=28)
    assert isinstance(auto28.backbone, DEPICTEncoder) and any("official encoder" in n for n in auto28.notes_for_first_step)
    assert isinstance(tiny_depict(blobs()[0]).backbone, SmallConvNet)


def official_acpic(x, n_clusters, k, a=1.0, z=0.01):
    """``predict_ac_mpi`` / ``gacCluster`` with its dense inversions: k-NN digraph ``exp(-d^2 / sigma^2)`` plus
    self-loops, rows normalised; initial clusters = components of the 1-NN links; merge the pair with the largest
    ``L_ij - L_i - L_j`` (``gacPathCondEntropy``, ``gacPathEntropy``) until ``n_clusters`` are left."""
    n = len(x)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    nn_index = np.argsort(d2, axis=1, kind="stable")[:, : k + 1]
    sorted_d = np.sort(d2, axis=1)
    sig2 = np.mean(sorted_d[:, 1:max(k + 1, 4)]) * a
    while np.any(np.exp(-sorted_d[:, 1] / sig2) < 1e-5):
        sig2 *= 2
    w = np.eye(n)
    for i in range(n):
        for j in range(1, k + 1):
            w[i, nn_index[i, j]] += np.exp(-sorted_d[i, j] / sig2)
    iminuszw = np.eye(n) - z * (w / w.sum(1, keepdims=True))
    label = -np.ones(n, dtype=int)  # gacNNMerge: each point with its nearest neighbour
    for i in range(n):
        pair = nn_index[i, :2]
        got = sorted(set(label[pair][label[pair] >= 0].tolist()))
        if not got:
            label[pair] = i
        else:
            label[pair] = got[0]
            for other in got[1:]:
                label[label == other] = got[0]
    clusters = [np.where(label == u)[0] for u in np.unique(label)]

    def path(c):
        return np.linalg.inv(iminuszw[np.ix_(c, c)]).sum() / len(c) ** 2

    def cond(ci, cj):
        inv = np.linalg.inv(iminuszw[np.ix_(np.r_[ci, cj], np.r_[ci, cj])])
        return inv[: len(ci), : len(ci)].sum() / len(ci) ** 2 + inv[len(ci):, len(ci):].sum() / len(cj) ** 2

    while len(clusters) > n_clusters:
        gains = {(i, j): cond(clusters[i], clusters[j]) - path(clusters[i]) - path(clusters[j])
                 for i in range(len(clusters)) for j in range(i + 1, len(clusters))}
        i, j = max(gains, key=gains.get)
        clusters[i] = np.r_[clusters[i], clusters[j]]
        del clusters[j]
    out = np.empty(n, dtype=int)
    for c, members in enumerate(clusters):
        out[members] = c
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_acpic_matches_the_official_path_integral_clustering(seed):
    from sklearn.metrics import adjusted_rand_score

    from workbench.methods.depict import acpic

    g = np.random.default_rng(seed)
    centres = g.normal(0, 3, (4, 5))
    x = np.concatenate([c + g.normal(0, 1.0, (30, 5)) for c in centres])  # overlapping: the merge order matters
    ours, official = acpic(x, 4, k=6), official_acpic(x, 4, k=6)
    assert len(np.unique(ours)) == 4
    assert adjusted_rand_score(official, ours) == pytest.approx(1.0)


def test_depict_defaults_are_the_official_small_set_recipe(quick):
    """A tanh embedding with as many units as clusters, and AC-PIC (not k-means) on it for a set this small."""
    from workbench.engine.build import build
    from workbench.methods.depict import ACPIC_MIN_SHARE, acpic

    parts = build(quick(method="depict", run_name="depict-defaults"), torch.device("cpu"))
    m = parts.method
    assert m.embed_dim == 10 and isinstance(m.embedding, torch.nn.Linear) and m.head.in_features == 10
    assert m.init_clustering == "acpic"
    m.pretrain_steps = 0
    m.batch_order(parts.steps_per_epoch, parts.batch_size, torch.Generator().manual_seed(0))
    z = m.whole_set()[0]
    assert z.abs().max() <= 1  # tanh
    ref = acpic(z.double().numpy(), 10)
    if np.bincount(ref, minlength=10).min() < ACPIC_MIN_SHARE * len(z) / 10:  # degenerate: k-means (tested above)
        ref = KMeans(10, n_init=m.kmeans_restarts, random_state=0).fit_predict(z.numpy())
    np.testing.assert_array_equal(m.labels.numpy(), ref)


# ------------------------------------------------------------------------------------------------ G-SimCLR
def gsimclr(n, k):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8)
    return GSimCLR(SmallConvNet(1), views(), images, pretrain_steps=0, n_clusters=k), images


@pytest.mark.parametrize("sizes", [[5] * 16, [5 + i % 4 for i in range(16)]])
def test_gsimclr_epoch_shows_every_image_once_with_one_image_per_pseudo_cluster_per_batch(sizes):
    bs = 16
    labels = torch.arange(16).repeat_interleave(torch.tensor(sizes))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    n = len(labels)  # 80 (5 full batches) or 104 (6 full batches and one of 8)
    m, images = gsimclr(n, 16)
    m.pseudo_labels.copy_(labels)
    steps = -(-n // bs)
    assert m.steps_per_epoch(n, bs) == steps
    order = m.batch_order(steps, bs, torch.Generator().manual_seed(0))
    assert [len(b) for b in order] == [bs] * (n // bs) + ([n % bs] if n % bs else [])
    flat = torch.cat(order).tolist()
    assert sorted(flat) == list(range(n))  # every image exactly once, whatever n mod batch is
    seen = [0] * 16
    ranks = []
    for i in flat:  # the rank of each image within its cluster, in the epoch's order
        ranks.append(seen[labels[i]])
        seen[labels[i]] += 1
    assert ranks == sorted(ranks)  # sorted by within-cluster rank
    for batch in order[: min(sizes)]:
        assert sorted(labels[batch].tolist()) == list(range(16))  # rank r of every cluster
    out = m.step(images[order[0]], 0, torch.Generator().manual_seed(0))
    assert out.logs["epoch_coverage"] == 1.0
    again = m.batch_order(steps, bs, torch.Generator().manual_seed(1))
    assert any(not torch.equal(a, b) for a, b in zip(again, order))  # the within-cluster ranks are redrawn


def test_gsimclr_coverage_when_clusters_are_uneven():
    """Clusters smaller than the number of batches, and N = 200 not a multiple of 16: every image once."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 16, (200,), generator=g)
    labels[:16] = torch.arange(16)
    m, images = gsimclr(200, 16)
    m.pseudo_labels.copy_(labels)
    assert m.steps_per_epoch(200, 16) == 13
    order = m.batch_order(13, 16, g)
    assert [len(b) for b in order] == [16] * 12 + [8]
    assert sorted(torch.cat(order).tolist()) == list(range(200))
    assert sorted(labels[order[0]].tolist()) == list(range(16))  # batch 0: the rank-0 image of every cluster
    # a single image left over joins the batch before it (NT-Xent and batch-norm need two)
    m1, _ = gsimclr(33, 16)
    assert m1.steps_per_epoch(33, 16) == 2
    assert [len(b) for b in m1.batch_order(2, 16, g)] == [16, 17]


def test_gsimclr_training_sees_every_image_each_epoch_when_the_batch_does_not_divide_n(quick):
    """The engine's run: digits' 1437 training images in batches of 128 (1437 = 11 x 128 + 29). Before, the
    engine dropped the last partial batch (coverage 0.98 in the autoencoder stage, 11 steps per epoch)."""
    import workbench
    from workbench.engine.build import build
    from workbench.runs import RunReader

    cfg = quick(method="gsimclr", epochs=3, batch_size=128, pretrain_epochs=1, run_name="gsimclr-coverage",
                log_every=1)
    parts = build(cfg, torch.device("cpu"))
    n = len(parts.bundle.train)
    assert n % 128 != 0
    assert parts.steps_per_epoch == -(-n // 128)
    assert parts.scheduler.lr_lambdas[0].keywords["total_steps"] == parts.steps_per_epoch * 3  # lr schedule agrees
    r = workbench.train(cfg)
    assert r.step == 3 * -(-n // 128)
    with RunReader(r.run_dir) as rd:
        cov = rd.scalar("epoch_coverage")
        stage = rd.scalar("stage")
    assert len(cov) and (cov == 1.0).all()
    assert (stage == 2.0).any()  # the SimCLR stage on the rank order ran too


def test_gsimclr_autoencoder_noise_and_kmeans_on_raw_latents(monkeypatch):
    m, images = gsimclr(64, 4)
    m.pretrain_steps = 10
    seen = []
    hook = m.autoencoder.encoder.features[0].register_forward_pre_hook(lambda _m, a: seen.append(a[0].detach()))
    m.step(images, 0, torch.Generator().manual_seed(0))
    hook.remove()
    noise01 = (seen[0] - m.views.prepare(images)) * STD[0]  # back on the [0, 1] scale of the official images
    assert noise01.std().item() == pytest.approx(1e-2, rel=0.05)
    import workbench.methods.gsimclr as module

    calls = []
    real = module.kmeans

    def spy(features, k, *args, **kwargs):
        calls.append((np.array(features), kwargs))
        return real(features, k, *args, **kwargs)

    monkeypatch.setattr(module, "kmeans", spy)
    m.assign_pseudo_labels(torch.device("cpu"))
    features, kwargs = calls[0]
    with torch.no_grad():
        enc = copy.deepcopy(m.autoencoder.encoder).eval()
        raw = enc(m.views.prepare(images)).numpy()
    np.testing.assert_allclose(features, raw, rtol=1e-5, atol=1e-6)
    assert kwargs.get("normalize", True) is False  # raw pooled latents, not L2-normalised
