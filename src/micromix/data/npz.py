"""Datasets stored as one ``.npz``: ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Read with ``np.load(allow_pickle=False)`` (no code runs). What is assumed, and how it is
detected:
- images are 4-D, NCHW or NHWC: the channel axis is the one (axis 1 or axis 3) whose size is
  the model's channel count; if both are, NCHW is assumed. 3-D arrays (N, H, W) are one channel;
- uint8 (or any integer type within 0..255) are pixel codes as they are; floats whose values
  all lie in [0, 1] are scaled by 255, floats within [0, 255] are taken as codes, both rounded
  to uint8 (the integer model's input is 8-bit); anything else is refused with a sentence;
- labels are integers 0..K-1 (any shape that flattens to N); an optional ``classes`` array of
  strings names them.
Images are resized (bilinear) to the model's H x W if they differ; 1 channel may feed a 3-channel
model (repeated).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetNotFoundError
from .loader import ImageSet, resize_images

KEYS = ("x_train", "y_train", "x_test", "y_test")
_CHUNK = 4096  # images converted at a time: bounds the float copy of a float array


def _open(path: Path):
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset file {path} does not exist.")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetNotFoundError(f"{path} is not a readable .npz file ({e}).") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DatasetNotFoundError(f"{path} holds one array, not the .npz keys {', '.join(KEYS)}.")
    missing = [k for k in KEYS if k not in npz.files]
    if missing:
        raise DatasetNotFoundError(
            f"{path} lacks {', '.join(missing)}; it needs the arrays {', '.join(KEYS)}."
        )
    return npz


def _get(npz, path: Path, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as e:  # object arrays need pickle, which is refused
        raise DatasetNotFoundError(
            f"{key} in {path} cannot be read without pickle ({e})."
        ) from None


def _to_nchw(x: np.ndarray, key: str, path: Path, channels: int) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DatasetNotFoundError(
            f"{key} in {path} has shape {x.shape}; images must be N x C x H x W, N x H x W x C or N x H x W."
        )
    wanted = {channels, 1}  # one channel may feed a 3-channel model
    if x.shape[1] in wanted:
        return x
    if x.shape[3] in wanted:
        return x.transpose(0, 3, 1, 2)
    raise DatasetNotFoundError(
        f"{key} in {path} has shape {x.shape}: neither axis 1 nor axis 3 has {channels} channels."
    )


def _codes(x: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """uint8 pixel codes from uint8, integer or float arrays (see the module docstring)."""
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DatasetNotFoundError(f"{key} in {path} has dtype {x.dtype}; use uint8 or float.")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
        raise DatasetNotFoundError(
            f"{key} in {path} holds values in [{lo:g}, {hi:g}]; micromix feeds 8-bit inputs, so "
            "scale them to [0, 1] or [0, 255] first."
        )
    scale = 255.0 if np.issubdtype(x.dtype, np.floating) and hi <= 1.0 else 1.0
    out = torch.empty(x.shape, dtype=torch.uint8)
    for s in range(0, len(x), _CHUNK):
        part = torch.from_numpy(np.ascontiguousarray(x[s : s + _CHUNK], dtype=np.float32))
        out[s : s + _CHUNK] = part.mul_(scale).round_().clamp_(0, 255).to(torch.uint8)
    return out


def _labels(y: np.ndarray, n: int, key: str, path: Path) -> torch.Tensor:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer) or y.size != n:
        raise DatasetNotFoundError(
            f"{key} in {path} must hold {n} integer labels, got {y.dtype} of shape {y.shape}."
        )
    y = y.reshape(n).astype(np.int64)
    if n and y.min() < 0:
        raise DatasetNotFoundError(f"{key} in {path} has a negative label {int(y.min())}.")
    return torch.from_numpy(y)


def _top(labels: torch.Tensor) -> int:
    return int(labels.max()) if len(labels) else -1


def _classes(npz, path: Path, n_classes: int) -> tuple[str, ...]:
    if "classes" in npz.files:
        names = tuple(str(c) for c in _get(npz, path, "classes").reshape(-1))
        if len(names) < n_classes:
            raise DatasetNotFoundError(
                f"{path} names {len(names)} classes but its labels go up to {n_classes - 1}."
            )
        return names
    return tuple(str(i) for i in range(n_classes))


def _part(npz, path: Path, part: str, shape: tuple[int, int, int], n: int | None) -> ImageSet:
    c, h, w = shape
    x = _get(npz, path, f"x_{part}")
    y = _get(npz, path, f"y_{part}")
    if n is not None:
        x, y = x[:n], np.asarray(y).reshape(-1)[:n]
    x = _to_nchw(x, f"x_{part}", path, c)
    labels = _labels(y, len(x), f"y_{part}", path)
    images = resize_images(_codes(x, f"x_{part}", path), (h, w), c)
    return ImageSet(images, labels, ())


def load_npz(
    path: str | os.PathLike[str], input_shape: tuple[int, int, int]
) -> tuple[ImageSet, ImageSet]:
    """(train, test) at the model's (C, H, W)."""
    path = Path(path)
    with _open(path) as npz:
        train = _part(npz, path, "train", input_shape, None)
        test = _part(npz, path, "test", input_shape, None)
        top = max(_top(train.labels), _top(test.labels)) + 1
        names = _classes(npz, path, top)
    return ImageSet(train.images, train.labels, names), ImageSet(test.images, test.labels, names)


def npz_test_images(
    path: str | os.PathLike[str], n: int, input_shape: tuple[int, int, int]
) -> ImageSet:
    """The first ``n`` test images; only x_test and y_test are read from the file."""
    path = Path(path)
    with _open(path) as npz:
        test = _part(npz, path, "test", input_shape, n)
        names = _classes(npz, path, _top(test.labels) + 1)
    return ImageSet(test.images, test.labels, names)
