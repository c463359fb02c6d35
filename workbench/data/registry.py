"""Dataset registry.

Every dataset is loaded into memory as a ``uint8`` tensor ``(N, C, H, W)`` plus integer labels (``-1`` where a
sample has none). The training engine indexes batches directly from that tensor and builds the views on the
device, so there is no per-image Python work in the training loop.

Known names (see :func:`describe_datasets`):

* ``digits``: scikit-learn's 1797 real 8x8 handwritten digits. Always available: the embedded default.
* ``fashion-mnist``: 70k 28x28 clothing images, read from ``<root>/fashion-mnist/`` or from Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/``), or downloaded on request.
* ``mnist``, ``cifar10``, ``stl10``: through torchvision into ``<root>/``; downloaded only when asked.
* ``folder:<path>``: a user's own images, either an ImageFolder tree (one sub-folder per class) or a flat
  folder (no labels). Images are resized to ``image_size`` (default 32).
"""
from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class DatasetUnavailable(RuntimeError):
    """A dataset is unknown, or known but not on this machine; the message says how to get it."""


@dataclass
class ImageSet:
    """Images as ``uint8 (N, C, H, W)`` and labels ``int64 (N,)`` (``-1`` = unlabelled)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_labels(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def subset(self, index) -> "ImageSet":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class DatasetBundle:
    """What the engine needs from a dataset.

    ``train`` is what the self-supervised method sees (labels ignored), ``memory`` the labelled bank for the kNN
    probe (usually ``train``), ``test`` the held-out split the probes are scored on. Low-light datasets may carry
    real ``pairs`` ``[(name, low, high)]`` (float32 (H, W, 3) in [0, 1], from a LOL-style folder) and the
    ``pair_failures`` ``[(path, reason)]`` met while reading them.
    """

    name: str
    train: ImageSet
    test: ImageSet
    memory: ImageSet | None = None
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    crop_scale: tuple[float, float] = (0.08, 1.0)
    source: str = ""
    pairs: list = field(default_factory=list)
    pair_failures: list = field(default_factory=list)

    def __post_init__(self):
        if self.memory is None:
            self.memory = self.train
        if not self.mean:
            x = self.train.images[:10000].float().div_(255)
            self.mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
            self.std = tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())

    def with_train_subset(self, n: int, seed: int = 0) -> "DatasetBundle":
        """The same dataset training on a seeded random ``n`` of its images (normalisation statistics unchanged;
        the kNN memory bank becomes the subset when it was the training split)."""
        index = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))[:n]
        train = self.train.subset(index)
        memory = train if self.memory is self.train else self.memory
        return DatasetBundle(self.name, train, self.test, memory, self.classes, self.mean, self.std,
                             self.crop_scale, f"{self.source} (subset of {n})", self.pairs, self.pair_failures)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full batches in one pass over the training split (a batch larger than the split is the whole split)."""
        n = len(self.train)
        return max(1, n // min(batch_size, n)) if n else 0

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    how_to_get: str
    loader: Callable[..., DatasetBundle]


# --------------------------------------------------------------------------------------------- loaders
def _split(images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int = 0):
    from sklearn.model_selection import train_test_split

    tr_x, te_x, tr_y, te_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return ImageSet(torch.from_numpy(tr_x), torch.from_numpy(tr_y)), ImageSet(torch.from_numpy(te_x), torch.from_numpy(te_y))


def _load_digits(root: Path, download: bool, image_size: int | None) -> DatasetBundle:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16 -> 0..255
    y = d.target.astype(np.int64)
    train, test = _split(x, y, test_fraction=0.2)
    return DatasetBundle("digits", train, test, classes=[str(i) for i in range(10)], crop_scale=(0.4, 1.0),
                         source="scikit-learn load_digits (embedded)")


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).exists():
            return folder / name
    return None


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def _load_fashion_mnist(root: Path, download: bool, image_size: int | None) -> DatasetBundle:
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    candidates = [root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]
    for folder in candidates:
        paths = [_find_idx(folder, s) for s in stems]
        if all(paths):
            xtr, ytr, xte, yte = (_read_idx(p) for p in paths)
            return DatasetBundle(
                "fashion-mnist",
                ImageSet(torch.from_numpy(xtr.copy())[:, None], torch.from_numpy(ytr.astype(np.int64))),
                ImageSet(torch.from_numpy(xte.copy())[:, None], torch.from_numpy(yte.astype(np.int64))),
                classes=FASHION_CLASSES, crop_scale=(0.2, 1.0), source=str(folder),
            )
    if download:
        from torchvision.datasets import FashionMNIST

        tr = FashionMNIST(str(root), train=True, download=True)
        te = FashionMNIST(str(root), train=False, download=True)
        return _from_torchvision_tensors("fashion-mnist", tr.data, tr.targets, te.data, te.targets, FASHION_CLASSES,
                                         crop_scale=(0.2, 1.0), source=str(root))
    raise DatasetUnavailable(_missing("fashion-mnist", [str(c) for c in candidates]))


