"""Robust reading and writing of users' image files.

:func:`read_image` returns ``float32 (H, W, 3)`` RGB in [0, 1] for any common file, or raises
:class:`ImageReadError` whose message names the file, says what is wrong and what to do. What it does:

* **size first**: the pixel count is read from the header and checked against ``max_pixels`` *before* anything
  is decoded (a decompression-bomb guard). Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``, ~89 M pixels: a
  warning above it, an error above twice it) is turned into the same :class:`ImageReadError`. A ``max_pixels``
  above Pillow's error limit (~179 M) cannot be honoured without raising ``PIL.Image.MAX_IMAGE_PIXELS`` yourself;
  this module never changes that process-wide setting.
* **no partial data**: truncated files are errors. Pillow refuses them by default; PNGs are also checked chunk by
  chunk (CRCs included, up to ``IEND``) and JPEGs for their end marker when something in the process has set
  ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` (other formats then follow that setting). The PNG chunk walk
  is pypng's. Empty files, folders and files that are not images are errors too.
* **conversions**: ``1``/``L`` -> gray / 255 copied to 3 channels; 16-bit gray (``I;16*``) / 65535, exact;
  ``I`` (32-bit int) / 65535 when its values fit 0..65535 (the usual 16-bit PNG/TIFF case), else divided by its
  maximum; ``F`` (float) clipped to [0, 1] when its values lie there, else divided by 255, 65535 or its maximum,
  whichever first covers the data (non-finite values -> 0). 16-bit RGB/RGBA and gray+alpha PNGs, for which
  Pillow keeps only the high byte, are read by ``pypng`` so the full 16-bit range is kept, / 65535; 16-bit RGB
  TIFFs go through ``tifffile``. Every other 16-bit colour format is read with Pillow's 8 bits.
* **alpha is dropped**: ``RGBA``/``LA``/``PA`` and palette images with transparency keep their colour values as
  stored, *not* composited over any background (fully transparent pixels show whatever colour they hold).
* ``CMYK``, ``YCbCr``, ``HSV`` -> RGB through Pillow's conversion (no ICC colour management).
* the EXIF orientation is applied (``PIL.ImageOps.exif_transpose``; the same mapping in numpy for the
  16-bit decoders). Multi-frame files (GIF, multi-page TIFF, APNG) give their first frame.

:func:`save_image` writes atomically (temporary file in the same folder, then ``os.replace``), so a reader never
sees a half-written file and a crash never leaves one.
"""
from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from workbench.data.registry import IMAGE_SUFFIXES

