"""Image folders laid out as ``root/<class>/<image>``, read with Pillow."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetNotFoundError, MicromixError
from .loader import DataSplits, ImageSet, heldout_indices

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
TEST_FRACTION = 0.2
_LAYOUT = "a folder with one sub-folder of images per class (png, jpg, jpeg, bmp, gif or webp)"


def _class_dirs(root: Path) -> list[Path]:
    return sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: d.name,
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _read(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            return np.array(img, dtype=np.uint8)  # a writable copy torch may own
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DatasetNotFoundError(
            f"image {path} cannot be read ({e}); remove or replace that file."
        ) from None


def _size(resolution: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    if int(h) < 1 or int(w) < 1:
        raise MicromixError(f"image size must be positive, got {h}x{w} pixels.")
    return int(h), int(w)


def _listing(
    root: Path, in_channels: int, classes: Sequence[str] | None = None
) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """Every image file under ``root/<class>/`` with its label; nothing is read yet."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist; pass {_LAYOUT}.")
    if in_channels not in (1, 3):
        raise MicromixError(
            f"image folders can be read with 1 or 3 channels, not {in_channels}; use an input shape with 1 or 3 channels."
        )
    dirs = _class_dirs(root)
    names = tuple(classes) if classes is not None else tuple(d.name for d in dirs)
    unknown = [d.name for d in dirs if d.name not in names]
    if unknown:
        raise DatasetNotFoundError(
            f"{root} has class folders {unknown} that the training folder lacks; make both hold the same classes."
        )
    label_of = {name: i for i, name in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        found = _image_files(d)
        files += found
        labels += [label_of[d.name]] * len(found)
    if not files:
        raise DatasetNotFoundError(f"no images found under {root}; pass {_LAYOUT}.")
    return files, labels, names


def _read_set(
    files: Sequence[Path],
    labels: Sequence[int],
    names: tuple[str, ...],
    size: tuple[int, int],
    in_channels: int,
) -> ImageSet:
    """Decode straight into one preallocated N x C x H x W tensor at the model's size: the set
    is held once, never as a list of arrays plus a stacked copy."""
    h, w = size
    out = torch.empty((len(files), in_channels, h, w), dtype=torch.uint8)
    mode = "L" if in_channels == 1 else "RGB"
    for i, path in enumerate(files):
        px = torch.from_numpy(_read(path, mode, size))
        out[i] = px[None] if in_channels == 1 else px.permute(2, 0, 1)
    return ImageSet(out, torch.tensor(list(labels), dtype=torch.int64), names)


def load_image_folder(
    root: str | os.PathLike[str],
    resolution: int | tuple[int, int],
    in_channels: int,
    *,
    classes: Sequence[str] | None = None,
) -> ImageSet:
    """All images under ``root/<class>/`` at ``resolution`` (H = W, or (H, W));
    ``classes`` fixes the label order (e.g. for a test split)."""
    files, labels, names = _listing(Path(root), in_channels, classes)
    return _read_set(files, labels, names, _size(resolution), in_channels)


def _split_files(
    root: Path, in_channels: int, split_seed: int
) -> tuple[tuple[list[Path], list[int]], tuple[list[Path], list[int]], tuple[str, ...]]:
    """(train, test) file lists: the folder's ``train/`` and ``test/`` halves when present,
    else a fixed random fifth of the images as the test split."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        tr_files, tr_labels, names = _listing(root / "train", in_channels)
        te_files, te_labels, _ = _listing(root / "test", in_channels, names)
        return (tr_files, tr_labels), (te_files, te_labels), names
    files, labels, names = _listing(root, in_channels)
    n_test = max(1, round(len(files) * TEST_FRACTION)) if len(files) > 1 else 0
    train_idx, test_idx = heldout_indices(len(files), n_test, split_seed)
    pick = lambda idx: ([files[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return pick(train_idx.tolist()), pick(test_idx.tolist()), names


def load_folder_splits(
    root: str | os.PathLike[str],
    *,
    resolution: int | tuple[int, int],
    in_channels: int,
    heldout: int,
    split_seed: int = 0,
) -> DataSplits:
    """Train/held-out/test from a folder, using its ``train/`` and ``test/`` halves when present.

    The splits are decided on the file lists, then each image is read once, resized on
    reading, into the tensor of its split.
    """
    size = _size(resolution)
    (tr_files, tr_labels), (te_files, te_labels), names = _split_files(
        Path(root), in_channels, split_seed
    )
    # Small folders cannot spare 10,000 images; never hold out more than a fifth of train.
    n_held = min(heldout, int(len(tr_files) * TEST_FRACTION))
    train_idx, held_idx = heldout_indices(len(tr_files), n_held, split_seed)

    def read(files: list[Path], labels: list[int], idx: torch.Tensor | None = None) -> ImageSet:
        if idx is not None:
            files, labels = [files[i] for i in idx.tolist()], [labels[i] for i in idx.tolist()]
        if not files:
            return ImageSet(
                torch.empty((0, in_channels, *size), dtype=torch.uint8),
                torch.empty(0, dtype=torch.int64),
                names,
            )
        return _read_set(files, labels, names, size, in_channels)

    return DataSplits(
        read(tr_files, tr_labels, train_idx),
        read(tr_files, tr_labels, held_idx),
        read(te_files, te_labels),
    )


def folder_test_images(
    root: str | os.PathLike[str],
    n: int,
    *,
    resolution: int | tuple[int, int],
    in_channels: int,
    split_seed: int = 0,
) -> ImageSet:
    """The first ``n`` images of the folder's test split, reading only those files."""
    _, (files, labels), names = _split_files(Path(root), in_channels, split_seed)
    return _read_set(files[:n], labels[:n], names, _size(resolution), in_channels)
