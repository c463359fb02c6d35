"""Batched per-sample views: random per sample, deterministic under a seed, correct ranges and shapes."""
import pytest
import torch

from workbench.data import ContrastiveViews, ViewConfig, load_dataset, views_grid


def _batch(c=3, size=32, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def test_two_copies_of_one_image_get_different_views():
    img = _batch(n=1).expand(8, -1, -1, -1).contiguous()  # the same image 8 times in one batch
    v = ContrastiveViews(ViewConfig(size=32))
    out = v.view(img, torch.Generator().manual_seed(0), normalize=False)
    diffs = [(out[0] - out[i]).abs().mean().item() for i in range(1, 8)]
    assert min(diffs) > 1e-3, diffs  # every copy got its own crop/flip/jitter


def test_crop_parameters_differ_per_sample():
    # a constant-gradient image makes the crop visible: the mean of each view depends on where it was cut
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8).view(1, 1, 1, 32).expand(64, 1, 32, 32).contiguous()
    v = ContrastiveViews(ViewConfig(size=16, jitter_p=0.0, flip_p=0.0, gray_p=0.0))
    out = v.view(ramp, torch.Generator().manual_seed(1), normalize=False)
    means = out.mean(dim=(1, 2, 3))
    assert means.unique().numel() > 50


def test_deterministic_under_a_seed_and_different_across_seeds():
    x = _batch()
    v = ContrastiveViews(ViewConfig(size=24, blur_p=0.5))
    a = v(x, n=2, g=torch.Generator().manual_seed(7))
    b = v(x, n=2, g=torch.Generator().manual_seed(7))
    c = v(x, n=2, g=torch.Generator().manual_seed(8))
    for u, w in zip(a, b):
        assert torch.equal(u, w)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # the two views of a call differ


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_range_and_normalisation(channels):
    x = _batch(c=channels, size=28)
    v = ContrastiveViews(ViewConfig(size=20))
    out = v.view(x, torch.Generator().manual_seed(0), normalize=False)
    assert out.shape == (16, channels, 20, 20)
    assert out.min() >= 0 and out.max() <= 1
    vn = ContrastiveViews(ViewConfig(size=20), mean=(0.5,) * channels, std=(0.25,) * channels)
    outn = vn.view(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(outn, (out - 0.5) / 0.25)


def test_identity_settings_reproduce_the_image():
    # full-image crop, no flip, no jitter, no blur: the view is the image itself
    x = _batch(size=16)
    cfg = ViewConfig(size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, jitter_p=0, gray_p=0,
                     blur_p=0)
    out = ContrastiveViews(cfg).view(x, torch.Generator().manual_seed(0), normalize=False)
    torch.testing.assert_close(out, x.float() / 255, atol=1e-5, rtol=0)


def test_flip_is_a_mirror():
    x = _batch(size=16)
    cfg = ViewConfig(size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0, gray_p=0,
                     blur_p=0)
    out = ContrastiveViews(cfg).view(x, torch.Generator().manual_seed(0), normalize=False)
    torch.testing.assert_close(out, x.float().flip(-1) / 255, atol=1e-5, rtol=0)


def test_grayscale_probability_one_gives_equal_channels():
    cfg = ViewConfig(size=16, gray_p=1.0, jitter_p=0.0)
    out = ContrastiveViews(cfg).view(_batch(size=16), torch.Generator().manual_seed(0), normalize=False)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])


def test_blur_smooths_and_keeps_mean():
    x = _batch(size=64, n=4)
    v = ContrastiveViews(ViewConfig(size=64, blur_p=1.0, blur_sigma=(2.0, 2.0)))
    g = torch.Generator().manual_seed(0)
    xf = x.float() / 255
    y = v.blur(xf, g)
    assert y.shape == xf.shape
    assert (y - xf).abs().mean() > 0.01
    # a blur lowers the high-frequency energy (neighbour differences)
    assert (y.diff(dim=-1).abs().mean()) < 0.5 * xf.diff(dim=-1).abs().mean()
    torch.testing.assert_close(y.mean(dim=(2, 3)), xf.mean(dim=(2, 3)), atol=0.02, rtol=0)


def test_config_validation():
    with pytest.raises(ValueError, match="crop_scale"):
        ViewConfig(crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="gray_p"):
        ViewConfig(gray_p=1.5)


def test_grid_of_views_on_real_digits():
    b = load_dataset("digits")
    v = ContrastiveViews(ViewConfig(size=8, crop_scale=b.crop_scale))
    grid = views_grid(b.train.images, v, n_images=6, n_views=2)
    assert grid.dtype == torch.uint8 and grid.shape[0] == 3
    assert grid.shape[1] > 3 * 8 and grid.shape[2] > 6 * 8


def test_whole_set_passes_hold_fewer_images_for_large_views():
    """A run at --image-size 1024 asked for 48 GB in its first evaluation (1024 test images in one pass)."""
    from workbench.data.views import PIXELS_PER_PASS

    for size, expected in ((8, 1024), (32, 1024), (64, 1024), (96, 455), (512, 16), (1024, 4), (4096, 1)):
        views = ContrastiveViews(ViewConfig(size=size))
        assert views.eval_batch() == expected
        assert views.eval_batch() * size * size <= max(PIXELS_PER_PASS, size * size)
    assert ContrastiveViews(ViewConfig(size=32)).eval_batch(512) == 512