DEFAULT_MAX_PIXELS = 50_000_000
_ORIENTATION_TAG = 0x0112


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file, what is wrong and what to do."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """The image file does not exist (both an :class:`ImageReadError` and a ``FileNotFoundError``)."""


def _error(path, problem: str, todo: str = "", cls=ImageReadError) -> ImageReadError:
    return cls(f"{path}: {problem}" + (f"; {todo}" if todo else ""), path)


# ---------------------------------------------------------------------------------------------- reading
def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, reduce_to: int | None = None
               ) -> np.ndarray:
    """The image at ``path`` as ``float32 (H, W, 3)`` RGB in [0, 1]; :class:`ImageReadError` if it can't be read.

    ``reduce_to``: the caller only needs the image this small (both sides at least ``reduce_to`` px): a JPEG is then
    decoded at the smallest of its DCT scales (1/2, 1/4, 1/8; Pillow's ``Image.draft``) that keeps both sides at
    least that large, several times faster for photos shrunk to thumbnails. Other formats decode in full."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if max_pixels is None or int(max_pixels) <= 0:
        raise ValueError(f"max_pixels must be a positive number of pixels, got {max_pixels!r}")
    max_pixels = int(max_pixels)
    if not path.exists():
        raise _error(path, "no such file", "check the path", cls=ImageNotFoundError)
    if path.is_dir():
        raise _error(path, "is a folder, not an image file", "give one image file (or use list_images on a folder)")
    nbytes = path.stat().st_size
    if nbytes == 0:
        raise _error(path, "is empty (0 bytes)", "the file was not written completely: copy or export it again")
    pil_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():  # (process-wide filters, briefly: harmless for other threads' reads)
            # Pillow warns above MAX_IMAGE_PIXELS; that is over our limit too unless the caller raised it
            warnings.simplefilter("error" if pil_limit and max_pixels <= pil_limit else "ignore",
                                  Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _error(path, f"refused as a possible decompression bomb ({e}); the limit is "
                           f"{min(max_pixels, pil_limit or max_pixels):,} pixels",
                     "downscale the image, or raise max_pixels (and PIL.Image.MAX_IMAGE_PIXELS) if you trust "
                     "the file") from e
    except UnidentifiedImageError as e:
        raise _error(path, f"is not an image file Pillow can read ({nbytes:,} bytes, unknown or corrupt format)",
                     f"convert it to PNG or JPEG (supported suffixes: {' '.join(sorted(IMAGE_SUFFIXES))})") from e
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as e:
        raise _error(path, f"could not be opened ({type(e).__name__}: {e})",
                     "the file is corrupt or in an unsupported variant: re-export it as PNG or JPEG") from e
    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise _error(path, f"has an empty size {width}x{height}", "the file is corrupt: re-export it")
        if width * height > max_pixels:
            raise _error(path, f"is {width}x{height} = {width * height:,} pixels, over the limit of "
                               f"{max_pixels:,} pixels (checked before decoding)",
                         "downscale it, or raise max_pixels (--max-pixels) if you trust the file")
        if reduce_to and im.format == "JPEG" and min(width, height) > 2 * reduce_to:
            scale = min(width, height) / reduce_to  # draft keeps each side >= the size asked for
            im.draft("RGB", (max(1, int(width / scale)), max(1, int(height / scale))))
            width, height = im.size
        try:
            array = _decode(im, path)
        except ImageReadError:
            raise
        except MemoryError as e:
            raise _error(path, f"needs more memory than is free to decode ({width}x{height})",
                         "downscale it or lower max_pixels") from e
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib.error ...
            text = str(e)
            if "truncat" in text.lower():
                raise _error(path, f"is truncated: the file ends before its image data does ({text})",
                             "the copy or download was cut short: get the file again") from e
            raise _error(path, f"is corrupt and could not be decoded ({type(e).__name__}: {text})",
                         "re-export it as PNG or JPEG") from e
    if array.shape[:2] != (height, width) and array.shape[:2] != (width, height):
        raise _error(path, f"decoded to {array.shape} instead of {height}x{width}", "re-export it")
    return np.ascontiguousarray(array, dtype=np.float32)


def _decode(im, path: Path) -> np.ndarray:
    """Decode an opened Pillow image to float32 (H, W, 3) in [0, 1] with the EXIF orientation applied."""
    from PIL import ImageFile, ImageOps

    fmt = im.format
    if fmt == "PNG":
        depth, channels = _png_bit_depth_and_channels(path)
        if depth == 16 and channels > 1:
            array = _read_png16(path)
            return _orient(_to_rgb_float(array / np.float32(65535)), _exif_orientation(im))
        _verify_png(path)
    elif fmt == "TIFF" and im.mode in ("RGB", "RGBA", "LA") and any(";16" in str(t.args[0] if isinstance(
            t.args, tuple) else t.args) for t in (im.tile or [])):
        array = _read_tiff16(path)
        if array is not None:
            return _orient(_to_rgb_float(array), _exif_orientation(im))
    if ImageFile.LOAD_TRUNCATED_IMAGES and fmt == "JPEG":
        _check_jpeg_end(path)  # someone allowed truncated images process-wide: still refuse them here
    im.load()
    im = ImageOps.exif_transpose(im) or im
    return _pil_to_array(im, path)


def _pil_to_array(im, path: Path) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16"):
        return _to_rgb_float(np.asarray(im).astype(np.float32) / np.float32(65535))
    if mode == "I":
        a = np.asarray(im).astype(np.float64)
        hi = float(a.max()) if a.size else 0.0
        a = np.clip(a, 0, None) / (65535.0 if hi <= 65535 else hi)
        return _to_rgb_float(a.astype(np.float32))
    if mode == "F":
        a = np.asarray(im).astype(np.float32)
        a = np.where(np.isfinite(a), a, 0).astype(np.float32)
        hi = float(a.max()) if a.size else 0.0
        scale = next((s for s in (1.0, 255.0, 65535.0) if hi <= s), hi)
        return _to_rgb_float(np.clip(a / np.float32(scale), 0, 1))
    if mode in ("1", "L", "LA", "La"):
        return _to_rgb_float(np.asarray(im.convert("L")).astype(np.float32) / np.float32(255))
    if mode in ("P", "PA"):
        im = im.convert("RGBA") if (mode == "PA" or "transparency" in im.info) else im.convert("RGB")
    try:
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    except (ValueError, OSError) as e:
        raise _error(path, f"has the colour mode {mode!r}, which cannot be converted to RGB ({e})",
                     "re-export it as an RGB PNG or JPEG") from e
    return np.asarray(rgb).astype(np.float32) / np.float32(255)


def _to_rgb_float(a: np.ndarray) -> np.ndarray:
    """(H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA -> (H, W, 3) float32 (alpha dropped)."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] in (1, 2):
        return np.repeat(a[:, :, :1], 3, axis=2)
    return a[:, :, :3]


def _orient(a: np.ndarray, orientation: int | None) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array, as ``PIL.ImageOps.exif_transpose`` does."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.transpose(1, 0, 2), 6: lambda x: np.rot90(x, -1),
           7: lambda x: x.transpose(1, 0, 2)[::-1, ::-1], 8: lambda x: np.rot90(x, 1)}
    op = ops.get(int(orientation or 1))
    return np.ascontiguousarray(op(a)) if op else a


def _exif_orientation(im) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # unreadable EXIF: no rotation rather than no image
        return 1


def _check_jpeg_end(path: Path) -> None:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        tail = f.read()
    if b"\xff\xd9" not in tail:
        raise _error(path, "is truncated: the JPEG has no end-of-image marker",
                     "the copy or download was cut short: get the file again")


# ---------------------------------------------------------------------------------------------- PNG
@contextmanager
def _png_reader(path: Path):
    """A pypng reader over the open file (closed afterwards): pypng reads every PNG variant with all its bits and
    checks chunk CRCs and the end of the file; its errors become :class:`ImageReadError`."""
    import png

    with open(path, "rb") as f:
        try:
            yield png.Reader(file=f)
        except (png.Error, EOFError, ValueError, zlib.error) as e:
            raise _png_failure(path, e) from e


def _png_failure(path: Path, e: BaseException) -> ImageReadError:
    text = str(e)
    ends_early = ("truncat", "too short", "end of file", "no more chunks")  # pypng's words for a file cut short
    if isinstance(e, EOFError) or any(w in text.lower() for w in ends_early):
        return _error(path, f"is truncated: the PNG ends before its image data does ({text})",
                      "the copy or download was cut short: get the file again")
    if "checksum" in text.lower():
        return _error(path, f"is corrupt: bad checksum in a PNG chunk ({text})", "get an intact copy of the file")
    return _error(path, f"is corrupt and could not be decoded ({type(e).__name__}: {text})",
                  "get an intact copy, or re-export it as PNG or JPEG")


def _png_bit_depth_and_channels(path: Path) -> tuple[int, int]:
    with _png_reader(path) as reader:
        reader.preamble()
        return reader.bitdepth, reader.planes


def _verify_png(path: Path) -> None:
    """Every chunk up to IEND present and its CRC right (pypng), whatever ``LOAD_TRUNCATED_IMAGES`` says."""
    with _png_reader(path) as reader:
        for _ in reader.chunks():
            pass


def _read_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG as uint16 (H, W, C) with all 16 bits (Pillow keeps 8 of a colour PNG's 16), via pypng."""
    with _png_reader(path) as reader:
        width, height, rows, info = reader.read()
        array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return array.reshape(height, width, info["planes"])


def _read_tiff16(path: Path) -> np.ndarray | None:
    """A 16-bit colour TIFF through tifffile as float (H, W, C) in [0, 1]; None when it is not uint16 after all
    (Pillow then reads it)."""
    import tifffile

    a = np.asarray(tifffile.imread(str(path), key=0))
    if a.ndim == 3 and a.shape[0] in (2, 3, 4) and a.shape[-1] not in (2, 3, 4):
        a = np.moveaxis(a, 0, -1)  # planar configuration
    if a.dtype != np.uint16 or a.ndim not in (2, 3):
        return None
    return a.astype(np.float32) / np.float32(65535)


# ---------------------------------------------------------------------------------------------- many files
def image_files(folder: Path) -> list[Path]:
    """The image files (registry's ``IMAGE_SUFFIXES``, any case) directly in ``folder``, hidden ones skipped, sorted
    by name; possibly none."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def list_images(path: str | os.PathLike) -> list[Path]:
    """``[path]`` for a file; the image files (registry's ``IMAGE_SUFFIXES``, any case, hidden files skipped) of a
    folder, sorted by name, not recursing. ``FileNotFoundError`` for a missing path, :class:`ImageReadError` for a
    folder without images."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; give an image file or a folder of images")
    if path.is_file():
        return [path]
    files = image_files(path)
    if not files:
        raise ImageReadError(f"{path}: the folder has no image files (looked for {' '.join(sorted(IMAGE_SUFFIXES))}, "
                             f"not in sub-folders); put the images directly in it or give one file", path)
    return files


def iter_images(paths: Iterable[str | os.PathLike], max_pixels: int = DEFAULT_MAX_PIXELS,
                reduce_to: int | None = None) -> Iterator[tuple[Path, np.ndarray | None, str]]:
    """(path, image or None, reason) for each path, in order, one image in memory at a time; never raises for a bad
    file (the reason names it). ``reduce_to``: as :func:`read_image`'s."""
    for p in paths:
        p = Path(p)
        try:
            yield p, read_image(p, max_pixels=max_pixels, reduce_to=reduce_to), ""
        except ImageReadError as e:
            yield p, None, str(e)
        except MemoryError:
            yield p, None, f"{p}: out of memory while decoding; downscale it or lower max_pixels"
        except Exception as e:  # anything else a broken file can provoke: reported, never fatal
            yield p, None, f"{p}: could not be read ({type(e).__name__}: {e})"


# ---------------------------------------------------------------------------------------------- writing
def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def save_image(path: str | os.PathLike, image) -> Path:
    """Write ``image`` to ``path`` atomically, creating parent folders; returns the path.

    ``image``: ``(H, W, 3)`` or ``(H, W)`` (gray), float (clipped to [0, 1], NaN -> 0, rounded to 8 bits) or
    ``uint8``. The format follows the suffix (``.png``, ``.jpg`` at quality 95, ``.tif``, ...; PNG when there is
    none); always 8 bits per channel.
    """
    from PIL import Image

    path = Path(path)
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"save_image({path}): expected an (H, W, 3) or (H, W) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.floating):
        a = np.round(np.clip(np.nan_to_num(a.astype(np.float32), nan=0.0), 0, 1) * 255).astype(np.uint8)
    else:
        raise ValueError(f"save_image({path}): expected uint8 or float in [0, 1], got {a.dtype}")
    suffix = path.suffix.lower()
    fmt = Image.registered_extensions().get(suffix) if suffix else "PNG"
    if fmt is None:
        raise ValueError(f"save_image({path}): unknown image suffix {path.suffix!r}; use .png or .jpg")
    options = {"quality": 95} if fmt == "JPEG" else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(a)).save(f, format=fmt, **options)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
