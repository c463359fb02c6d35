"""The data side of low-light enhancement: a random degradation family that turns normal-light images into pseudo
low-light ones (batched on the device, per-sample parameters, seeded), the embedded normal-light dataset, users'
own folders, and LOL-style paired folders.

Degradation (``x`` in [0, 1], per image ``n``, per channel ``c``)::

    y = g_c * beta * (alpha * x) ** gamma                       darkening (Lv et al.) and a colour shift
    z = Poisson(chi * y) / chi + N(0, b^2)                      shot + read noise (Poisson-Gaussian)
    low = clip(round(255 * z) / 255, 0, 1)                      stored as an 8-bit photo would be

``Degradation.noiseless`` is ``clip(y, 0, 1)`` (for fitting a deterministic troublemaker); ``add_noise`` the second
and third lines on any dark image. All parameters are drawn per image with the ``torch.Generator`` given, on its
device, in one call; nothing loops over images.

Normal-light data (:func:`load_lowlight_dataset`):

* ``"photos"`` (embedded, offline): scikit-image's sample photographs, split by photo: :data:`PHOTOS_TRAIN`
  give the training crops, :data:`PHOTOS_TEST` the held-out test crops.
* ``"folder:<path>"``: the user's own normal-light images (a folder, or one file).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench.config import ConfigError
from workbench.data.imageio import (DEFAULT_MAX_PIXELS, ImageReadError, image_files, iter_images, list_images,
                                    read_image)
from workbench.data.registry import DatasetBundle, DatasetUnavailable, ImageSet, folder_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation of TML's public code (and of the low-light bundles)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ============================================================================================ degradation
@dataclass
class DegradationRanges:
    """The ranges the per-image degradation parameters are drawn from (uniform unless said otherwise).

    * ``alpha`` (0.9, 1), ``beta`` (0.5, 1), ``gamma`` (1.5, 5): Lv, Li & Lu, "Attention guided low-light image
      enhancement with a large scale low-light simulation dataset" (IJCV 2021): ``I_low = beta * (alpha * I)^gamma``.
      Measured on the training crops of ``"photos"`` (mean 0.44): dark means 0.005 / 0.08 / 0.32 (5 / 50 / 95 %),
      i.e. 2 % to 51 % of the original brightness. Gamma 5 on a dim crop is very dark: that is Lv et al.'s range.
    * ``gain`` (0.9, 1.1): an independent multiplicative gain per colour channel, the colour cast of a dark capture
      (white balance / sensor response at low signal). Our choice: +-10 %, visible but not dominant.
    * ``photons`` (100, 3000), drawn **log-uniformly**: ``chi``, the photon count of a full-scale (1.0) pixel in the
      Poisson shot noise ``Poisson(chi * y) / chi`` (noise std ``sqrt(y / chi)``). Brooks et al. (CVPR 2019) draw
      the shot-noise variance factor ``1/chi`` log-uniformly in (1e-4, 0.012), i.e. chi in (83, 10000); we stop at
      3000 so that every dark image is visibly noisy and start at 100, where a pixel at y = 0.02 still has a shot
      noise SNR ``sqrt(chi * y)`` of 1.4 (looked at: noisy, still recognisable after brightening).
    * ``read_noise`` (0, 0.01): ``b``, the std of the additive Gaussian read noise, in [0, 1] units. Brooks et al.'s
      read noise, tied to their shot noise, is of that order (std about 0.001-0.015 over their shot range);
      0.01 is 2.5 levels of 255.
      (Lv et al.'s sigma_c up to 0.06 swamps images this dark, so it is not used.)
    * ``quantize``: round the noisy result to 8-bit levels, as a stored dark photo is (True by default).

    :meth:`validate` (called on construction) raises ``ValueError`` naming the bad field.
    """

    alpha: tuple[float, float] = (0.9, 1.0)
    beta: tuple[float, float] = (0.5, 1.0)
    gamma: tuple[float, float] = (1.5, 5.0)
    gain: tuple[float, float] = (0.9, 1.1)
    photons: tuple[float, float] = (100.0, 3000.0)
    read_noise: tuple[float, float] = (0.0, 0.01)
    quantize: bool = True

    RANGE_FIELDS = ("alpha", "beta", "gamma", "gain", "photons", "read_noise")

    def __post_init__(self):
        for name in self.RANGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (list, np.ndarray, torch.Tensor)):
                setattr(self, name, tuple(float(v) for v in value))
        self.validate()

    def validate(self) -> "DegradationRanges":
        """Raise ``ValueError`` with what is wrong and what is allowed; returns self."""
        limits = {  # (lowest allowed, highest allowed, what it means)
            "alpha": (0.0, 1.0, "a scale in (0, 1]"),
            "beta": (0.0, 1.0, "a scale in (0, 1]"),
            "gamma": (0.0, math.inf, "an exponent > 0 (> 1 darkens)"),
            "gain": (0.0, math.inf, "a per-channel gain > 0"),
            "photons": (0.0, math.inf, "a photon count > 0 and finite"),
            "read_noise": (-1.0, 1.0, "a noise std in [0, 1]"),
        }
        for name, (low, high, meaning) in limits.items():
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"DegradationRanges.{name} must be a (min, max) pair of numbers, got {value!r}")
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"DegradationRanges.{name} = {value!r}: values must be finite")
            if lo > hi:
                raise ValueError(f"DegradationRanges.{name} = {value!r}: min > max; give (min, max)")
            if name == "read_noise":
                if lo < 0 or hi > 1:
                    raise ValueError(f"DegradationRanges.{name} = {value!r}: must be {meaning}")
            elif not (lo > low and hi <= high):
                raise ValueError(f"DegradationRanges.{name} = {value!r}: must be {meaning}")
        if not isinstance(self.quantize, (bool, np.bool_)):
            raise ValueError(f"DegradationRanges.quantize must be True or False, got {self.quantize!r}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


class Degradation:
    """Random pseudo low-light versions of normal-light images; see the module docstring for the model.

    ``x`` is ``float (N, 3, H, W)`` in [0, 1] (``uint8`` is accepted and scaled) on any device. Parameters are
    drawn on the generator's device and moved to ``x``'s; the same seed on the same device gives the same result.
    The output keeps ``x``'s floating dtype (float32 for uint8 input) and is clipped to [0, 1]. ``noiseless`` is
    differentiable in ``x``; the noise is not (nor meant to be).
    """

    def __init__(self, ranges: DegradationRanges | None = None):
        self.ranges = (ranges or DegradationRanges()).validate()

    def __repr__(self) -> str:
        return f"Degradation({self.ranges!r})"

    # ------------------------------------------------------------------------------------ parameters
    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> dict[str, torch.Tensor]:
        """Per-image parameters, float32 on ``device`` (default: the generator's): ``alpha``, ``beta``, ``gamma``,
        ``photons``, ``read_noise`` of shape (n,) and ``gain`` of shape (n, 3)."""
        g = generator if generator is not None else _fresh_generator(device)
        r = self.ranges
        u = torch.rand(n, 8, generator=g, device=g.device, dtype=torch.float32)

        def lerp(col, rng):
            lo, hi = rng
            return lo + (hi - lo) * col

        log_lo, log_hi = math.log(r.photons[0]), math.log(r.photons[1])
        params = {
            "alpha": lerp(u[:, 0], r.alpha),
            "beta": lerp(u[:, 1], r.beta),
            "gamma": lerp(u[:, 2], r.gamma),
            "gain": lerp(u[:, 3:6], r.gain),
            "photons": torch.exp(lerp(u[:, 6], (log_lo, log_hi))),
            "read_noise": lerp(u[:, 7], r.read_noise),
        }
        device = torch.device(device) if device is not None else g.device
        return {k: v.to(device) for k, v in params.items()}

    # ------------------------------------------------------------------------------------ the model
    def noiseless(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``clip(gain_c * beta * (alpha * x)^gamma, 0, 1)``: the darkening without noise (differentiable in x)."""
        x = _as_float(x)
        p = {k: v.to(x.device, torch.float32) for k, v in params.items()}
        n = x.shape[0]
        _check_params(p, n)
        xf = x.float().clamp(0, 1)
        y = p["beta"].view(n, 1, 1, 1) * (p["alpha"].view(n, 1, 1, 1) * xf).pow(p["gamma"].view(n, 1, 1, 1))
        y = y * p["gain"].view(n, 3, 1, 1)
        return y.clamp(0, 1).to(x.dtype)

    def add_noise(self, y: torch.Tensor, params: dict[str, torch.Tensor],
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Poisson-Gaussian noise on a dark image ``y`` in [0, 1] (then 8-bit rounding if ``quantize``), clipped."""
        g = generator if generator is not None else _fresh_generator(y.device)
        n = y.shape[0]
        chi = params["photons"].to(g.device, torch.float32).view(n, 1, 1, 1)
        b = params["read_noise"].to(g.device, torch.float32).view(n, 1, 1, 1)
        yg = y.detach().to(g.device, torch.float32).clamp(0, 1)
        z = torch.poisson(yg * chi, generator=g) / chi
        z = z + torch.randn(yg.shape, generator=g, device=g.device, dtype=torch.float32) * b
        if self.ranges.quantize:
            z = torch.round(z * 255) / 255
        return z.clamp_(0, 1).to(y.device, y.dtype)

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor],
              generator: torch.Generator | None = None) -> torch.Tensor:
        """The pseudo low-light version of ``x`` (N, 3, H, W) under ``params``: ``add_noise(noiseless(x))``."""
        return self.add_noise(self.noiseless(x, params), params, generator)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(low, params)``: fresh per-image parameters and the degraded batch."""
        g = generator if generator is not None else _fresh_generator(x.device)
        params = self.sample(x.shape[0], g, x.device)
        return self.apply(x, params, g), params


HELD_OUT_SEED = 4321  # the one darkening of the held-out test crops: every run, benchmark and notebook scores on it


def held_out_pairs(images: torch.Tensor, degradation: Degradation | None = None,
                   seed: int = HELD_OUT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, reference)``, float (N, 3, H, W) in [0, 1]: the held-out normal-light ``images`` (uint8, a bundle's
    ``test.images``) darkened once by ``degradation`` (default: the default family) under ``seed`` on the CPU."""
    ref = _as_float(images).float()
    low = (degradation or Degradation())(ref, torch.Generator().manual_seed(seed))[0]
    return low, ref


def _as_float(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255
    if not x.is_floating_point():
        raise TypeError(f"expected a float image batch in [0, 1] (or uint8), got {x.dtype}")
    return x


def _check_params(p: dict, n: int) -> None:
    missing = {"alpha", "beta", "gamma", "gain"} - set(p)
    if missing:
        raise KeyError(f"degradation parameters lack {sorted(missing)} (make them with Degradation.sample)")
    if p["alpha"].shape[0] != n:
        raise ValueError(f"parameters for {p['alpha'].shape[0]} images, but the batch has {n}")


def _fresh_generator(device) -> torch.Generator:
    """A generator seeded from torch's global RNG (so torch.manual_seed still makes runs repeatable)."""
    g = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    g.manual_seed(int(torch.randint(0, 2 ** 62, (1,))))
    return g


# ============================================================================================ normal-light data
#: Colour photographs (and gray textures, copied to 3 channels) for training crops. ``stereo_motorcycle`` is the
#: left view of that stereo pair. Not used, on purpose: ``hubble_deep_field`` and ``retina`` (mostly black: dark
#: by nature, not normal-light scenes), ``cat`` (the same photo as ``chelsea``), ``colorwheel``/``logo``
#: (synthetic), and the photos that need a download (``eagle``, ``lily``, ...).
PHOTOS_TRAIN = ("astronaut", "rocket", "stereo_motorcycle", "immunohistochemistry", "camera", "brick", "gravel")
#: Held out: never cropped for training.
PHOTOS_TEST = ("chelsea", "coffee")
#: Gray textures among the photos: copied to 3 channels and given half the crop share of a colour photo's area.
GRAY_PHOTOS = ("camera", "brick", "gravel", "grass", "moon", "coins", "clock", "page", "text", "cell")
DOWNSCALE = (0.5, 1.0)  # random downscale of a photo before a training crop
MAX_TEST_TILES_PER_IMAGE = 6  # test crops per held-out image: up to a 2 x 3 (portrait 3 x 2) grid spread over it
MAX_TEST_CROPS = 64  # at most this many test crops in all (folders with many held-out images)
FOLDER_SPLIT_SEED = 0  # the folder train/test split is fixed, whatever the run's seed: runs stay comparable


@lru_cache(maxsize=None)
def _photo(name: str) -> torch.Tensor:
    """A scikit-image sample photograph as uint8 (3, H, W) (gray ones copied to 3 channels). Read-only: cached."""
    import skimage.data

    if name == "stereo_motorcycle":
        a = skimage.data.stereo_motorcycle()[0]
    else:
        a = getattr(skimage.data, name)()
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise TypeError(f"skimage.data.{name}() is {a.dtype}, not a uint8 photograph")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    t = torch.from_numpy(np.ascontiguousarray(a[:, :, :3].transpose(2, 0, 1)))
    t.requires_grad_(False)
    return t


def _check_sizes(patch_size: int, n_train: int, test_size: int) -> None:
    for name, v in (("patch_size", patch_size), ("n_train", n_train), ("test_size", test_size)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"load_lowlight_dataset: {name} must be a positive integer, got {v!r}")


def random_crops(images: list[torch.Tensor], n: int, size: int, generator: torch.Generator,
                 weights: list[float] | None = None, downscale: tuple[float, float] = DOWNSCALE) -> torch.Tensor:
    """``n`` random ``size x size`` crops, uint8 (n, 3, size, size), from uint8 (3, H, W) ``images``.

    Each crop picks an image (probability proportional to ``weights``, default its pixel count), a downscale
    ``s ~ U(downscale)`` of that image, and a uniform position; it is resampled bilinearly from an antialiased
    pyramid level (scales 1, 0.8, 0.64, 0.512: the residual factor stays in (0.8, 1], so no aliasing). Where the
    window would not fit (``size / s`` > the short side) ``s`` is raised so it fits: images smaller than ``size``
    are upscaled. One ``grid_sample`` call per (image, pyramid level, chunk of crops); no per-crop Python loop.
    """
    if weights is None:
        weights = [float(im.shape[-1] * im.shape[-2]) for im in images]
    probs = torch.tensor(weights, dtype=torch.float64)
    which = torch.multinomial(probs, n, replacement=True, generator=generator)
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    scale = downscale[0] + (downscale[1] - downscale[0]) * u[:, 0]
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    levels = (1.0, 0.8, 0.64, 0.512)
    for k, img in enumerate(images):
        idx = torch.nonzero(which == k).flatten()
        if len(idx) == 0:
            continue
        h, w = img.shape[-2:]
        s = torch.maximum(scale[idx], torch.tensor(size / min(h, w), dtype=torch.float64))
        win = size / s  # window side in source pixels
        x0 = u[idx, 1] * (w - win).clamp_min(0)
        y0 = u[idx, 2] * (h - win).clamp_min(0)
        # the coarsest level still at least as fine as each crop's scale
        level = torch.zeros(len(idx), dtype=torch.long)
        for li, lv in enumerate(levels):
            level = torch.where(s <= lv, torch.full_like(level, li), level)
        src = img.float()[None]
        steps = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        for li in level.unique().tolist():
            sel = torch.nonzero(level == li).flatten()
            lv = levels[li]
            pic = src if lv == 1.0 else F.interpolate(src, size=(max(1, round(h * lv)), max(1, round(w * lv))),
                                                      mode="bilinear", antialias=True, align_corners=False)
            for chunk in sel.split(512):
                gx = 2 * (x0[chunk, None] + steps[None] * win[chunk, None]) / w - 1  # (m, size) normalised
                gy = 2 * (y0[chunk, None] + steps[None] * win[chunk, None]) / h - 1
                m = len(chunk)
                grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
                grid = grid.to(torch.float32).reshape(1, m * size, size, 2)
                crops = F.grid_sample(pic, grid, mode="bilinear", padding_mode="border", align_corners=False)
                crops = crops.view(3, m, size, size).permute(1, 0, 2, 3)
                out[idx[chunk]] = crops.round_().clamp_(0, 255).to(torch.uint8)
    return out


def grid_crops(img: torch.Tensor, size: int, max_tiles: int = MAX_TEST_TILES_PER_IMAGE) -> torch.Tensor:
    """Deterministic non-overlapping ``size x size`` crops of a uint8 (3, H, W) image: a grid of up to ``max_tiles``
    tiles (2 x 3, or 3 x 2 for a portrait image, when ``max_tiles`` is 6) spread evenly over it. An image smaller than
    ``size`` is first upscaled (bilinear) so that its short side is ``size``."""
    h, w = img.shape[-2:]
    if min(h, w) < size:
        f = size / min(h, w)
        h, w = max(size, round(h * f)), max(size, round(w * f))
        img = F.interpolate(img.float()[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        img = img.round().clamp(0, 255).to(torch.uint8)
    rows_fit, cols_fit = h // size, w // size
    # the most tiles that fit (at most max_tiles), in the grid shape closest to the image's aspect ratio
    shapes = [(r, c) for r in range(1, rows_fit + 1) for c in range(1, cols_fit + 1) if r * c <= max(1, max_tiles)]
    best = max(shapes, key=lambda rc: (rc[0] * rc[1], -abs(math.log((rc[1] / rc[0]) / (w / h)))))
    r, c = best
    tops = np.linspace(0, h - size, r).round().astype(int) if r > 1 else [(h - size) // 2]
    lefts = np.linspace(0, w - size, c).round().astype(int) if c > 1 else [(w - size) // 2]
    return torch.stack([img[:, t:t + size, l:l + size] for t in tops for l in lefts]).contiguous()


def _test_crops(images: list[torch.Tensor], size: int) -> torch.Tensor:
    crops = [grid_crops(im, size) for im in images]
    return torch.cat(crops)[:MAX_TEST_CROPS].contiguous()


def _unlabelled(x: torch.Tensor) -> ImageSet:
    return ImageSet(x, torch.full((len(x),), -1, dtype=torch.long))


def _bundle(name, train, test, source) -> DatasetBundle:
    return DatasetBundle(name, _unlabelled(train), _unlabelled(test), classes=[], mean=IMAGENET_MEAN,
                         std=IMAGENET_STD, crop_scale=(1.0, 1.0), source=source)


def _check_patch(patch_size: int, images: list[torch.Tensor]) -> None:
    """A training crop may upscale a small image, up to twice the largest short side among the training images,
    never more (memory grows with the square of the patch: --patch-size 100000 asked for 61 TB)."""
    limit = 2 * max(min(im.shape[-2:]) for im in images)
    if patch_size > limit:
        raise ConfigError(f"patch_size={patch_size} is larger than the training images allow: at most {limit} px "
                          "(twice the largest short side among them)")


def _load_photos(patch_size: int, n_train: int, test_size: int, seed: int) -> DatasetBundle:
    try:
        train_imgs = [_photo(n) for n in PHOTOS_TRAIN]
        test_imgs = [_photo(n) for n in PHOTOS_TEST]
    except Exception as e:  # an unusual scikit-image install without its sample data
        raise DatasetUnavailable(f"the embedded 'photos' need scikit-image's sample photographs ({e}); "
                                 f"`pip install scikit-image`, or use folder:<path> with your own images") from e
    weights = [im.shape[-1] * im.shape[-2] * (0.5 if n in GRAY_PHOTOS else 1.0)
               for n, im in zip(PHOTOS_TRAIN, train_imgs)]
    _check_patch(patch_size, train_imgs)
    g = torch.Generator().manual_seed(int(seed))
    train = random_crops(train_imgs, n_train, patch_size, g, weights)
    test = _test_crops(test_imgs, test_size)
    gray = [n for n in PHOTOS_TRAIN if n in GRAY_PHOTOS]
    source = (f"scikit-image sample photographs (embedded). Train: {n_train} random {patch_size}x{patch_size} crops "
              f"(downscale {DOWNSCALE[0]}-{DOWNSCALE[1]}, seed {seed}) of {', '.join(PHOTOS_TRAIN)} "
              f"(gray {', '.join(gray)} copied to 3 channels, half weight). Test: {len(test)} {test_size}x{test_size} "
              f"crops of the held-out {', '.join(PHOTOS_TEST)}.")
    return _bundle("photos", train, test, source)


def _load_folder(spec: str, patch_size: int, n_train: int, test_size: int, seed: int,
                 max_pixels: int) -> DatasetBundle:
    path = folder_path(spec)
    try:
        files = list_images(path)
    except (FileNotFoundError, ImageReadError) as e:
        raise DatasetUnavailable(f"{spec}: {e}") from e
    images, names, failures = [], [], []
    for p, a, reason in iter_images(files, max_pixels):  # one at a time, kept as uint8 (3 bytes a pixel)
        if a is None:
            failures.append((p, reason))
            continue
        images.append(torch.from_numpy(np.round(a * 255).astype(np.uint8).transpose(2, 0, 1).copy()))
        names.append(p.name)
    if failures:
        warnings.warn(f"{spec}: skipped {len(failures)} unreadable file(s): "
                      + "; ".join(reason for _, reason in failures), stacklevel=3)
    if not images:
        raise DatasetUnavailable(f"{spec}: none of the {len(files)} image file(s) could be read: "
                                 + "; ".join(reason for _, reason in failures[:5])
                                 + (" ..." if len(failures) > 5 else ""))
    if len(images) == 1:
        train_idx, test_idx = [0], [0]
        note = "a single image: the test crops come from the training image itself"
    else:
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(FOLDER_SPLIT_SEED)).tolist()
        n_test = max(1, round(0.1 * len(images)))
        test_idx, train_idx = sorted(perm[:n_test]), sorted(perm[n_test:])
        note = f"{len(train_idx)} train / {len(test_idx)} test images (fixed split)"
    _check_patch(patch_size, [images[i] for i in train_idx])
    g = torch.Generator().manual_seed(int(seed))
    train = random_crops([images[i] for i in train_idx], n_train, patch_size, g)
    test = _test_crops([images[i] for i in test_idx], test_size)
    source = (f"{path}: {note}; train: {n_train} random {patch_size}x{patch_size} crops (downscale "
              f"{DOWNSCALE[0]}-{DOWNSCALE[1]}, seed {seed}); test: {len(test)} {test_size}x{test_size} crops of "
              f"{', '.join(names[i] for i in test_idx[:10])}{' ...' if len(test_idx) > 10 else ''}")
    if failures:
        source += (f"; {len(failures)} unreadable file(s) skipped: "
                   + ", ".join(p.name for p, _ in failures[:10]) + (" ..." if len(failures) > 10 else ""))
    return _bundle(spec, train, test, source)


def load_lowlight_dataset(name: str = "photos", patch_size: int = 64, n_train: int = 2048, test_size: int = 128,
                          seed: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS,
                          lol_dir: str | os.PathLike | None = None) -> DatasetBundle:
    """Normal-light images for low-light enhancement as a :class:`DatasetBundle` (labels -1, no classes, ImageNet
    mean/std).

    ``train``: ``n_train`` random ``patch_size`` crops, uint8 (n_train, 3, P, P), seeded by ``seed`` (see
    :func:`random_crops`). ``test``: deterministic ``test_size`` crops of the held-out images (:func:`grid_crops`,
    at most :data:`MAX_TEST_CROPS`), the same for every seed.

    * ``"photos"``: scikit-image's sample photographs, train :data:`PHOTOS_TRAIN`, test :data:`PHOTOS_TEST`.
    * ``"folder:<path>"``: a folder of the user's images (or one image); unreadable files are skipped with a
      warning naming each and listed in ``source``; a fixed 90/10 split by image (at least one test image; one image
      serves as both). Needs every readable image in memory at once (3 bytes a pixel).

    ``lol_dir``: a LOL-style folder whose pairs (:func:`load_lol_pairs`) go to ``pairs`` / ``pair_failures``, read
    once here for every user (a learned troublemaker, the evaluation).
    """
    _check_sizes(patch_size, n_train, test_size)
    if name == "photos":
        bundle = _load_photos(int(patch_size), int(n_train), int(test_size), seed)
    elif isinstance(name, str) and name.startswith("folder:"):
        bundle = _load_folder(name, int(patch_size), int(n_train), int(test_size), seed, max_pixels)
    else:
        raise DatasetUnavailable(f"unknown low-light dataset {name!r}: use 'photos' (embedded scikit-image "
                                 f"photographs) or 'folder:<path>' (a folder of your own normal-light images)")
    if lol_dir:
        bundle.pairs, bundle.pair_failures = load_lol_pairs(lol_dir, max_pixels)
    return bundle


# ============================================================================================ LOL pairs
LOL_LAYOUTS = ("<path>/low + <path>/high", "<path>/eval15/low|high and/or <path>/our485/low|high (LOL)",
               "<path>/Low + <path>/Normal (LOL-v2, e.g. low00001.png <-> normal00001.png), also one or two "
               "levels down (LOL-v2's Real_captured/Test/...)")
_LOW_NAMES = ("low",)
_HIGH_NAMES = ("high", "normal")


def _pair_key(stem: str) -> str:
    """low00001 / normal00001 / 1_low / 00001 -> the shared key ('1' for numbers, else the lower-case rest)."""
    s = stem.lower()
    s = re.sub(r"^(low|normal|high)[_\-\s]*", "", s)
    s = re.sub(r"[_\-\s]*(low|normal|high)$", "", s)
    return str(int(s)) if s.isdigit() else s


def _pair_dirs(root: Path, depth: int = 3) -> list[tuple[Path, Path]]:
    found = []

    def visit(d: Path, level: int):
        try:
            subs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        low = next((p for p in subs if p.name.lower() in _LOW_NAMES), None)
        high = next((p for p in subs if p.name.lower() in _HIGH_NAMES), None)
        if low is not None and high is not None:
            found.append((low, high))
        if level < depth:
            for p in subs:
                if p not in (low, high):
                    visit(p, level + 1)

    visit(root, 0)
    return found


def load_lol_pairs(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS
                   ) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[tuple[Path, str]]]:
    """Paired low/normal-light images of a LOL-style folder: ``(pairs, failures)``.

    ``pairs``: ``[(name, low, high)]`` with float32 (H, W, 3) arrays in [0, 1] of the same size, sorted by folder and
    name; ``name`` is the shared file key, prefixed by the sub-folder (``eval15/1``) when the pairs are not directly
    under ``path``. ``failures``: ``[(path, reason)]`` for unmatched files, unreadable files (their pair is dropped)
    and pairs of different sizes. Layouts: :data:`LOL_LAYOUTS`; files pair by stem (``1.png`` <-> ``1.png``,
    ``low00001.png`` <-> ``normal00001.png``: a low/normal/high prefix or suffix is ignored, numbers match by value).
    Raises :class:`DatasetUnavailable` when ``path`` is missing or no pair can be read.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetUnavailable(f"LOL pairs: {root} is not a folder. Accepted layouts: " + "; ".join(LOL_LAYOUTS))
    dirs = _pair_dirs(root)
    if not dirs:
        raise DatasetUnavailable(f"LOL pairs: no low/high folders found under {root}. Accepted layouts: "
                                 + "; ".join(LOL_LAYOUTS))
    pairs, failures = [], []
    for low_dir, high_dir in dirs:
        rel = low_dir.parent.relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"

        def keyed(files, where):
            table = {}
            for f in files:
                k = _pair_key(f.stem)
                if k in table:
                    failures.append((f, f"{f}: same name key {k!r} as {table[k].name} in {where}: skipped"))
                else:
                    table[k] = f
            return table

        lows, highs = keyed(image_files(low_dir), low_dir), keyed(image_files(high_dir), high_dir)
        for k in sorted(set(lows) - set(highs)):
            failures.append((lows[k], f"{lows[k]}: no normal-light image with the same name in {high_dir}"))
        for k in sorted(set(highs) - set(lows)):
            failures.append((highs[k], f"{highs[k]}: no low-light image with the same name in {low_dir}"))
        common = sorted(set(lows) & set(highs), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
        for k in common:
            arrays = []
            for f in (lows[k], highs[k]):
                try:
                    arrays.append(read_image(f, max_pixels=max_pixels))
                except ImageReadError as e:
                    failures.append((f, f"{e} (pair {prefix}{k} dropped)"))
            if len(arrays) < 2:
                continue
            lo, hi = arrays
            if lo.shape != hi.shape:
                failures.append((lows[k], f"{lows[k]}: size {lo.shape[1]}x{lo.shape[0]} differs from its "
                                           f"normal-light {highs[k].name} ({hi.shape[1]}x{hi.shape[0]}): pair skipped"))
                continue
            pairs.append((f"{prefix}{k}", lo, hi))
    if not pairs:
        detail = "; ".join(r for _, r in failures[:5]) + (" ..." if len(failures) > 5 else "")
        raise DatasetUnavailable(f"LOL pairs: no readable low/normal pair under {root}"
                                 + (f" ({detail})" if detail else " (the low/high folders hold no images)")
                                 + ". Accepted layouts: " + "; ".join(LOL_LAYOUTS))
    return pairs, failures


def aligned_crops(pairs: list[tuple[torch.Tensor, torch.Tensor]], n: int, size: int, generator: torch.Generator,
                  device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` aligned random ``size`` x ``size`` crops ``(low, high)``, each ``(n, 3, size, size)``, from float
    ``(3, H, W)`` pairs picked at random (a pair smaller than ``size`` is upscaled first, bilinear)."""
    pick = torch.randint(len(pairs), (n,), generator=generator, device=generator.device).tolist()
    lows, highs = [], []
    for i in pick:
        lo, hi = pairs[i]
        if min(lo.shape[-2:]) < size:
            scale = size / min(lo.shape[-2:])
            lo, hi = (F.interpolate(t[None], scale_factor=scale, mode="bilinear", align_corners=False)[0]
                      for t in (lo, hi))
        h, w = lo.shape[-2:]
        top = int(torch.randint(h - size + 1, (1,), generator=generator, device=generator.device))
        left = int(torch.randint(w - size + 1, (1,), generator=generator, device=generator.device))
        lows.append(lo[:, top:top + size, left:left + size])
        highs.append(hi[:, top:top + size, left:left + size])
    return torch.stack(lows).to(device), torch.stack(highs).to(device)
