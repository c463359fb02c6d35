"""SwAV's multi-crop scales and feature queue, and RotNet's augmentation and head, as the official code has them.
The queue test runs a transcription of ``facebookresearch/swav``'s ``main_swav.py`` (queue handling and
``distributed_sinkhorn`` on one process) beside the method for several steps."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.views import ContrastiveViews, ViewConfig, translate_flip
from workbench.methods.rotnet import RotNet
from workbench.methods.swav import SwAV
from workbench.nn.backbones import SmallConvNet


class RecordingViews(ContrastiveViews):
    def __init__(self, size):
        super().__init__(ViewConfig(size=size))
        self.calls = []

    def view(self, x, g=None, size=None, scale=None, normalize=True):
        self.calls.append((size, scale))
        return super().view(x, g, size=size, scale=scale, normalize=normalize)


def test_swav_multi_crop_has_the_scripts_scales():
    views = RecordingViews(32)
    swav = SwAV(SmallConvNet(3), views, prototypes=10, small_crops=2)
    swav.step(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), 0, torch.Generator().manual_seed(0))
    large = [c for c in views.calls if c[0] is None]
    small = [c for c in views.calls if c[0] is not None]
    assert large == [(None, (0.14, 1.0))] * 2
    assert small == [(round(32 * 96 / 224), (0.05, 0.14))] * 2  # 96/224 of the large size


# ---- main_swav.py, transcribed for one process ----
def official_sinkhorn(out, epsilon=0.05, sinkhorn_iterations=3):
    Q = torch.exp(out / epsilon).t()
    B, K = Q.shape[1], Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(sinkhorn_iterations):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def official_codes(queue, i, embedding, prototypes, bs, crop_id, use_the_queue):
    with torch.no_grad():
        out = (embedding @ prototypes.t())[bs * crop_id: bs * (crop_id + 1)]
        if queue is not None:
            if use_the_queue or not torch.all(queue[i, -1, :] == 0):
                use_the_queue = True
                out = torch.cat((torch.mm(queue[i], prototypes.t()), out))
            queue[i, bs:] = queue[i, :-bs].clone()
            queue[i, :bs] = embedding[crop_id * bs: (crop_id + 1) * bs]
        return official_sinkhorn(out)[-bs:], use_the_queue


def test_swav_queue_codes_match_main_swav():
    torch.manual_seed(0)
    bs, dim, k, length = 4, 6, 10, 8
    swav = SwAV(SmallConvNet(3), ContrastiveViews(ViewConfig(size=32)), proj_dim=dim, prototypes=k, small_crops=0,
                queue_length=length, queue_start_step=0)
    c = F.normalize(torch.randn(k, dim), dim=1)
    queue = torch.zeros(2, length, dim)
    use = False
    for step in range(5):
        embedding = F.normalize(torch.randn(2 * bs, dim), dim=1)
        for crop in (0, 1):
            expected, use = official_codes(queue, crop, embedding, c, bs, crop, use)
            z = embedding[crop * bs:(crop + 1) * bs]
            got = swav.codes(crop, z, z @ c.T, c, step)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert use  # the queue was full and used in the later steps
    torch.testing.assert_close(swav.queue, queue)


def test_swav_queue_defaults_to_none_when_the_batch_exceeds_k():
    from test_fidelity_moco import build_moco, digits_like  # noqa: F401  (shared toy data)
    from workbench.engine.config import TrainConfig
    from workbench.engine.representation import REPRESENTATION

    bundle = digits_like(64, classes=4)
    small_k = REPRESENTATION.build_method(TrainConfig(method="swav", batch_size=32), bundle, torch.device("cpu"))[0]
    assert small_k.queue.shape[1] == 0  # K = 12 <= batch 32
    big_k = REPRESENTATION.build_method(TrainConfig(method="swav", batch_size=16, prototypes=40), bundle,
                                        torch.device("cpu"))[0]
    assert big_k.queue.shape[1] >= 40 - 16 and big_k.queue.shape[1] % 16 == 0


def naive_random_crop_flip(x, padding, oy, ox, flip):
    """torchvision RandomCrop(padding) + flip for one image at the given offsets, with loops."""
    c, h, w = x.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding)
    padded[:, padding:padding + h, padding:padding + w] = x
    out = torch.empty(c, h, w)
    for i in range(h):
        for j in range(w):
            out[:, i, j] = padded[:, oy + i, ox + (w - 1 - j if flip else j)]
    return out


def test_translate_flip_is_random_crop_with_padding_and_flip_per_sample():
    x = torch.rand(16, 3, 6, 5)
    g = torch.Generator().manual_seed(0)
    out = translate_flip(x, g, padding=2)
    g = torch.Generator().manual_seed(0)  # the same draws, in the same order
    oy = torch.randint(0, 5, (16,), generator=g)
    ox = torch.randint(0, 5, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    for b in range(16):
        torch.testing.assert_close(out[b], naive_random_crop_flip(x[b], 2, int(oy[b]), int(ox[b]), bool(flip[b])))
    assert 0 < int(flip.sum()) < 16


def test_rotnet_head_is_global_pool_and_linear_to_four_rotations_and_views_only_translate():
    views = RecordingViews(32)
    net = RotNet(SmallConvNet(3), views)
    assert isinstance(net.head, nn.Linear) and (net.head.in_features, net.head.out_features) == (256, 4)
    assert net.padding == 4 and net.probe_blocks == 4
    images = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    out = net.step(images, 0, torch.Generator().manual_seed(0))
    assert views.calls == []  # no colour jitter, no resized crop: the contrastive views are not used
    assert out.loss.item() == pytest.approx(out.loss.item()) and "rotation_acc" in out.logs


@pytest.mark.parametrize("eps, warns", [(10.0, True), (0.05, False)])
def test_swav_warns_when_its_loss_sits_at_ln_k(quick, eps, warns):
    """With a huge Sinkhorn eps the codes are uniform, the loss stays at ln K and the run's event log says so once
    (the streak is counted on the device and read every few steps); a healthy eps leaves ln K and never warns."""
    import math

    from workbench.engine.trainer import Trainer
    from workbench.runs import RunReader

    result = Trainer(quick(method="swav", swav_eps=eps, subset=300, batch_size=32, epochs=9, seed=0)).fit()
    with RunReader(result.run_dir) as r:
        events, loss, ln_k = r.events(), r.scalar("loss"), r.scalar("ln_k")
    assert len(loss) >= 80
    plateau = (loss - ln_k).abs() < 0.01 * ln_k
    messages = [m for m in events["message"] if "ln K" in m]
    assert plateau.tail(50).all() == warns
    assert len(messages) == (1 if warns else 0), messages
    if warns:
        assert f"{math.log(30):.3f}" in messages[0]  # K = 3 x 10 classes
