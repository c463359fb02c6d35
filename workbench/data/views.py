"""Two-view contrastive augmentation, random per sample but computed for the whole batch at once on its device.

SimCLR's view distribution t ~ T (Chen et al., 2020): random resized crop + horizontal flip, colour jitter
(p=0.8), random grayscale (p=0.2) and, for images of 64 px or more, Gaussian blur (p=0.5). torchvision's
transforms draw one set of parameters per call, so correct per-sample randomness needs one Python call per
image; here every parameter is a tensor of shape ``(B,)`` and each operation is one batched kernel:

* crop + flip: one affine grid per sample, ``theta_b = [[s_x * f_b, 0, c_x], [0, s_y, c_y]]`` (normalised
  coordinates, ``f_b = -1`` flips), sampled bilinearly with ``grid_sample`` straight to the output size;
* brightness ``x * b``, contrast ``x * c + (1 - c) * mean(gray(x))``, saturation ``x * s + (1 - s) * gray(x)``,
  hue as a rotation of the chroma plane in YIQ space (an approximation of torchvision's HSV shift), applied
  in that fixed order, each factor drawn per sample;
* blur: a separable Gaussian kernel per sample, applied as one grouped convolution.

Differences from torchvision, on purpose: a crop whose drawn size does not fit is clamped to the image instead
of re-drawn up to 10 times, and the jitter order is fixed. All randomness comes from the ``torch.Generator``
given, so views are reproducible under a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_GRAY = (0.299, 0.587, 0.114)
PIXELS_PER_PASS = 1 << 22  # images x view pixels in one forward pass without gradient (ContrastiveViews.eval_batch)


@dataclass
class ViewConfig:
    size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float | None = None  # None: 0.5 for size >= 64, else 0 (SimCLR's CIFAR setting)
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self):
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        for name in ("flip_p", "jitter_p", "gray_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.blur_p is None:
            self.blur_p = 0.5 if self.size >= 64 else 0.0


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


class ContrastiveViews:
    """Random views of a batch: ``views(x, n=2)`` returns ``n`` tensors, each ``(B, C, size, size)``.

    ``x`` is ``uint8`` or float in [0, 1], ``(B, C, H, W)``, on any device; the output is normalised with
    ``mean``/``std`` when given (else left in [0, 1]).
    """

    def __init__(self, config: ViewConfig, mean=None, std=None, generator: torch.Generator | None = None):
        self.config = config
        self.mean = mean
        self.std = std
        self.generator = generator

    # -------------------------------------------------------------------------------- the pieces
    def crop_flip(self, x: torch.Tensor, g: torch.Generator, size: int | None = None,
                  scale: tuple[float, float] | None = None) -> torch.Tensor:
        c = self.config
        b, dev = x.shape[0], x.device
        lo, hi = scale or c.crop_scale
        area = _uniform(b, lo, hi, g, dev)
        log_ratio = _uniform(b, math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1]), g, dev)
        ratio = torch.exp(log_ratio)
        sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width as a fraction of the image width
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - sx)  # centre in [-1, 1] coordinates
        cy = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - sy)
        flip = torch.where(torch.rand(b, generator=g, device=dev) < c.flip_p, -1.0, 1.0).to(dev)
        theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0] = sx * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = sy
        theta[:, 1, 2] = cy
        out = size or c.size
        grid = F.affine_grid(theta, [b, x.shape[1], out, out], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def color(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c = self.config
        b, dev = x.shape[0], x.device
        apply = (torch.rand(b, generator=g, device=dev) < c.jitter_p).to(x.dtype).view(b, 1, 1, 1)

        def factor(strength):
            f = _uniform(b, max(0.0, 1 - strength), 1 + strength, g, dev).to(x.dtype).view(b, 1, 1, 1)
            return apply * f + (1 - apply)  # identity where jitter is not applied

        x = (x * factor(c.brightness)).clamp(0, 1)
        gray = _gray(x) if x.shape[1] == 3 else x
        cf = factor(c.contrast)
        x = (x * cf + (1 - cf) * gray.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
        if x.shape[1] == 3:
            sf = factor(c.saturation)
            x = (x * sf + (1 - sf) * _gray(x)).clamp(0, 1)
            if c.hue > 0:
                angle = _uniform(b, -c.hue, c.hue, g, dev).to(x.dtype) * 2 * math.pi * apply.view(b)
                x = self._rotate_hue(x, angle)
            gray_mask = (torch.rand(b, generator=g, device=dev) < c.gray_p).to(x.dtype).view(b, 1, 1, 1)
            x = gray_mask * _gray(x).expand_as(x) + (1 - gray_mask) * x
        return x

    @staticmethod
    def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        rgb2yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                               device=x.device, dtype=x.dtype)
        yiq2rgb = torch.linalg.inv(rgb2yiq)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.zeros(len(angle), 3, 3, device=x.device, dtype=x.dtype)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        m = yiq2rgb @ rot @ rgb2yiq  # (B, 3, 3)
        return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)

    def blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c = self.config
        b, ch, h, w = x.shape
        dev = x.device
        k = max(3, int(0.1 * min(h, w)) // 2 * 2 + 1)  # SimCLR: kernel 10% of the image side, odd
        apply = torch.rand(b, generator=g, device=dev) < c.blur_p
        sigma = _uniform(b, *c.blur_sigma, g, dev)
        r = torch.arange(k, device=dev, dtype=x.dtype) - k // 2
        kern = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
        kern = kern / kern.sum(1, keepdim=True)
        ident = torch.zeros(k, device=dev, dtype=x.dtype)
        ident[k // 2] = 1
        kern = torch.where(apply[:, None], kern, ident)  # (B, k)
        kern = kern.repeat_interleave(ch, 0)  # one kernel per (sample, channel) group
        y = x.reshape(1, b * ch, h, w)
        y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern.view(b * ch, 1, 1, k), groups=b * ch)
        y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern.view(b * ch, 1, k, 1), groups=b * ch)
        return y.view(b, ch, h, w)

    # -------------------------------------------------------------------------------- the whole view
    def view(self, x: torch.Tensor, g: torch.Generator | None = None, size: int | None = None,
             scale: tuple[float, float] | None = None, normalize: bool = True) -> torch.Tensor:
        g = g or self.generator or torch.default_generator
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        v = self.crop_flip(x, g, size=size, scale=scale)
        v = self.color(v, g)
        if self.config.blur_p > 0:
            v = self.blur(v, g)
        return self.normalize(v) if normalize else v

    def eval_batch(self, most: int = 1024) -> int:
        """Images per forward pass when whole sets go through the network without gradient (the evaluation's
        features, DEPICT's targets, G-SimCLR's pseudo-labels): at most ``most``, fewer for large views, so that a
        pass holds ``PIXELS_PER_PASS`` view pixels (1024 images at 64 px, 16 at 512 px, 4 at 1024 px, where 1024
        images would need ~100 GB for the first block's activations)."""
        return max(1, min(most, PIXELS_PER_PASS // (self.config.size * self.config.size)))

    def prepare(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Images as the network sees them without augmentation: float, resized to the view size, normalised."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        size = self.config.size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.normalize(x) if normalize else x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def __call__(self, x: torch.Tensor, n: int = 2, g: torch.Generator | None = None) -> list[torch.Tensor]:
        return [self.view(x, g) for _ in range(n)]


def translate_flip(x: torch.Tensor, g: torch.Generator, padding: int, flip_p: float = 0.5) -> torch.Tensor:
    """torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip`` with parameters per sample, batched:
    each image is zero-padded by ``padding`` pixels, a window of its own size is cut at a random integer offset in
    ``[0, 2 padding]`` on each axis, and it is mirrored with probability ``flip_p``."""
    b, c, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=g, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=g, device=dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
    out = xp[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
             rows, cols]
    flip = (torch.rand(b, generator=g, device=dev) < flip_p).view(b, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def image_grid(images: torch.Tensor, nrow: int, pad: int = 1) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images (uint8 or float in [0, 1]) into one ``uint8 (3, H', W')`` picture."""
    from torchvision.utils import make_grid

    x = torch.as_tensor(images)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    out = make_grid(x.cpu(), nrow=nrow, padding=pad, pad_value=1.0)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def views_grid(images: torch.Tensor, views: ContrastiveViews, n_images: int = 8, n_views: int = 2,
               seed: int = 0) -> torch.Tensor:
    """A ``uint8 (3, H, W)`` grid for inspection: row 0 the originals, rows 1..n_views their random views."""
    x = images[:n_images]
    if x.dtype == torch.uint8:
        x = x.float() / 255
    g = torch.Generator(device=x.device).manual_seed(seed)
    size = views.config.size
    rows = [F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)]
    rows += [views.view(x, g, normalize=False) for _ in range(n_views)]
    return image_grid(torch.cat(rows), nrow=len(x), pad=max(1, size // 16))
