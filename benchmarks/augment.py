"""Throughput of two-view SimCLR augmentation: the workbench's batched views vs torchvision, image by image.

What is measured (images/s = source images turned into two augmented, normalised float views per second):

* ``workbench``: ``ContrastiveViews(ViewConfig(size, crop_scale), mean, std)(x, n=2, g=generator)`` on a
  ``uint8 (B, C, H, W)`` batch on the CPU, all samples at once (random resized crop + flip, colour jitter p=0.8,
  grayscale p=0.2, normalisation). Timed with the benchmark's torch thread count and again with 1 thread.
* ``torchvision v2, tensor``: the same recipe as ``torchvision.transforms.v2`` (RandomResizedCrop,
  RandomHorizontalFlip, RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8), RandomGrayscale(0.2), ToDtype,
  Normalize) called twice per image on ``uint8`` tensor images, then stacked into two ``(B, C, S, S)`` batches,
  which is what a per-sample Dataset/collate pipeline does.
* ``torchvision v2, PIL``: the same on PIL images (the geometric and colour ops run in PIL), as in the classic
  ``Dataset.__getitem__`` + PIL pipeline that lightly's transforms use.
* ``kornia``: the same recipe as ``kornia.augmentation.AugmentationSequential`` (RandomResizedCrop,
  RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), RandomGrayscale(p=0.2), Normalize), batched with
  per-sample parameters, called twice on the float batch: the GPU-native library stable-pretraining uses, here
  on the CPU with the benchmark's threads (on grayscale images only brightness and contrast jitter, as the
  workbench does). Skipped with a line when kornia is not installed (``pip install -e .[bench]``).

Two cases: RGB 32x32 (random 32x32 patches of scikit-image's sample photos; CIFAR is not available offline) with
crop scale (0.08, 1), and Fashion-MNIST 28x28 grayscale with the workbench's Fashion-MNIST crop scale (0.2, 1).
Every repetition takes a new batch and times all contenders on it, in rotating order; the table gives medians.

    python benchmarks/augment.py [--batch 256] [--reps 15] [--threads 2]
"""
from __future__ import annotations

import argparse

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from _common import machine_line, markdown_table, median, setup_threads, timed

import numpy as np
import torch

from workbench.threads import intra_op_threads

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


# ------------------------------------------------------------------------------------------------ data
def rgb_patches(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``uint8 (n, 3, size, size)``: random patches of scikit-image's bundled colour photos."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)()[..., :3] for name in SKIMAGE_PHOTOS]
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        im = photos[rng.integers(len(photos))]
        y = rng.integers(im.shape[0] - size + 1)
        x = rng.integers(im.shape[1] - size + 1)
        out[i] = im[y: y + size, x: x + size].transpose(2, 0, 1)
    return torch.from_numpy(out)


def fashion_images(n: int, seed: int = 0):
    """``uint8 (n, 1, 28, 28)`` Fashion-MNIST training images and the dataset's (mean, std, crop_scale)."""
    from workbench.data import load_dataset

    bundle = load_dataset("fashion-mnist")
    idx = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(seed))[:n]
    return bundle.train.images[idx], bundle.mean, bundle.std, bundle.crop_scale


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    f = x.float().div(255)
    return tuple(f.mean(dim=(0, 2, 3)).tolist()), tuple(f.std(dim=(0, 2, 3)).tolist())


