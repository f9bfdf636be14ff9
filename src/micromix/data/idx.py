"""IDX file reader and Fashion-MNIST discovery.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetNotFoundError
from .loader import ImageSet, resize_images

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
PACKAGE = "dataset-fashion-mnist"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x08 (unsigned byte) type code, then 3 or 1 dims

_FIX = (
    f"install it with `sudo apt-get install {PACKAGE}` or pass --data-dir / set MICROMIX_DATA "
    "to a folder holding the four IDX .gz files"
)


def _corrupt(path: Path, why: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"Fashion-MNIST file {path} is corrupt ({why}); reinstall it with "
        f"`sudo apt-get install --reinstall {PACKAGE}` or replace the file with a fresh copy."
    )


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped), checking magic, dims and length."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, f"cannot be read or decompressed: {e}") from None
    if len(raw) < 4:
        raise _corrupt(path, f"only {len(raw)} bytes")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _corrupt(path, f"bad magic number {found}, expected {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, f"header cut short at {len(raw)} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims[1:]):
        raise _corrupt(path, f"zero-sized dimension in {dims}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise _corrupt(path, f"{len(raw)} bytes but the header {dims} needs {expected}")
    # frombuffer on bytes is read-only; copy once so torch may own and modify it.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _dpkg_dirs() -> list[Path]:
    """Folders that ``dpkg -L`` lists for the package, in case it installed somewhere else."""
    if shutil.which("dpkg") is None:
        return []
    try:
        out = subprocess.run(
            ["dpkg", "-L", PACKAGE], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(
        {
            Path(line).parent
            for line in out.splitlines()
            if Path(line).name.startswith(FILES["train_images"])
        }
    )


def find_fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Paths of the four IDX files.

    An explicit ``data_dir`` or ``MICROMIX_DATA`` is final: silently falling back to another
    copy would hide a typo in the path the user asked for.
    """
    env = os.environ.get("MICROMIX_DATA")
    if data_dir is not None:
        folders, origin = [Path(data_dir)], ""
    elif env:
        folders, origin = [Path(env)], " (from MICROMIX_DATA)"
    else:
        folders, origin = [DEFAULT_DIR], ""
        if _find(DEFAULT_DIR, FILES["train_images"]) is None:
            folders += [d for d in _dpkg_dirs() if d != DEFAULT_DIR]
    for folder in folders:
        found = {key: _find(folder, name) for key, name in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    folder = folders[0]
    missing = [f"{name}.gz" for key, name in FILES.items() if _find(folder, name) is None]
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found in {folder}{origin} (need {', '.join(missing)}); {_FIX}."
    )


def _read_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise _corrupt(
            images_path,
            f"{images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels",
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise _corrupt(
            labels_path, f"label {int(labels.max())} outside 0..{len(FASHION_MNIST_CLASSES) - 1}"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    resolution: int | tuple[int, int] = 28,
    in_channels: int = 1,
) -> tuple[ImageSet, ImageSet]:
    """The raw (train, test) sets: 60,000 and 10,000 images for the real data, resized to
    ``resolution`` (H = W, or an (H, W) pair)."""
    return tuple(  # type: ignore[return-value]
        ImageSet(resize_images(x, resolution, in_channels), y, FASHION_MNIST_CLASSES)
        for x, y in load_fashion_mnist_raw(data_dir)
    )


def load_fashion_mnist_raw(
    data_dir: str | os.PathLike[str] | None = None, parts: tuple[str, ...] = ("train", "test")
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(images uint8 N x 1 x 28 x 28, labels) of each part, at the files' own 28 x 28."""
    paths = find_fashion_mnist(data_dir)
    return [_read_pair(paths[f"{part}_images"], paths[f"{part}_labels"]) for part in parts]
