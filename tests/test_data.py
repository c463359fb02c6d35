"""Dataset registry: embedded digits, the offline Fashion-MNIST readers, user folders, and the errors."""
import gzip

import numpy as np
import pytest
import torch

import workbench.data.registry as registry
from workbench.data import DatasetUnavailable, load_dataset


def test_digits_is_always_there():
    b = load_dataset("digits")
    assert len(b.train) + len(b.test) == 1797
    assert b.train.images.shape[1:] == (1, 8, 8) and b.train.images.dtype == torch.uint8
    assert b.train.images.max() == 255 and b.num_classes == 10
    assert b.memory is b.train
    # stratified split: every class in both parts
    assert set(b.train.labels.tolist()) == set(b.test.labels.tolist()) == set(range(10))


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("imagenet-1k")
    msg = str(e.value)
    for name in registry.DATASETS:
        assert name in msg
    assert "folder:" in msg


def test_missing_torchvision_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("cifar10", root=tmp_path)
    msg = str(e.value)
    assert "--download" in msg and "cifar-10-batches-py" in msg and "digits" in msg


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(folder, n_train=30, n_test=10):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
             "train-labels-idx1-ubyte": np.arange(n_train) % 10,
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
             "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    for stem, arr in parts.items():
        _write_idx(folder / f"{stem}.gz", arr)
    return parts


def test_fashion_mnist_from_data_root(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    parts = _fake_fashion(tmp_path / "fashion-mnist")
    b = load_dataset("fashion-mnist", root=tmp_path)
    assert b.train.images.shape == (30, 1, 28, 28) and len(b.test) == 10
    assert np.array_equal(b.train.images[:, 0].numpy(), parts["train-images-idx3-ubyte"])
    assert b.test.labels.tolist() == list(range(10))


def test_fashion_mnist_from_the_debian_package_location(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    _fake_fashion(tmp_path / "debian", n_train=20)
    b = load_dataset("fashion-mnist", root=tmp_path / "empty")
    assert len(b.train) == 20 and b.source == str(tmp_path / "debian")


def test_fashion_mnist_missing_says_how_offline_and_online(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("fashion-mnist", root=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(e.value) and "--download" in str(e.value)


def test_real_fashion_mnist_when_installed():
    # the real files of Debian's dataset-fashion-mnist (`make test` installs it when it runs as root with apt-get)
    if not registry.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip(f"Fashion-MNIST not found in {registry.DEBIAN_FASHION_MNIST}: install the Debian package "
                    "dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist)")
    b = load_dataset("fashion-mnist", root="/nonexistent")
    assert len(b.train) == 60000 and len(b.test) == 10000
    assert torch.bincount(b.train.labels).tolist() == [6000] * 10


def _save(path, size, mode="RGB"):
    from PIL import Image

    arr = (np.random.default_rng(len(str(path))).random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def test_folder_with_classes(tmp_path):
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            _save(tmp_path / cls / f"{i}.png", 40 + i, mode="L" if i % 2 else "RGB")
    (tmp_path / "cats" / "broken.png").write_bytes(b"not a png")
    b = load_dataset(f"folder:{tmp_path}", image_size=16)
    assert b.classes == ["cats", "dogs"]
    assert len(b.train) + len(b.test) == 12  # the broken file is skipped and reported
    assert "1 unreadable" in b.source
    assert b.train.images.shape[1:] == (3, 16, 16)


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(5):
        _save(tmp_path / f"{i}.jpg", 20)
    b = load_dataset(f"folder:{tmp_path}")
    assert not b.train.has_labels and b.classes == []


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetUnavailable, match="not a directory"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    for empty in ("folder:", "folder:  "):  # not the current directory: it may hold anything
        with pytest.raises(DatasetUnavailable, match="give the path of your images after 'folder:'"):
            load_dataset(empty)
    with pytest.raises(DatasetUnavailable, match="found 0 image file"):
        load_dataset(f"folder:{tmp_path}")
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"not an image")
    with pytest.raises(DatasetUnavailable, match=r"0 of 2 image file\(s\) could be read.*a\.png: is not an image"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_images_are_read_as_the_image_reader_reads_them(tmp_path):
    """One reader for users' files (workbench.data.imageio): 16-bit grey keeps its brightness (Pillow's own
    convert("RGB") clips it to white), hidden files (macOS's ._ copies) are not images, broken ones are named."""
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((12, 10, 3), 40 * i + (c == "dog") * 100, np.uint8)).save(tmp_path / c / f"{i}.png")
    Image.fromarray(np.full((12, 10), 32768, np.uint16)).save(tmp_path / "cat" / "grey16.png")  # 0.5 of 65535
    (tmp_path / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "dog" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    b = load_dataset(f"folder:{tmp_path}", image_size=8)
    x = torch.cat([b.train.images, b.test.images])
    assert b.classes == ["cat", "dog"] and len(x) == 7 and x.shape[1:] == (3, 8, 8)
    means = sorted(float(im.float().mean()) for im in x)
    assert 128 in [round(m) for m in means] and 255 not in [round(m) for m in means]  # the 16-bit grey, not white
    assert "1 unreadable file(s) skipped" in b.source and "torn.png" in b.source and "._0.png" not in b.source
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "loose.png")  # beside the class folders
    (tmp_path / "notes").mkdir()  # a sub-folder without images is not a class
    with pytest.warns(UserWarning, match="1 image.s. directly in .* loose.png.* are not used"):
        b = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert b.classes == ["cat", "dog"] and len(b.train) + len(b.test) == 7 and "loose.png" in b.source


def test_train_subset_keeps_normalisation_and_uses_the_subset_as_knn_bank():
    b = load_dataset("digits")
    sub = b.with_train_subset(300, seed=1)
    assert len(sub.train) == 300 and sub.memory is sub.train and len(sub.test) == len(b.test)
    assert sub.mean == b.mean and sub.std == b.std
    again = b.with_train_subset(300, seed=1)
    assert torch.equal(sub.train.images, again.train.images)