def _from_torchvision_tensors(name, xtr, ytr, xte, yte, classes, crop_scale, source) -> DatasetBundle:
    def to_nchw(x):
        x = torch.as_tensor(np.asarray(x))
        if x.ndim == 3:
            return x[:, None].contiguous()
        if x.shape[-1] in (1, 3):  # NHWC
            return x.permute(0, 3, 1, 2).contiguous()
        return x.contiguous()

    return DatasetBundle(
        name,
        ImageSet(to_nchw(xtr), torch.as_tensor(np.asarray(ytr), dtype=torch.long)),
        ImageSet(to_nchw(xte), torch.as_tensor(np.asarray(yte), dtype=torch.long)),
        classes=list(classes), crop_scale=crop_scale, source=source,
    )


def _torchvision_loader(name: str):
    def load(root: Path, download: bool, image_size: int | None) -> DatasetBundle:
        from torchvision import datasets as tvd

        try:
            if name == "mnist":
                tr = tvd.MNIST(str(root), train=True, download=download)
                te = tvd.MNIST(str(root), train=False, download=download)
                return _from_torchvision_tensors(name, tr.data, tr.targets, te.data, te.targets, tr.classes,
                                                 (0.2, 1.0), str(root))
            if name == "cifar10":
                tr = tvd.CIFAR10(str(root), train=True, download=download)
                te = tvd.CIFAR10(str(root), train=False, download=download)
                return _from_torchvision_tensors(name, tr.data, tr.targets, te.data, te.targets, tr.classes,
                                                 (0.08, 1.0), str(root))
            if name == "stl10":
                unl = tvd.STL10(str(root), split="train+unlabeled", download=download)
                tr = tvd.STL10(str(root), split="train", download=download)
                te = tvd.STL10(str(root), split="test", download=download)
                b = _from_torchvision_tensors(name, unl.data, unl.labels, te.data, te.labels, tr.classes,
                                              (0.08, 1.0), str(root))
                b.memory = ImageSet(torch.as_tensor(tr.data), torch.as_tensor(tr.labels, dtype=torch.long))
                return b
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
            if download:
                raise DatasetUnavailable(f"Could not download {name!r} into {root}: {e}") from e
            raise DatasetUnavailable(_missing(name, [str(root)])) from e
        raise AssertionError(name)

    return load


def folder_path(spec: str) -> Path:
    """The folder of a ``folder:<path>`` dataset name (``~`` expanded); an empty path is refused rather than read as
    the current directory."""
    raw = spec[len("folder:"):].strip()
    if not raw:
        raise DatasetUnavailable(f"{spec!r}: give the path of your images after 'folder:', e.g. folder:~/photos "
                                 "(without one it would read whatever the current directory holds)")
    return Path(raw).expanduser()


