"""Data layer: Fashion-MNIST, an image folder or an .npz, held in memory as uint8 tensors.

Every loader produces the images once, at the model's input size (C, H, W): Fashion-MNIST is
split at its own 28 x 28 and each split resized; folder images are resized as they are read,
straight into the tensor of their split; an .npz is converted in chunks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import MicromixError
from .folder import TEST_FRACTION, folder_test_images, load_folder_splits, load_image_folder
from .idx import FASHION_MNIST_CLASSES, load_fashion_mnist, load_fashion_mnist_raw
from .loader import (
    DataSplits,
    ImageSet,
    Sampling,
    batches,
    heldout_indices,
    num_batches,
    resize_images,
    split_heldout,
)
from .npz import load_npz, npz_test_images

DataDir = str | os.PathLike[str] | None  # where the Fashion-MNIST files are (None: found)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DataSplits",
    "ImageSet",
    "Sampling",
    "batches",
    "dataset_kind",
    "dataset_source",
    "heldout_indices",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_npz",
    "load_test_images",
    "num_batches",
    "split_heldout",
]


def dataset_kind(name: str) -> str:
    """fashion_mnist, folder (a path to a folder) or npz (a path ending in .npz)."""
    if not isinstance(name, str) or not name:
        raise MicromixError("--dataset must be fashion_mnist, an image folder or an .npz file.")
    if name.replace("-", "_").lower() == "fashion_mnist":
        return "fashion_mnist"
    if name.lower().endswith(".npz"):
        return "npz"
    if os.path.isdir(name) or os.sep in name or "/" in name:
        return "folder"
    raise MicromixError(
        f"unknown dataset {name!r}; use fashion_mnist, the path of a folder with one sub-folder "
        "per class, or an .npz with x_train, y_train, x_test, y_test."
    )


def dataset_source(name: str) -> DatasetSource:
    """The registry entry of `name`'s kind (see `dataset_kind`)."""
    return SOURCES[dataset_kind(name)]


def _shape(
    input_shape: Sequence[int] | None, resolution: int, in_channels: int
) -> tuple[int, int, int]:
    if input_shape is None:
        return (in_channels, resolution, resolution)
    dims = tuple(int(d) for d in input_shape)
    if len(dims) == 4 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) != 3 or min(dims) < 1:
        raise MicromixError(f"input shape must be (C, H, W) of positive sizes, got {input_shape}.")
    return dims  # type: ignore[return-value]


def load_dataset(
    name: str = "fashion_mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    input_shape: Sequence[int] | None = None,
    resolution: int = 28,
    in_channels: int = 1,
    heldout: int = 10000,
    split_seed: int = 0,
) -> DataSplits:
    """Train / held-out / test splits of ``name`` (see `dataset_kind`) at the model's input:
    ``input_shape`` (C, H, W) or (1, C, H, W), e.g. ``graph.input_shape``; without it a
    square ``resolution`` with ``in_channels``.

    The held-out images come out of the training set with a permutation fixed by
    ``split_seed`` alone, so runs with different seeds score policies on the same images.
    """
    c, h, w = _shape(input_shape, resolution, in_channels)
    if c not in (1, 3):
        raise MicromixError(f"images have 1 or 3 channels; the model takes {c}.")
    return dataset_source(name).splits(name, (c, h, w), data_dir, heldout, split_seed)


def load_test_images(
    name: str,
    n: int,
    input_shape: Sequence[int],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    split_seed: int = 0,
) -> ImageSet:
    """The first ``n`` images of the test split, reading no more than needed (C export)."""
    c, h, w = _shape(input_shape, 0, 0)
    return dataset_source(name).test_images(name, n, (c, h, w), data_dir, split_seed)


def _fashion_splits(
    name: str, shape: tuple[int, int, int], data_dir: DataDir, heldout: int, split_seed: int
) -> DataSplits:
    c, h, w = shape
    (x, y), (xt, yt) = load_fashion_mnist_raw(data_dir)
    # Split at 28 x 28, then resize each split once: the full set never exists at the big size.
    train_idx, held_idx = heldout_indices(len(y), heldout, split_seed)

    def at_size(images, labels):
        return ImageSet(resize_images(images, (h, w), c), labels, FASHION_MNIST_CLASSES)

    return DataSplits(
        at_size(x[train_idx], y[train_idx]), at_size(x[held_idx], y[held_idx]), at_size(xt, yt)
    )


def _fashion_test(
    name: str, n: int, shape: tuple[int, int, int], data_dir: DataDir, split_seed: int
) -> ImageSet:
    c, h, w = shape
    ((xt, yt),) = load_fashion_mnist_raw(data_dir, parts=("test",))
    return ImageSet(resize_images(xt[:n], (h, w), c), yt[:n], FASHION_MNIST_CLASSES)


def _folder_splits(
    name: str, shape: tuple[int, int, int], data_dir: DataDir, heldout: int, split_seed: int
) -> DataSplits:
    c, h, w = shape
    return load_folder_splits(
        name, resolution=(h, w), in_channels=c, heldout=heldout, split_seed=split_seed
    )


def _folder_test(
    name: str, n: int, shape: tuple[int, int, int], data_dir: DataDir, split_seed: int
) -> ImageSet:
    c, h, w = shape
    return folder_test_images(name, n, resolution=(h, w), in_channels=c, split_seed=split_seed)


def _npz_splits(
    name: str, shape: tuple[int, int, int], data_dir: DataDir, heldout: int, split_seed: int
) -> DataSplits:
    train, test = load_npz(name, shape)
    # As for folders: a small file cannot spare 10,000 images; at most a fifth of train.
    train, held = split_heldout(train, min(heldout, int(len(train) * TEST_FRACTION)), split_seed)
    return DataSplits(train, held, test)


def _npz_test(
    name: str, n: int, shape: tuple[int, int, int], data_dir: DataDir, split_seed: int
) -> ImageSet:
    return npz_test_images(name, n, shape)


@dataclass(frozen=True)
class DatasetSource:
    """One kind of dataset (a registry keyed by `dataset_kind`): its train / held-out / test
    splits at a (C, H, W), the first n test images alone, and whether the name is a path."""

    splits: Callable[[str, tuple[int, int, int], DataDir, int, int], DataSplits]
    test_images: Callable[[str, int, tuple[int, int, int], DataDir, int], ImageSet]
    is_path: bool = True  # a folder or file the user names (never followed from a file)


SOURCES: dict[str, DatasetSource] = {
    "fashion_mnist": DatasetSource(_fashion_splits, _fashion_test, is_path=False),
    "folder": DatasetSource(_folder_splits, _folder_test),
    "npz": DatasetSource(_npz_splits, _npz_test),
}
KINDS = tuple(SOURCES)
