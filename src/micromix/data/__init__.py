"""Data layer: Fashion-MNIST or an image folder, held in memory as uint8 tensors."""

from __future__ import annotations

import os

from ..errors import MicromixError
from .folder import load_folder_splits, load_image_folder
from .idx import FASHION_MNIST_CLASSES, load_fashion_mnist
from .loader import DataSplits, ImageSet, batches, heldout_indices, num_batches, split_heldout

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DataSplits",
    "ImageSet",
    "batches",
    "heldout_indices",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "num_batches",
    "split_heldout",
]


def load_dataset(
    name: str = "fashion_mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    resolution: int = 28,
    in_channels: int = 1,
    heldout: int = 10000,
    split_seed: int = 0,
) -> DataSplits:
    """Train / held-out / test splits of ``name``: "fashion_mnist" or a path to an image folder.

    The held-out images come out of the training set with a permutation fixed by
    ``split_seed`` alone, so runs with different seeds score policies on the same images.
    """
    if in_channels not in (1, 3):
        raise MicromixError(f"--in-channels must be 1 or 3, got {in_channels}.")
    if name.replace("-", "_").lower() == "fashion_mnist":
        train, test = load_fashion_mnist(data_dir, resolution=resolution, in_channels=in_channels)
        train, held = split_heldout(train, heldout, split_seed)
        return DataSplits(train, held, test)
    if os.path.isdir(name) or os.sep in name or "/" in name:
        return load_folder_splits(
            name,
            resolution=resolution,
            in_channels=in_channels,
            heldout=heldout,
            split_seed=split_seed,
        )
    raise MicromixError(
        f"unknown dataset {name!r}; use fashion_mnist or the path of a folder with one sub-folder per class."
    )