def _load_folder(path: str, image_size: int | None) -> DatasetBundle:
    """A folder of the user's images: read by :func:`workbench.data.imageio.read_image` (size checked before
    decoding, EXIF orientation, 16-bit and palette files; hidden files skipped), resized to ``image_size``
    (default 32) px square, 8-bit RGB. Unreadable files are skipped and named in the bundle's ``source``."""
    from PIL import Image

    from workbench.data.imageio import iter_images

    folder = folder_path(f"folder:{path}")
    if not folder.is_dir():
        raise DatasetUnavailable(f"folder:{path}: {folder} is not a directory. Give a folder of images, "
                                 f"or one sub-folder of images per class (the ImageFolder layout).")
    size = image_size or 32

    def images_in(d: Path, recurse: bool) -> list[Path]:
        return sorted(f for f in (d.rglob("*") if recurse else d.iterdir()) if f.is_file()
                      and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)

    # the ImageFolder layout when some sub-folder holds images (the classes: those that do), else a flat folder
    by_class = {d: images_in(d, recurse=True) for d in sorted(folder.iterdir())
                if d.is_dir() and not d.name.startswith(".")}
    by_class = {d: found for d, found in by_class.items() if found}
    loose = images_in(folder, recurse=False)
    files: list[tuple[Path, int]] = []
    left_out = ""
    if by_class:
        for label, found in enumerate(by_class.values()):
            files += [(f, label) for f in found]
        classes = [d.name for d in by_class]
        if loose:
            left_out = (f"{len(loose)} image(s) directly in {folder} (e.g. {loose[0].name}) are not used: with class "
                        f"sub-folders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) only their "
                        "images are read")
            warnings.warn(f"folder:{path}: {left_out}", stacklevel=2)
    else:
        files = [(f, -1) for f in loose]
        classes = []
    if len(files) < 2:
        raise DatasetUnavailable(f"folder:{path}: found {len(files)} image file(s) (suffixes "
                                 f"{' '.join(sorted(IMAGE_SUFFIXES))}); need at least 2.")
    images, labels, bad = [], [], []
    for (f, label), (_, rgb, why) in zip(files, iter_images((f for f, _ in files), reduce_to=size)):
        if rgb is None:  # a broken file is reported, not fatal
            bad.append(why)
            continue
        im = Image.fromarray(np.round(rgb * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        images.append(np.asarray(im).transpose(2, 0, 1))
        labels.append(label)
    if len(images) < 2:
        raise DatasetUnavailable(f"folder:{path}: {len(images)} of {len(files)} image file(s) could be read; need "
                                 f"at least 2. " + "; ".join(bad[:3]))
    x = torch.from_numpy(np.stack(images))
    y = torch.tensor(labels, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    n_test = max(1, len(x) // 10)
    full = ImageSet(x, y)
    source = str(folder) + (f" ({left_out})" if left_out else "")
    if bad:
        more = "; ..." if len(bad) > 3 else ""
        source += f" ({len(bad)} unreadable file(s) skipped: " + "; ".join(bad[:3]) + more + ")"
    return DatasetBundle(f"folder:{path}", full.subset(perm[n_test:]), full.subset(perm[:n_test]), classes=classes,
                         source=source)


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits", "1797 real 8x8 grayscale digits, 10 classes (scikit-learn); always available",
                          "embedded in scikit-learn: nothing to do", _load_digits),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", "70,000 28x28 grayscale clothing images, 10 classes",
        "offline: `apt-get install dataset-fashion-mnist` (Debian), or copy the four idx .gz files to "
        "<root>/fashion-mnist/; online: add --download", _load_fashion_mnist),
    "mnist": DatasetSpec("mnist", "70,000 28x28 grayscale digits, 10 classes",
                         "online: add --download (torchvision, ~12 MB into <root>/MNIST); offline: copy an existing "
                         "torchvision MNIST folder to <root>/MNIST", _torchvision_loader("mnist")),
    "cifar10": DatasetSpec("cifar10", "60,000 32x32 colour images, 10 classes",
                           "online: add --download (torchvision, ~170 MB into <root>/cifar-10-batches-py); offline: "
                           "copy cifar-10-batches-py to <root>/", _torchvision_loader("cifar10")),
    "stl10": DatasetSpec("stl10", "100k unlabelled + 13k labelled 96x96 colour images, 10 classes",
                         "online: add --download (torchvision, ~2.6 GB into <root>/stl10_binary); offline: copy "
                         "stl10_binary to <root>/", _torchvision_loader("stl10")),
}


def describe_datasets() -> str:
    lines = [f"  {s.name:<14} {s.description}\n  {'':<14} how to get it: {s.how_to_get}" for s in DATASETS.values()]
    lines.append(f"  {'folder:<path>':<14} your own images: one sub-folder per class, or a flat folder (no labels)")
    return "\n".join(lines)


def _missing(name: str, looked_in: list[str]) -> str:
    spec = DATASETS[name]
    return (f"Dataset {name!r} is not on this machine (looked in: {', '.join(looked_in)}).\n"
            f"How to get it: {spec.how_to_get}.\n"
            f"The embedded dataset 'digits' always works: --dataset digits")


def load_dataset(name: str, root: str | os.PathLike = "data", download: bool = False,
                 image_size: int | None = None) -> DatasetBundle:
    """Load a dataset by name into memory; raises :class:`DatasetUnavailable` with instructions if it can't."""
    root = Path(root)
    if name.startswith("folder:"):
        return _load_folder(name[len("folder:"):], image_size)
    if name not in DATASETS:
        raise DatasetUnavailable(f"Unknown dataset {name!r}. Known datasets:\n{describe_datasets()}")
    return DATASETS[name].loader(root, download, image_size)