# ------------------------------------------------------------------------------------------------ contenders
def torchvision_recipe(size: int, scale, mean, std, pil: bool):
    """The SimCLR view recipe as one ``torchvision.transforms.v2`` pipeline (one call = one view)."""
    from torchvision.transforms import v2

    ops = [
        v2.RandomResizedCrop(size, scale=scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(0.2),
    ]
    if pil:
        ops.append(v2.PILToTensor())
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def kornia_recipe(size: int, scale, mean, std, channels: int):
    """The SimCLR view recipe as one batched ``kornia.augmentation.AugmentationSequential`` (one call = one view of
    every image, parameters drawn per sample); ``None`` without kornia."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    jitter = (K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8) if channels == 3 else K.ColorJitter(0.4, 0.4, p=0.8))
    ops = [K.RandomResizedCrop((size, size), scale=scale), K.RandomHorizontalFlip(), jitter]
    if channels == 3:
        ops.append(K.RandomGrayscale(p=0.2))
    ops.append(K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std)))
    return K.AugmentationSequential(*ops)


def kornia_two_views(pipeline, x: torch.Tensor) -> list[torch.Tensor]:
    xf = x.float().div_(255)
    return [pipeline(xf), pipeline(xf)]


def per_image_two_views(transform, images: list) -> list[torch.Tensor]:
    """Two views of every image, one transform call each, collated into two batches."""
    v1, v2_ = [], []
    for im in images:
        v1.append(transform(im))
        v2_.append(transform(im))
    return [torch.stack(v1), torch.stack(v2_)]


def to_tensor_images(x: torch.Tensor) -> list:
    from torchvision import tv_tensors

    return [tv_tensors.Image(im) for im in x]


def to_pil_images(x: torch.Tensor) -> list:
    from PIL import Image

    arr = x.permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


# ------------------------------------------------------------------------------------------------ benchmark
def bench_case(name: str, pool: torch.Tensor, size: int, scale, mean, std, batch: int, reps: int,
               threads: int) -> list[list]:
    """Interleaved repetitions over new batches; returns table rows for this case."""
    from workbench.data import ContrastiveViews, ViewConfig

    views = ContrastiveViews(ViewConfig(size=size, crop_scale=scale), mean, std)
    g = torch.Generator().manual_seed(0)
    tv_tensor = torchvision_recipe(size, scale, mean, std, pil=False)
    tv_pil = torchvision_recipe(size, scale, mean, std, pil=True)
    torch.manual_seed(0)  # torchvision draws from the global generator

    def run_workbench(x, n_threads):
        with intra_op_threads(n_threads):
            return timed(views, x, n=2, g=g)

    contenders = {
        f"workbench ContrastiveViews ({threads} threads)": lambda x, t, p: run_workbench(x, threads),
        "workbench ContrastiveViews (1 thread)": lambda x, t, p: run_workbench(x, 1),
        "torchvision v2 per image, uint8 tensor": lambda x, t, p: timed(per_image_two_views, tv_tensor, t),
        "torchvision v2 per image, PIL": lambda x, t, p: timed(per_image_two_views, tv_pil, p),
    }
    kornia = kornia_recipe(size, scale, mean, std, pool.shape[1])
    if kornia is not None:
        contenders[f"kornia AugmentationSequential, batched ({threads} threads)"] = (
            lambda x, t, p: timed(kornia_two_views, kornia, x))
    names = list(contenders)
    times: dict[str, list[float]] = {k: [] for k in names}
    n_batches = len(pool) // batch
    for rep in range(reps + 1):  # repetition 0 is a warm-up and is not recorded
        x = pool[(rep % n_batches) * batch: (rep % n_batches + 1) * batch]
        tensors, pils = to_tensor_images(x), to_pil_images(x)  # what a Dataset would hold; not timed
        order = names[rep % len(names):] + names[: rep % len(names)]  # rotate who goes first
        for k in order:
            dt, out = contenders[k](x, tensors, pils)
            assert len(out) == 2 and out[0].shape == (batch, x.shape[1], size, size), (k, out[0].shape)
            if rep:
                times[k].append(dt)

    tv_rate = batch / median(times["torchvision v2 per image, uint8 tensor"])
    pil_rate = batch / median(times["torchvision v2 per image, PIL"])
    k_name = next((k for k in names if k.startswith("kornia")), None)
    k_rate = batch / median(times[k_name]) if k_name else float("nan")
    rows = []
    for k in names:
        rate = batch / median(times[k])
        rows.append([name, k, f"{rate:,.0f}", f"{rate / tv_rate:.1f}x", f"{rate / pil_rate:.1f}x",
                     f"{rate / k_rate:.1f}x" if k_name else "n/a"])
    return rows


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--reps", type=int, default=15, help="timed repetitions per contender (medians reported)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    threads = setup_threads(args.threads)

    pool_size = args.batch * 8
    rgb = rgb_patches(pool_size)
    rgb_mean, rgb_std = channel_stats(rgb)
    gray, g_mean, g_std, g_scale = fashion_images(pool_size)

    rows = bench_case("RGB 32x32 (skimage photo patches)", rgb, 32, (0.08, 1.0), rgb_mean, rgb_std, args.batch,
                      args.reps, threads)
    rows += bench_case("gray 28x28 (Fashion-MNIST)", gray, 28, g_scale, g_mean, g_std, args.batch, args.reps,
                       threads)
    table = markdown_table(["images", "pipeline (2 views/image)", "images/s", "vs tv tensor", "vs tv PIL",
                            "vs kornia"], rows)
    wb = [r for r in rows if r[1].startswith(f"workbench ContrastiveViews ({threads}")]
    speedups = ", ".join(f"{r[0].split(' (')[0]}: {r[3]}" for r in wb)
    ok = all(float(r[3][:-1]) >= 10 for r in wb)
    if all(r[5] != "n/a" for r in wb):
        vs_kornia = ", ".join(f"{r[0].split(' (')[0]}: {r[5]}" for r in wb)
        k_ok = all(float(r[5][:-1]) >= 2 for r in wb)
        kornia_line = f"Over kornia, batched on the CPU: {vs_kornia} (goal >= 2x: {'met' if k_ok else 'NOT met'})."
    else:
        kornia_line = "kornia is not installed: `pip install -e .[bench]` adds it as a contender."
    text = (f"### Two-view augmentation throughput (batch {args.batch}, median of {args.reps} interleaved reps)\n\n"
            f"{table}\n\nSpeed-up of the workbench over torchvision v2 per image (tensor): {speedups} "
            f"(goal >= 10x: {'met' if ok else 'NOT met'}). {kornia_line}\n{machine_line()}\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
