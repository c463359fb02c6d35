"""Zero-DCE losses, the differentiable SSIM and the image-quality metrics against independent computations."""
import math
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skdata
from skimage.metrics import structural_similarity

from workbench.diagnostics import image_quality as iq
from workbench.lowlight.losses.restoration import restoration_loss, ssim, ssim_loss
from workbench.lowlight.losses.zerodce import (color_constancy_loss, exposure_loss, illumination_smoothness_loss,
                                      spatial_consistency_loss, zero_dce_loss)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- Zero-DCE losses against naive loops -----------------------------------------------------------------------

def _pooled_channel_mean(x, k):
    """Channel mean, k x k non-overlapping block averages with Python loops (remainder dropped)."""
    n, c, h, w = x.shape
    out = np.zeros((n, h // k, w // k))
    for b in range(n):
        for i in range(h // k):
            for j in range(w // k):
                out[b, i, j] = x[b, :, i * k:(i + 1) * k, j * k:(j + 1) * k].mean()
    return out


def test_spatial_consistency_matches_loops():
    org, enh = _rand(2, 3, 12, 9, seed=1), _rand(2, 3, 12, 9, seed=2)  # 3 x 2 regions, last column dropped
    po, pe = _pooled_channel_mean(org.numpy(), 4), _pooled_channel_mean(enh.numpy(), 4)
    n, hh, ww = po.shape

    def at(p, b, i, j):  # zero outside, as the official conv with padding=1
        return p[b, i, j] if 0 <= i < hh and 0 <= j < ww else 0.0

    total = 0.0
    for b in range(n):
        for i in range(hh):
            for j in range(ww):
                for di, dj in ((0, -1), (0, 1), (-1, 0), (1, 0)):
                    d_org = po[b, i, j] - at(po, b, i + di, j + dj)
                    d_enh = pe[b, i, j] - at(pe, b, i + di, j + dj)
                    total += (d_org - d_enh) ** 2
    expected = total / (n * hh * ww)
    assert spatial_consistency_loss(enh, org).item() == pytest.approx(expected, rel=1e-10)
    assert spatial_consistency_loss(org, org).item() == 0.0


def test_exposure_matches_loops():
    x = _rand(1, 3, 32, 32, seed=3)
    patches = _pooled_channel_mean(x.numpy(), 16)  # 2 x 2 patches
    expected = np.mean([(v - 0.6) ** 2 for v in patches.ravel()])
    assert exposure_loss(x).item() == pytest.approx(expected, rel=1e-10)
    assert exposure_loss(torch.full((1, 3, 32, 32), 0.6)).item() == pytest.approx(0.0, abs=1e-12)
    assert exposure_loss(x, patch=8, level=0.3).item() == pytest.approx(
        np.mean((_pooled_channel_mean(x.numpy(), 8) - 0.3) ** 2), rel=1e-10)


def test_color_constancy_matches_numpy():
    x = _rand(2, 3, 8, 8, seed=4)
    vals = []
    for img in x.numpy():
        r, g, b = img[0].mean(), img[1].mean(), img[2].mean()
        vals.append(math.sqrt(((r - g) ** 2) ** 2 + ((r - b) ** 2) ** 2 + ((g - b) ** 2) ** 2))
    assert color_constancy_loss(x).item() == pytest.approx(np.mean(vals), abs=2e-6)  # eps 1e-12 under the sqrt
    grey = torch.full((1, 3, 8, 8), 0.4, requires_grad=True)
    color_constancy_loss(grey).backward()  # sqrt at 0: the gradient must stay finite
    assert torch.isfinite(grey.grad).all()


def test_illumination_smoothness_matches_loops():
    a = _rand(2, 3, 8, 8, seed=5).numpy()
    n, c, h, w = a.shape
    h_tv = sum((a[b, k, i + 1, j] - a[b, k, i, j]) ** 2 for b in range(n) for k in range(c)
               for i in range(h - 1) for j in range(w))
    w_tv = sum((a[b, k, i, j + 1] - a[b, k, i, j]) ** 2 for b in range(n) for k in range(c)
               for i in range(h) for j in range(w - 1))
    expected = 2 * (h_tv / ((h - 1) * w) + w_tv / (h * (w - 1))) / n
    assert illumination_smoothness_loss(torch.from_numpy(a)).item() == pytest.approx(expected, rel=1e-10)


def test_zero_dce_loss_combines_with_weights():
    org, enh, curves = _rand(2, 3, 16, 16, seed=6), _rand(2, 3, 16, 16, seed=7), _rand(2, 24, 16, 16, seed=8)
    parts = {"spa": spatial_consistency_loss(enh, org).item(), "exp": exposure_loss(enh).item(),
             "col": color_constancy_loss(enh).item(), "tv": illumination_smoothness_loss(curves).item()}
    total, logged = zero_dce_loss(org, enh, curves)
    assert logged == pytest.approx(parts)
    assert total.item() == pytest.approx(parts["spa"] + 10 * parts["exp"] + 5 * parts["col"] + 200 * parts["tv"])
    w = (0.5, 2.0, 3.0, 7.0)
    total_w, _ = zero_dce_loss(org, enh, curves, weights=w)
    assert total_w.item() == pytest.approx(sum(wi * parts[k] for wi, k in zip(w, ("spa", "exp", "col", "tv"))))


# --- differentiable SSIM against scikit-image ------------------------------------------------------------------
# The torch SSIM computes the same quantity as scikit-image (valid-window Gaussian filtering == reflect filtering
# followed by the radius crop), so the only difference is float32 rounding of the local moments (~1e-7 relative
# on values <= 1, divided by C2 = 9e-4 at worst): 1e-4 is a safe bound, an order tighter than the 1e-3 asked.

def _sk_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=-1)


def _to_torch(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()


def test_ssim_matches_skimage_random():
    rng = np.random.default_rng(0)
    a = rng.random((24, 20, 3))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    c = rng.random((24, 20, 3))  # unrelated: SSIM near 0
    for other in (b, c):
        assert ssim(_to_torch(a), _to_torch(other)).item() == pytest.approx(_sk_ssim(a, other), abs=1e-4)


def test_ssim_matches_skimage_photo_and_batches():
    a = skdata.astronaut()[:64, :64].astype(np.float64) / 255
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 0.05, a.shape), 0, 1)
    dark = a ** 2.5 * 0.3
    refs = [_sk_ssim(a, noisy), _sk_ssim(a, dark)]
    for other, ref in zip((noisy, dark), refs):
        assert ssim(_to_torch(a), _to_torch(other)).item() == pytest.approx(ref, abs=1e-4)
    batch = ssim(torch.cat([_to_torch(a)] * 2), torch.cat([_to_torch(noisy), _to_torch(dark)]))
    assert batch.item() == pytest.approx(np.mean(refs), abs=1e-4)  # equal sizes: the mean of per-image SSIMs
    assert iq.ssim(a, noisy)[0] == pytest.approx(refs[0], abs=1e-12)  # the evaluation metric is scikit-image


def test_ssim_identity_gradients_and_small_images():
    x = _rand(2, 3, 16, 16, seed=9).float()
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    for y in (x.clone(), (x + 0.1 * _rand(2, 3, 16, 16, seed=10).float()).clamp(0, 1)):
        p = y.clone().requires_grad_(True)
        ssim_loss(p, x).backward()
        assert torch.isfinite(p.grad).all()
    tiny = _rand(1, 3, 5, 4, seed=11).float()  # smaller than the 11x11 window: shrinks to 3x3, no crash
    assert ssim(tiny, tiny).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.isfinite(ssim(tiny, _rand(1, 3, 5, 4, seed=12).float()))
    assert torch.isfinite(ssim(_rand(1, 1, 1, 7).float(), _rand(1, 1, 1, 7, seed=1).float()))


def _naive_l1(p, t):
    """mean |p - t| over every value, by a Python loop over the flattened arrays."""
    a, b = p.detach().double().flatten().tolist(), t.detach().double().flatten().tolist()
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def _sk_batch_ssim(p, t):
    """scikit-image's SSIM of each image (H, W, C), averaged over the batch."""
    hwc = lambda x, i: x[i].detach().double().permute(1, 2, 0).numpy()  # noqa: E731
    return float(np.mean([_sk_ssim(hwc(p, i), hwc(t, i)) for i in range(len(p))]))


def test_restoration_loss_is_l1_plus_ssim():
    # TML's pixel loss is L1 (+ w (1 - SSIM)): a naive mean absolute error and scikit-image's SSIM, not torch's
    # smooth L1 (which, with beta 1 on [0, 1] images, is MSE / 2 everywhere). Small and large differences both.
    p, t = _rand(2, 3, 16, 16, seed=13).float(), _rand(2, 3, 16, 16, seed=14).float()
    small = (t + 0.01 * (_rand(2, 3, 16, 16, seed=15).float() - 0.5)).clamp(0, 1)
    for pred in (p, small):
        assert restoration_loss(pred, t).item() == pytest.approx(_naive_l1(pred, t), rel=1e-6)
        assert restoration_loss(pred, t, ssim_weight=0.5).item() == pytest.approx(
            _naive_l1(pred, t) + 0.5 * (1 - _sk_batch_ssim(pred, t)), abs=1e-4)
    # MSE is there when asked for by name: a naive mean squared error
    mse = sum((x - y) ** 2 for x, y in zip(p.flatten().tolist(), t.flatten().tolist())) / p.numel()
    assert restoration_loss(p, t, pixel="mse").item() == pytest.approx(mse, rel=1e-6)
    with pytest.raises(ValueError, match="pixel"):
        restoration_loss(p, t, pixel="smooth_l1")


def test_tml_trains_on_the_loss_its_help_names():
    from workbench.config import specs
    from workbench.lowlight.methods import tml as tml_module
    from workbench.lowlight.methods.tml import TML, TMLOptions

    helps = {s.name: s for s in specs(TMLOptions)}
    assert helps["pixel_loss"].default == "l1" and "L1" in helps["pixel_loss"].help
    assert "smooth" not in (tml_module.__doc__ + " ".join(s.help for s in helps.values())).lower()
    # a predicting-stage step's loss, recomputed from the same draws: naive L1 + w (1 - scikit-image SSIM)
    m = TML(width=4, levels=2, troublemaker="synthetic", stage_steps=(0, 5, 5), ssim_weight=0.3)
    images = torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    loss = m.step(images, 0, torch.Generator().manual_seed(2)).loss.item()
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(0)
    x = m.augment(images, g)
    out = m.predicting(m.normalize(m.make_low_light(x, g)))
    assert loss == pytest.approx(_naive_l1(out, x) + 0.3 * (1 - _sk_batch_ssim(out, x)), abs=1e-4)


# --- evaluation metrics ----------------------------------------------------------------------------------------

def test_psnr_matches_formula_and_caps_identical():
    ref = _rand(3, 3, 16, 16, seed=15)
    pred = (ref + 0.05 * (_rand(3, 3, 16, 16, seed=16) - 0.5)).clamp(0, 1)
    expected = [10 * math.log10(1 / ((p - r) ** 2).mean().item()) for p, r in zip(pred, ref)]
    got = iq.psnr(pred, ref)
    assert got.shape == (3,) and got == pytest.approx(expected, rel=1e-10)
    # numpy (N, H, W, C) and (H, W, C) give the same numbers
    nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    assert iq.psnr(nhwc(pred), nhwc(ref)) == pytest.approx(expected, rel=1e-10)
    assert iq.psnr(nhwc(pred)[1], nhwc(ref)[1]) == pytest.approx([expected[1]], rel=1e-10)
    same = iq.psnr(ref, ref)
    assert np.all(same == iq.PSNR_CAP)
    q = iq.quality(torch.cat([pred, ref]), torch.cat([ref, ref]))
    assert math.isfinite(q["psnr"]) and q["psnr"] == pytest.approx((sum(expected) + 3 * iq.PSNR_CAP) / 6)
    assert 0 < q["ssim"] <= 1 and q["n"] == 6
    with pytest.raises(ValueError):
        iq.ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_brightness_and_exposure_error_on_constant_images():
    for c in (0.0, 0.3, 0.5, 1.0):
        x = torch.full((2, 3, 20, 24), c)
        assert iq.mean_brightness(x) == pytest.approx([c, c])
        assert iq.exposure_error(x) == pytest.approx([abs(c - 0.5)] * 2)
        assert iq.exposure_error(x, level=0.2, patch=64) == pytest.approx([abs(c - 0.2)] * 2)  # patch shrinks
    pure_red = np.zeros((8, 8, 3))
    pure_red[..., 0] = 1.0
    assert iq.mean_brightness(pure_red) == pytest.approx([0.299])
    half = torch.zeros(1, 3, 16, 32)
    half[..., 16:] = 1.0  # one black and one white 16x16 patch
    assert iq.exposure_error(half) == pytest.approx([0.5])
    assert iq.mean_brightness(half) == pytest.approx([0.5])


def test_perceptual_metrics_report_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("perceptual_metrics_available tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    avail = iq.perceptual_metrics_available()
    assert set(avail) == {"lpips", "niqe"}
    for reason in avail.values():
        assert reason is None or (isinstance(reason, str) and reason)
    x = torch.rand(1, 3, 16, 16)
    if avail["lpips"] is not None:
        assert iq.lpips(x, x) is None
    assert isinstance(iq.PROTOCOL, str) and "11x11" in iq.PROTOCOL
