"""Low-light data: the degradation family, robust image reading, the embedded photos, user folders, LOL pairs."""
import math
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from workbench.data.imageio import (ImageReadError, _orient, list_images, iter_images, read_image, save_image)
from workbench.lowlight.data import (PHOTOS_TEST, PHOTOS_TRAIN, Degradation, DegradationRanges, grid_crops,
                                     load_lol_pairs, load_lowlight_dataset, random_crops)
from workbench.data.registry import DatasetUnavailable


def rgb(h=53, w=37, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ============================================================================================ degradation
def smooth_batch(n=16, size=32, seed=0):
    """Images with structure and mid brightness (mean ~0.45), (n, 3, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 4, 4, generator=g) * 0.6 + 0.2
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def test_sampled_parameters_stay_in_their_ranges():
    d = Degradation()
    r = d.ranges
    p = d.sample(4000, torch.Generator().manual_seed(0))
    for name in ("alpha", "beta", "gamma", "photons", "read_noise"):
        lo, hi = getattr(r, name)
        v = p[name]
        assert v.shape == (4000,) and v.dtype == torch.float32
        assert lo <= v.min() and v.max() <= hi, name
        assert v.min() < lo + 0.02 * (hi - lo) and v.max() > hi - 0.02 * (hi - lo), f"{name} does not span its range"
    assert p["gain"].shape == (4000, 3) and r.gain[0] <= p["gain"].min() and p["gain"].max() <= r.gain[1]
    # photons: log-uniform, so its log is uniform (median at the geometric mean)
    assert abs(p["photons"].log().median().item() - 0.5 * sum(map(math.log, r.photons))) < 0.15
    # every parameter is uniform on its range (photons on a log scale): mapped to [0, 1], each has mean 1/2
    unit = lambda v, lo, hi: (v - lo) / (hi - lo)  # noqa: E731
    cols = [unit(p[k], *getattr(r, k)) for k in ("alpha", "beta", "gamma", "read_noise")]
    cols += list(unit(p["gain"], *r.gain).unbind(1)) + [unit(p["photons"].log(), *map(math.log, r.photons))]
    c = torch.stack(cols, dim=1)
    assert 0 <= c.min() and c.max() <= 1
    assert torch.allclose(c.mean(0), torch.full((c.shape[1],), 0.5), atol=0.03)  # each column uniform on [0, 1]


def test_degraded_images_are_dark_noisy_and_in_range():
    x = smooth_batch()
    d = Degradation()
    low, p = d(x, torch.Generator().manual_seed(1))
    assert low.shape == x.shape and low.dtype == x.dtype
    assert 0 <= low.min() and low.max() <= 1
    assert low.mean() < 0.5 * x.mean()  # darker on average
    assert (low.mean(dim=(1, 2, 3)) < x.mean(dim=(1, 2, 3))).all()
    clean = d.noiseless(x, p)
    assert (clean <= 1).all() and torch.allclose(d.noiseless(x, p), clean)  # deterministic
    noise = (low - clean).std(dim=(1, 2, 3))
    assert (noise > 1e-3).all()  # every image got noise
    assert torch.allclose(low * 255, (low * 255).round(), atol=1e-3)  # stored as 8-bit levels
    # the noiseless model is the formula
    n = len(x)
    expect = (p["gain"].view(n, 3, 1, 1) * p["beta"].view(n, 1, 1, 1)
              * (p["alpha"].view(n, 1, 1, 1) * x) ** p["gamma"].view(n, 1, 1, 1)).clamp(0, 1)
    assert torch.allclose(clean, expect, atol=1e-6)
    # noise level: visible but the image survives (mean SNR of the batch)
    snr = clean.mean(dim=(1, 2, 3)) / noise
    assert 1 < snr.median() < 50


def test_degradation_is_deterministic_and_per_image():
    x = smooth_batch(8)
    d = Degradation()
    a, pa = d(x, torch.Generator().manual_seed(7))
    b, pb = d(x, torch.Generator().manual_seed(7))
    c, _ = d(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(a, c)
    # sample + apply with one generator is what __call__ does
    g = torch.Generator().manual_seed(7)
    assert torch.equal(d.apply(x, d.sample(len(x), g, x.device), g), a)
    # every image has its own parameters
    for k in ("alpha", "beta", "gamma", "photons", "read_noise"):
        assert len(torch.unique(pa[k])) == len(x), k
    # the same image repeated gets different darkenings
    same = x[:1].expand(8, -1, -1, -1)
    low, _ = d(same, torch.Generator().manual_seed(0))
    assert len(torch.unique(low.mean(dim=(1, 2, 3)))) == 8
    # uint8 input is accepted
    x8 = (x * 255).round().to(torch.uint8)
    low8, p8 = d(x8, torch.Generator().manual_seed(7))
    assert low8.dtype == torch.float32 and low8.shape == x.shape
    assert torch.allclose(d.noiseless(x8, p8), d.noiseless(x, pa), atol=2 / 255)


def test_noiseless_is_differentiable_and_add_noise_works_on_any_dark_image():
    d = Degradation()
    x = smooth_batch(4).requires_grad_(True)
    p = d.sample(4, torch.Generator().manual_seed(0))
    d.noiseless(x, p).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    dark = torch.full((4, 3, 8, 8), 0.05)
    z = d.add_noise(dark, p, torch.Generator().manual_seed(0))
    assert z.shape == dark.shape and 0 <= z.min() and z.max() <= 1 and z.std() > 0
    no_quant = Degradation(DegradationRanges(quantize=False))
    assert no_quant.add_noise(dark, p, torch.Generator().manual_seed(0)).std() > 0


# Runs where a CUDA device is present (a GPU machine); on CPU-only machines the same property is checked by
# test_degradation_is_deterministic_and_per_image. Skipping is the honest outcome there: the path cannot run.
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CPU twin is "
                                                          "test_degradation_is_deterministic_and_per_image")
def test_degradation_on_cuda_is_deterministic_with_a_cuda_generator():
    x = smooth_batch(8).cuda()
    d = Degradation()
    a, _ = d(x, torch.Generator(device="cuda").manual_seed(3))
    b, _ = d(x, torch.Generator(device="cuda").manual_seed(3))
    assert a.device.type == "cuda" and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    c, _ = d(x, torch.Generator().manual_seed(3))  # a CPU generator with CUDA data: drawn on the CPU, moved
    assert c.device.type == "cuda"


@pytest.mark.parametrize("field, value, words", [
    ("gamma", (5.0, 1.5), "min > max"),
    ("alpha", (0.0, 1.0), "(0, 1]"),
    ("beta", (0.5, 1.5), "(0, 1]"),
    ("photons", (0.0, 100.0), "photon"),
    ("photons", (10.0, float("inf")), "finite"),
    ("read_noise", (-0.1, 0.1), "noise"),
    ("gain", (0.0, 1.0), "gain"),
    ("alpha", "high", "pair"),
    ("gamma", (1.0,), "pair"),
])
def test_bad_ranges_are_rejected(field, value, words):
    with pytest.raises(ValueError, match=field) as info:
        DegradationRanges(**{field: value})
    assert words in str(info.value)
    r = DegradationRanges()
    setattr(r, field, value)  # changed after construction: caught when used
    with pytest.raises(ValueError, match=field):
        Degradation(r)


# ============================================================================================ image reading
def write_png16(path, a, interlace=False, seed=0, exif=None):
    """A 16-bit PNG (H, W) gray, or (H, W, C) with C in 2, 3, 4, using all five PNG filters (and Adam7)."""
    a = np.asarray(a, dtype=np.uint16)
    a = a[:, :, None] if a.ndim == 2 else a
    h, w, ch = a.shape
    by = a.astype(">u2").view(np.uint8).reshape(h, w, ch * 2)
    rng = np.random.default_rng(seed)

    def filt(img):
        x = img.astype(np.int16)
        a_ = np.zeros_like(x)
        a_[:, 1:] = x[:, :-1]
        b_ = np.zeros_like(x)
        b_[1:] = x[:-1]
        c_ = np.zeros_like(x)
        c_[1:, 1:] = x[:-1, :-1]
        p = a_ + b_ - c_
        pa, pb, pc = np.abs(p - a_), np.abs(p - b_), np.abs(p - c_)
        paeth = np.where((pa <= pb) & (pa <= pc), a_, np.where(pb <= pc, b_, c_))
        preds = [np.zeros_like(x), a_, b_, (a_ + b_) >> 1, paeth]
        types = rng.integers(0, 5, len(x))
        return b"".join(bytes([t]) + ((x[i] - preds[t][i]) & 0xFF).astype(np.uint8).tobytes()
                        for i, t in enumerate(types))

    adam7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = (b"".join(filt(by[y0::dy, x0::dx]) for x0, y0, dx, dy in adam7 if by[y0::dy, x0::dx].size)
           if interlace else filt(by))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    colour = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, int(interlace)))
    if exif is not None:
        data += chunk(b"eXIf", exif)
    path.write_bytes(data + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def assert_fails(path, *words, **kw):
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kw)
    msg = str(info.value)
    assert path.name in msg, msg
    for w in words:
        assert w in msg.lower(), msg
    return msg


def test_bad_files_give_errors_naming_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    assert_fails(text, "not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert_fails(empty, "empty")
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError):
        read_image(missing)
    assert_fails(missing, "no such file")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    # truncated files: an error, never partial data
    Image.fromarray(rgb(64, 64)).save(tmp_path / "ok.png")
    Image.fromarray(rgb(64, 64)).save(tmp_path / "ok.jpg", quality=90)
    for name in ("ok.png", "ok.jpg"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 2])
        assert_fails(cut, "truncated")
        cut.write_bytes(data[:-2])  # only the very end missing
        assert_fails(cut, "truncated")
    no_iend = tmp_path / "no_iend.png"
    no_iend.write_bytes((tmp_path / "ok.png").read_bytes()[:-12])
    assert_fails(no_iend, "truncated")
    flipped = bytearray((tmp_path / "ok.png").read_bytes())
    flipped[100] ^= 0xFF
    (tmp_path / "flipped.png").write_bytes(bytes(flipped))
    assert_fails(tmp_path / "flipped.png", "corrupt")
    # still refused when something in the process told Pillow to accept truncated images
    from PIL import ImageFile

    with pytest.MonkeyPatch.context() as m:
        m.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
        for name in ("ok.png", "ok.jpg"):
            data = (tmp_path / name).read_bytes()
            (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
            assert_fails(tmp_path / f"cut_{name}", "truncated")
        assert read_image(tmp_path / "ok.jpg").shape == (64, 64, 3)


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(rgb(53, 37)).save(path)  # 1961 pixels
    msg = assert_fails(path, "1,961", "1,000", max_pixels=1000)
    assert "max_pixels" in msg or "max-pixels" in msg
    assert read_image(path, max_pixels=1961).shape == (53, 37, 3)

    def no_decoding(*a, **k):
        raise AssertionError("decoded an image that is over the limit")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    assert_fails(path, "limit", max_pixels=1000)
    monkeypatch.undo()
    # Pillow's own decompression-bomb guard becomes an ImageReadError naming the file and the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # error above 1000 pixels
    assert_fails(path, "decompression bomb", "500", max_pixels=10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # warning between 1500 and 3000 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_fails(path, "decompression bomb", max_pixels=1200)
        assert read_image(path, max_pixels=10_000).shape == (53, 37, 3)  # the caller allowed more: no warning


def test_modes_convert_to_rgb_float(tmp_path):
    a = rgb(53, 37)  # odd size: width 37, height 53
    Image.fromarray(a).save(tmp_path / "rgb.png")
    out = read_image(tmp_path / "rgb.png")
    assert out.shape == (53, 37, 3) and out.dtype == np.float32
    assert np.array_equal(np.round(out * 255).astype(np.uint8), a)
    # 8-bit gray -> 3 equal channels
    g = a[..., 0]
    Image.fromarray(g).save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (53, 37, 3) and np.array_equal(out[..., 0], out[..., 2])
    assert np.array_equal(out[..., 1], g.astype(np.float32) / np.float32(255))
    # 16-bit gray: exact value / 65535
    g16 = np.arange(53 * 37, dtype=np.uint32).reshape(53, 37) * 35 % 65536
    g16.flat[:3] = (0, 1, 65535)
    Image.fromarray(g16.astype(np.uint16)).save(tmp_path / "gray16.png")
    out = read_image(tmp_path / "gray16.png")
    assert np.array_equal(out[..., 0], g16.astype(np.float32) / np.float32(65535))
    assert out[0, 2, 0] == 1.0 and out[0, 1, 1] == np.float32(1 / 65535)
    # RGBA / LA: alpha dropped, colours as stored (not composited)
    rgba = np.dstack([a, np.linspace(0, 255, 53 * 37).reshape(53, 37).astype(np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(np.round(read_image(tmp_path / "rgba.png") * 255).astype(np.uint8), a)
    Image.fromarray(np.dstack([g, g[::-1]])).save(tmp_path / "la.png")
    assert np.array_equal(np.round(read_image(tmp_path / "la.png")[..., 1] * 255).astype(np.uint8), g)
    # palette with and without transparency
    p = Image.fromarray(a).quantize(16)
    p.save(tmp_path / "pal.png")
    expect = np.asarray(p.convert("RGB"))
    assert np.array_equal(np.round(read_image(tmp_path / "pal.png") * 255).astype(np.uint8), expect)
    p.info["transparency"] = 0
    p.save(tmp_path / "pal_t.png", transparency=0)
    assert np.array_equal(np.round(read_image(tmp_path / "pal_t.png") * 255).astype(np.uint8), expect)
    p.save(tmp_path / "pal.gif", transparency=0)
    assert read_image(tmp_path / "pal.gif").shape == (53, 37, 3)
    # CMYK (JPEG) -> RGB as Pillow converts it
    Image.fromarray(a).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    expect = np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")).astype(np.float32) / 255
    assert np.allclose(read_image(tmp_path / "cmyk.jpg"), expect)
    # 32-bit int and float TIFFs
    Image.fromarray((g16 // 2).astype(np.int32)).save(tmp_path / "i32.tif")
    assert np.allclose(read_image(tmp_path / "i32.tif")[..., 0], (g16 // 2) / 65535, atol=1e-6)
    f = np.random.default_rng(0).random((53, 37)).astype(np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    assert np.allclose(read_image(tmp_path / "f.tif")[..., 0], f)
    # 1-bit
    Image.fromarray(g > 128).save(tmp_path / "bits.png")
    assert set(np.unique(read_image(tmp_path / "bits.png"))) <= {0.0, 1.0}


@pytest.mark.parametrize("interlace", [False, True])
def test_16_bit_colour_png_keeps_all_16_bits(tmp_path, interlace):
    rng = np.random.default_rng(1)
    for channels in (3, 4, 2):
        a = rng.integers(0, 65536, (53, 37, channels)).astype(np.uint16)
        a[:, :, 0] = np.arange(37, dtype=np.uint16) * 1771  # smooth parts: filters matter
        a[0, 0, 0], a[0, 1, 0] = 65535, 1
        path = write_png16(tmp_path / f"c{channels}.png", a, interlace=interlace, seed=channels)
        out = read_image(path)
        expect = a[..., :3] if channels > 2 else np.repeat(a[..., :1], 3, axis=2)
        assert out.shape == (53, 37, 3)
        assert np.array_equal(out, expect.astype(np.float32) / np.float32(65535)), channels
        if channels == 3:  # Pillow (8 bits) agrees on the high byte
            assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), (expect >> 8).astype(np.uint8))
    # truncated 16-bit PNG: an error
    data = (tmp_path / "c3.png").read_bytes()
    (tmp_path / "c3_cut.png").write_bytes(data[: len(data) // 2])
    assert_fails(tmp_path / "c3_cut.png", "truncated")


def test_16_bit_rgb_tiff_keeps_all_16_bits(tmp_path):
    import tifffile
    a = np.random.default_rng(2).integers(0, 65536, (21, 13, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", a)
    assert np.array_equal(read_image(tmp_path / "rgb16.tif"), a.astype(np.float32) / np.float32(65535))


def test_exif_orientation_is_applied(tmp_path):
    a = rgb(20, 30)
    base = Image.fromarray(a)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"
        base.save(path, exif=exif)
        expect = np.asarray(ImageOps.exif_transpose(Image.open(path)))
        out = np.round(read_image(path) * 255).astype(np.uint8)
        assert np.array_equal(out, expect), orientation
        assert np.array_equal(_orient(a, orientation), expect), orientation  # the 16-bit decoders' mapping
    exif = Image.Exif()
    exif[0x0112] = 6
    a16 = np.random.default_rng(3).integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    path = write_png16(tmp_path / "o16.png", a16, exif=exif.tobytes())
    out = read_image(path)
    assert out.shape == (30, 20, 3) and np.array_equal(out, np.rot90(a16, -1).astype(np.float32) / 65535)
    base.save(tmp_path / "o6.jpg", exif=exif, quality=95)
    assert read_image(tmp_path / "o6.jpg").shape == (30, 20, 3)


def test_list_and_read_images_keep_going_past_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(ImageReadError, match="no image files"):
        list_images(tmp_path)
    good = []
    for i, size in enumerate([(10, 12), (37, 53), (5, 5)]):
        p = tmp_path / f"g{i}.{'png' if i != 1 else 'JPG'}"
        Image.fromarray(rgb(*size, seed=i)).save(p, format="PNG" if i != 1 else "JPEG")
        good.append(p)
    (tmp_path / "b0.png").write_text("nope")
    (tmp_path / "b1.jpg").write_bytes(b"")
    data = (tmp_path / "g0.png").read_bytes()
    (tmp_path / "b2.png").write_bytes(data[:40])
    (tmp_path / "readme.txt").write_text("not listed")
    (tmp_path / ".hidden.png").write_text("not listed")
    (tmp_path / "sub").mkdir()
    files = list_images(tmp_path)
    assert [p.name for p in files] == ["b0.png", "b1.jpg", "b2.png", "g0.png", "g1.JPG", "g2.png"]
    assert list_images(good[0]) == [good[0]]
    results = list(iter_images(files + [tmp_path / "gone.png"]))  # a bad file never stops the others
    assert [p for p, _, _ in results] == files + [tmp_path / "gone.png"]
    ok = [(p, img) for p, img, _ in results if img is not None]
    assert [p for p, _ in ok] == sorted(good)
    assert all(img.shape[2] == 3 and img.dtype == np.float32 for _, img in ok)
    failed = [(p, reason) for p, img, reason in results if img is None]
    assert [p.name for p, _ in failed] == ["b0.png", "b1.jpg", "b2.png", "gone.png"]
    for p, reason in failed:
        assert p.name in reason


def test_save_image_is_atomic_and_round_trips(tmp_path):
    a = rgb(53, 37)
    target = save_image(tmp_path / "deep" / "er" / "out.png", a.astype(np.float32) / 255)
    assert np.array_equal(np.round(read_image(target) * 255).astype(np.uint8), a)
    save_image(target, a)  # uint8, overwrite
    assert np.array_equal(np.asarray(Image.open(target)), a)
    wild = np.full((4, 5, 3), 2.0, dtype=np.float32)
    wild[0, 0] = (-1, np.nan, 0.5)
    save_image(tmp_path / "clip.png", wild)
    back = np.asarray(Image.open(tmp_path / "clip.png"))
    assert back[1, 1].tolist() == [255, 255, 255] and back[0, 0].tolist() == [0, 0, 128]
    save_image(tmp_path / "photo.jpg", a)
    assert Image.open(tmp_path / "photo.jpg").format == "JPEG"
    assert sorted(p.name for p in (tmp_path / "deep" / "er").iterdir()) == ["out.png"]  # no temp files left
    with pytest.raises(ValueError, match="shape"):
        save_image(tmp_path / "bad.png", np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match="suffix"):
        save_image(tmp_path / "bad.xyz", a)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


# ============================================================================================ datasets
def test_photos_dataset_shapes_determinism_and_held_out_photos():
    b = load_lowlight_dataset("photos", patch_size=32, n_train=48, test_size=64, seed=0)
    assert b.train.images.shape == (48, 3, 32, 32) and b.train.images.dtype == torch.uint8
    assert b.test.images.dtype == torch.uint8 and b.test.images.shape[1:] == (3, 64, 64)
    assert 2 <= len(b.test) <= 64
    assert (b.train.labels == -1).all() and (b.test.labels == -1).all() and b.classes == []
    assert b.mean == (0.485, 0.456, 0.406) and b.std == (0.229, 0.224, 0.225)
    assert all(n in b.source for n in PHOTOS_TRAIN + PHOTOS_TEST)
    again = load_lowlight_dataset("photos", patch_size=32, n_train=48, test_size=64, seed=0)
    assert torch.equal(b.train.images, again.train.images) and torch.equal(b.test.images, again.test.images)
    other = load_lowlight_dataset("photos", patch_size=32, n_train=48, test_size=64, seed=1)
    assert not torch.equal(b.train.images, other.train.images)
    assert torch.equal(b.test.images, other.test.images)  # the test crops do not depend on the seed
    assert len(torch.unique(b.train.images.float().mean(dim=(1, 2, 3)))) > 40  # distinct crops
    # held out by photo: no name shared, and no test photo is any training photo (cat is chelsea)
    import skimage.data

    assert not set(PHOTOS_TRAIN) & set(PHOTOS_TEST) and "cat" not in PHOTOS_TRAIN
    tests = [getattr(skimage.data, n)() for n in PHOTOS_TEST]
    for n in PHOTOS_TRAIN:
        a = skimage.data.stereo_motorcycle()[0] if n == "stereo_motorcycle" else getattr(skimage.data, n)()
        assert all(a.shape != t.shape or not np.array_equal(a, t) for t in tests), n


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DatasetUnavailable) as info:
        load_lowlight_dataset("lol")
    assert "photos" in str(info.value) and "folder:<path>" in str(info.value)
    with pytest.raises(ValueError, match="patch_size"):
        load_lowlight_dataset("photos", patch_size=0)


def test_random_crops_upscale_small_images_and_grid_crops_do_not_overlap():
    small = torch.randint(0, 256, (3, 10, 14), dtype=torch.uint8)
    big = torch.randint(0, 256, (3, 100, 120), dtype=torch.uint8)
    out = random_crops([small, big], 40, 16, torch.Generator().manual_seed(0))
    assert out.shape == (40, 3, 16, 16) and out.dtype == torch.uint8
    # a scale-1 crop of a constant image is that constant; bilinear resampling stays within the source's range
    flat = torch.full((3, 50, 60), 77, dtype=torch.uint8)
    assert (random_crops([flat], 8, 16, torch.Generator().manual_seed(0)) == 77).all()
    tiles = grid_crops(big, 32)
    assert tiles.shape == (6, 3, 32, 32)
    assert grid_crops(small, 32).shape == (1, 3, 32, 32)  # upscaled to fit


def test_folder_dataset_with_good_and_bad_files(tmp_path):
    for i in range(9):
        Image.fromarray(rgb(40 + 7 * i, 50, seed=i)).save(tmp_path / f"img{i}.png")
    Image.fromarray(rgb(12, 10, seed=99)).save(tmp_path / "tiny.png")  # smaller than the patch: upscaled
    Image.fromarray((np.arange(60 * 70).reshape(60, 70) * 15).astype(np.uint16)).save(tmp_path / "gray16.png")
    (tmp_path / "broken.png").write_text("not an image")
    with pytest.warns(UserWarning, match="broken.png"):
        b = load_lowlight_dataset(f"folder:{tmp_path}", patch_size=24, n_train=30, test_size=32, seed=0)
    assert b.train.images.shape == (30, 3, 24, 24) and b.train.images.dtype == torch.uint8
    assert len(b.test) >= 1 and b.test.images.shape[1:] == (3, 32, 32)
    assert "broken.png" in b.source and "10 train / 1 test" in b.source
    with pytest.warns(UserWarning):
        again = load_lowlight_dataset(f"folder:{tmp_path}", patch_size=24, n_train=30, test_size=32, seed=0)
    assert torch.equal(b.train.images, again.train.images) and torch.equal(b.test.images, again.test.images)


def test_folder_dataset_edge_cases(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(rgb(70, 90)).save(one / "only.jpg")
    b = load_lowlight_dataset(f"folder:{one}", patch_size=16, n_train=10, test_size=32)
    assert len(b.train) == 10 and len(b.test) >= 1 and "single image" in b.source
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_text("no")
    with pytest.warns(UserWarning), pytest.raises(DatasetUnavailable, match="x.png"):
        load_lowlight_dataset(f"folder:{bad}", n_train=4)
    with pytest.raises(DatasetUnavailable, match="no such"):
        load_lowlight_dataset(f"folder:{tmp_path / 'absent'}", n_train=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetUnavailable, match="no image files"):
        load_lowlight_dataset(f"folder:{empty}", n_train=4)
    with pytest.raises(DatasetUnavailable, match="give the path of your images"):  # not the current directory
        load_lowlight_dataset("folder:", n_train=4)


# ============================================================================================ LOL pairs
def test_lol_layout_pairs_by_name(tmp_path):
    for sub, stems in (("eval15", ["1", "2", "3"]), ("our485", ["10"])):
        for i, s in enumerate(stems):
            for kind, scale in (("low", 0.1), ("high", 1.0)):
                d = tmp_path / sub / kind
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray((rgb(20, 30, seed=i) * scale).astype(np.uint8)).save(d / f"{s}.png")
    Image.fromarray(rgb(20, 30)).save(tmp_path / "eval15" / "low" / "4.png")  # unmatched
    data = (tmp_path / "eval15" / "high" / "3.png").read_bytes()
    (tmp_path / "eval15" / "high" / "3.png").write_bytes(data[: len(data) // 2])  # corrupt
    pairs, failed = load_lol_pairs(tmp_path)
    assert [n for n, _, _ in pairs] == ["eval15/1", "eval15/2", "our485/10"]
    for _, lo, hi in pairs:
        assert lo.shape == hi.shape == (20, 30, 3) and lo.dtype == np.float32 and lo.mean() < hi.mean()
    names = {p.name for p, _ in failed}
    assert names == {"4.png", "3.png"}
    reasons = " ".join(r for _, r in failed)
    assert "no normal-light image" in reasons and "truncated" in reasons
    # pointing at one split works too
    pairs, _ = load_lol_pairs(tmp_path / "our485")
    assert [n for n, _, _ in pairs] == ["10"]


def test_lol_v2_naming_and_errors(tmp_path):
    low, normal = tmp_path / "Test" / "Low", tmp_path / "Test" / "Normal"
    low.mkdir(parents=True)
    normal.mkdir(parents=True)
    for i in (1, 2, 3, 4):
        Image.fromarray(rgb(16, 18, seed=i) // 8).save(low / f"low{i:05d}.png")
        Image.fromarray(rgb(16 if i != 4 else 17, 18, seed=i)).save(normal / f"normal{i:05d}.png")
    Image.fromarray(rgb(16, 18)).save(normal / "normal00009.png")  # unmatched
    (low / "low00002.png").write_text("corrupt")
    pairs, failed = load_lol_pairs(tmp_path)
    assert [n for n, _, _ in pairs] == ["Test/1", "Test/3"]
    assert {p.name for p, _ in failed} == {"normal00009.png", "low00002.png", "low00004.png"}
    assert any("differs" in r for _, r in failed)  # the size mismatch of pair 4
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DatasetUnavailable) as info:
        load_lol_pairs(empty)
    assert "low" in str(info.value) and "Normal" in str(info.value) and "eval15" in str(info.value)
    with pytest.raises(DatasetUnavailable, match="not a folder"):
        load_lol_pairs(tmp_path / "absent")


def test_a_jpeg_needed_small_is_decoded_at_a_reduced_scale_with_its_orientation(tmp_path):
    """reduce_to: a JPEG is decoded at a DCT scale that keeps both sides >= the size asked for; the picture is the
    full decode's, shrunk (compared with an area downscale of the full image), and the EXIF orientation applies."""
    from skimage import data

    photo = data.astronaut()  # 512 x 512 real photograph
    full = np.concatenate([photo, photo[:, ::-1]], axis=1)[:400]  # 400 x 1024
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(full).save(tmp_path / "p.jpg", quality=95, exif=exif.tobytes())
    whole = read_image(tmp_path / "p.jpg")
    small = read_image(tmp_path / "p.jpg", reduce_to=64)
    assert whole.shape == (1024, 400, 3)  # rotated
    assert small.shape[0] < 1024 and min(small.shape[:2]) >= 64 and small.shape[0] / small.shape[1] == pytest.approx(
        1024 / 400, rel=0.05)
    shrunk = np.asarray(Image.fromarray((whole * 255).round().astype(np.uint8)).resize(
        small.shape[1::-1], Image.BOX)) / 255
    assert np.abs(small - shrunk).mean() < 0.01  # measured 0.002; shifted by 3 px: 0.13
    assert read_image(tmp_path / "p.jpg", reduce_to=600).shape == whole.shape  # no scale keeps 600 px: full decode
    Image.fromarray(full).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png", reduce_to=64).shape == (400, 1024, 3)  # other formats: in full
