"""Image folders laid out as ``root/<class>/<image>``, read with Pillow."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetNotFoundError, MicromixError
from .loader import DataSplits, ImageSet, split_heldout

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


def _read(path: Path, mode: str, resolution: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DatasetNotFoundError(
            f"image {path} cannot be read ({e}); remove or replace that file."
        ) from None


def load_image_folder(
    root: str | os.PathLike[str],
    resolution: int,
    in_channels: int,
    *,
    classes: Sequence[str] | None = None,
) -> ImageSet:
    """All images under ``root/<class>/``; ``classes`` fixes the label order (e.g. for a test split)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist; pass {_LAYOUT}.")
    if in_channels not in (1, 3):
        raise MicromixError(
            f"image folders can be read with 1 or 3 channels, not {in_channels}; use --in-channels 1 or 3."
        )
    dirs = _class_dirs(root)
    names = tuple(classes) if classes is not None else tuple(d.name for d in dirs)
    unknown = [d.name for d in dirs if d.name not in names]
    if unknown:
        raise DatasetNotFoundError(
            f"{root} has class folders {unknown} that the training folder lacks; make both hold the same classes."
        )
    label_of = {name: i for i, name in enumerate(names)}
    mode = "L" if in_channels == 1 else "RGB"
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    for d in dirs:
        for path in _image_files(d):
            pixels.append(_read(path, mode, resolution))
            labels.append(label_of[d.name])
    if not pixels:
        raise DatasetNotFoundError(f"no images found under {root}; pass {_LAYOUT}.")
    arr = np.stack(pixels)
    arr = arr[:, None] if in_channels == 1 else arr.transpose(0, 3, 1, 2)
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(arr)), torch.tensor(labels, dtype=torch.int64), names
    )


def load_folder_splits(
    root: str | os.PathLike[str],
    *,
    resolution: int,
    in_channels: int,
    heldout: int,
    split_seed: int = 0,
) -> DataSplits:
    """Train/held-out/test from a folder, using its ``train/`` and ``test/`` halves when present."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = load_image_folder(root / "train", resolution, in_channels)
        test = load_image_folder(root / "test", resolution, in_channels, classes=train.classes)
    else:
        full = load_image_folder(root, resolution, in_channels)
        n_test = max(1, round(len(full) * TEST_FRACTION)) if len(full) > 1 else 0
        train, test = split_heldout(full, n_test, split_seed)
    # Small folders cannot spare 10,000 images; never hold out more than a fifth of train.
    train, held = split_heldout(train, min(heldout, int(len(train) * TEST_FRACTION)), split_seed)
    return DataSplits(train, held, test)
