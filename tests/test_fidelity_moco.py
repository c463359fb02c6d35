"""MoCo as its official code computes it: the CIFAR demo's summed symmetric loss and key order (transcribed below
from ``facebookresearch/moco``'s ``colab/moco_cifar10_demo.ipynb``), ``builder.py``'s head without batch-norm, and a
queue that knows which image each key came from (no query meets its own image among its negatives)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.registry import DatasetBundle, ImageSet
from workbench.engine.config import TrainConfig
from workbench.losses.infonce import info_nce
from workbench.methods import METHODS
from workbench.methods.moco import MoCo


class FixedViews:
    """Stands in for the augmentation: the two views are given."""

    def __init__(self, x1, x2):
        self.x1, self.x2 = x1, x2

    def __call__(self, images, n=2, g=None):
        return [self.x1, self.x2]


def tiny_backbone(dim_in=12, out=16):
    net = nn.Sequential(nn.Flatten(), nn.Linear(dim_in, out))
    net.out_dim = out
    return net


# ---- the demo's computation, transcribed (queue is (dim, K) there) ----
def demo_contrastive_loss(encoder_q, encoder_k, queue, T, im_q, im_k):
    q = F.normalize(encoder_q(im_q), dim=1)
    with torch.no_grad():  # batch shuffle is a no-op for an encoder without batch-norm
        k = F.normalize(encoder_k(im_k), dim=1)
    l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
    l_neg = torch.einsum("nc,ck->nk", [q, queue.clone().detach()])
    logits = torch.cat([l_pos, l_neg], dim=1) / T
    labels = torch.zeros(logits.shape[0], dtype=torch.long)
    return nn.CrossEntropyLoss()(logits, labels), q, k


def demo_forward(encoder_q, encoder_k, queue, ptr, T, im1, im2):
    loss_12, q1, k2 = demo_contrastive_loss(encoder_q, encoder_k, queue, T, im1, im2)
    loss_21, q2, k1 = demo_contrastive_loss(encoder_q, encoder_k, queue, T, im2, im1)
    loss = loss_12 + loss_21
    k = torch.cat([k1, k2], dim=0)
    queue = queue.clone()
    queue[:, ptr:ptr + k.shape[0]] = k.T  # _dequeue_and_enqueue
    return loss, queue


def test_symmetric_loss_is_the_demos_sum_and_keys_enter_as_k1_then_k2():
    torch.manual_seed(0)
    b = 6
    x1, x2 = torch.randn(b, 3, 2, 2), torch.randn(b, 3, 2, 2)
    moco = MoCo(tiny_backbone(), FixedViews(x1, x2), tau=0.1, proj_dim=8, momentum=0.99, queue_size=32,
                split_bn=1)
    queue_before = moco.queue.keys.clone()
    encoder_q = nn.Sequential(moco.backbone, moco.projector)
    encoder_k = nn.Sequential(moco.key_backbone, moco.key_projector)  # equal to f_q at the start: any m
    expected, expected_queue = demo_forward(encoder_q, encoder_k, queue_before.T, 0, 0.1, x1, x2)
    out = moco.step(torch.zeros(b, 3, 2, 2), 0, torch.Generator().manual_seed(0), index=torch.arange(b))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(moco.queue.keys, expected_queue.T, rtol=1e-5, atol=1e-6)
    assert moco.queue.source[:2 * b].tolist() == list(range(b)) * 2


def test_head_is_linear_relu_linear_without_batch_norm():
    moco = MoCo(tiny_backbone(out=16), FixedViews(None, None), proj_dim=8, split_bn=1)
    head = moco.projector
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]  # builder.py's mlp=True head
    assert sum(p.numel() for p in head.parameters()) == 16 * 16 + 16 + 16 * 8 + 8


def test_info_nce_leaves_excluded_negatives_out_like_a_loop():
    g = torch.Generator().manual_seed(3)
    q = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    k = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    queue = F.normalize(torch.randn(7, 4, generator=g), dim=1)
    exclude = torch.rand(5, 7, generator=g) < 0.3
    loss, _, neg = info_nce(q, k, queue, 0.2, exclude)
    naive = 0.0
    for i in range(5):
        terms = [float(q[i] @ k[i]) / 0.2] + [float(q[i] @ queue[j]) / 0.2 for j in range(7) if not exclude[i, j]]
        naive += -terms[0] + math.log(sum(math.exp(t) for t in terms))
    assert loss.item() == pytest.approx(naive / 5, rel=1e-5)
    assert neg.shape == (5, 7)  # every score is still reported


def digits_like(n, classes=5, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    train = ImageSet(images, labels)
    return DatasetBundle(name="toy", train=train, test=train, classes=[str(c) for c in range(classes)],
                         mean=(0.5,), std=(0.25,))


def run_epochs(moco, n, batch, epochs, seed=0):
    order_gen, aug = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    logs, notes = [], []
    step = 0
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=order_gen)[: n // batch * batch].view(-1, batch):
            images = torch.randint(0, 256, (batch, 1, 8, 8), generator=aug, dtype=torch.uint8)
            out = moco(images, step, aug, index=idx)
            logs.append(out.logs)
            notes += out.notes
            step += 1
    return logs, notes


def build_moco(bundle, **options):
    from workbench.engine.representation import REPRESENTATION

    cfg = TrainConfig(method="moco", split_bn=1, proj_dim=8, **options)
    method, _ = REPRESENTATION.build_method(cfg, bundle, torch.device("cpu"))
    return method


def test_queue_is_capped_below_the_data_and_no_query_meets_its_own_image():
    bundle = digits_like(64)
    moco = build_moco(bundle, queue_size=4096)
    assert moco.queue.size == 32  # half the 64 training images
    logs, notes = run_epochs(moco, 64, 16, epochs=4)
    assert any("capped at 32" in n for n in notes)
    assert all(entry["queue_self_frac"] == 0.0 for entry in logs)
    # the official behaviour, one option away: keys of the query's own image are among its negatives
    official = build_moco(bundle, queue_size=4096, exclude_self_keys=False)
    logs, _ = run_epochs(official, 64, 16, epochs=4)
    assert max(entry["queue_self_frac"] for entry in logs) > 0.2


def test_queue_same_label_fraction_matches_a_count():
    bundle = digits_like(64, classes=4)
    moco = build_moco(bundle, queue_size=24)
    g = torch.Generator().manual_seed(0)
    run_epochs(moco, 64, 16, epochs=1)
    index = torch.randperm(64, generator=g)[:16]
    source = moco.queue.source.clone()
    out = moco(torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8), 4, g, index=index)
    labels = bundle.train.labels
    naive = sum(sum(int(labels[i] == labels[s]) for s in source.tolist() if s >= 0) / int((source >= 0).sum())
                for i in index.tolist()) / 16
    assert float(out.logs["queue_same_label_frac"]) == pytest.approx(naive, rel=1e-6)


@pytest.mark.parametrize("method, tau", [("simclr", 0.5), ("moco", 0.1), ("swav", 0.1), ("gsimclr", 0.1)])
def test_each_method_records_its_papers_temperature(method, tau):
    assert METHODS[method].Options().tau == tau
    assert TrainConfig(method=method).to_dict()["tau"] == tau
