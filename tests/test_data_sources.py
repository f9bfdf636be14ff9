"""Data sources beyond Fashion-MNIST: .npz files (layout and dtype detection), non-square
inputs for every source, and the export path that reads only the test images it needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import fake_mnist  # noqa: F401  (fixture)

from micromix.cli import main
from micromix.data import dataset_kind, load_dataset, load_test_images
from micromix.errors import DatasetNotFoundError, MicromixError


def _arrays(n: int, shape=(1, 6, 4), seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 3, n)


def _npz(path: Path, layout: str = "nchw", dtype: str = "uint8", shape=(1, 6, 4)) -> Path:
    (x, y), (xt, yt) = _arrays(50, shape), _arrays(10, shape, seed=1)

    def conv(a):
        a = a.transpose(0, 2, 3, 1) if layout == "nhwc" else a
        return {"uint8": a, "unit": a / 255.0, "byte-float": a.astype(np.float32)}[dtype]

    np.savez(path, x_train=conv(x), y_train=y, x_test=conv(xt), y_test=yt)
    return path


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", ["uint8", "unit", "byte-float"])
def test_npz_layouts_and_dtypes_give_the_same_pixels(tmp_path, layout, dtype):
    ref = load_dataset(str(_npz(tmp_path / "ref.npz")), input_shape=(1, 6, 4))
    got = load_dataset(str(_npz(tmp_path / "d.npz", layout, dtype)), input_shape=(1, 6, 4))
    for a, b in ((ref.train, got.train), (ref.heldout, got.heldout), (ref.test, got.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    xt, yt = _arrays(10, seed=1)
    # The held-out split comes out of train (at most a fifth); test is x_test as it is.
    assert len(got.train) + len(got.heldout) == 50 and len(got.heldout) == 10
    assert np.array_equal(got.test.images.numpy(), xt) and got.test.labels.tolist() == yt.tolist()
    assert got.test.images.shape == (10, 1, 6, 4) and got.classes == ("0", "1", "2")


def test_npz_rgb_nhwc_and_resize(tmp_path):
    path = _npz(tmp_path / "rgb.npz", "nhwc", shape=(3, 8, 8))
    data = load_dataset(str(path), input_shape=(3, 4, 6))  # non-square target
    assert data.train.images.shape[1:] == (3, 4, 6) and data.test.images.dtype == torch.uint8


def test_npz_refusals(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((4, 1, 2, 2)) - 3.0, y_train=np.zeros(4, int),
             x_test=np.zeros((2, 1, 2, 2)), y_test=np.zeros(2, int))  # fmt: skip
    with pytest.raises(DatasetNotFoundError, match=r"scale them to \[0, 1\] or \[0, 255\]"):
        load_dataset(str(bad), input_shape=(1, 2, 2))
    np.savez(bad, x_train=np.zeros((4, 1, 2, 2)), y_train=np.zeros(4, int))
    with pytest.raises(DatasetNotFoundError, match="lacks x_test, y_test"):
        load_dataset(str(bad), input_shape=(1, 2, 2))
    obj = np.empty(4, dtype=object)
    np.savez(bad, x_train=obj, y_train=obj, x_test=obj, y_test=obj)  # needs pickle: refused
    with pytest.raises(DatasetNotFoundError, match="without pickle"):
        load_dataset(str(bad), input_shape=(1, 2, 2))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "none.npz"), input_shape=(1, 2, 2))
    with pytest.raises(MicromixError, match="unknown dataset"):
        dataset_kind("cifar10")


def _folder(root: Path, n_per_class: int = 6, size=(10, 14)) -> Path:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
                root / c / f"{i}.png"
            )
    return root


def test_folder_non_square_and_export_reads_only_what_it_needs(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs")
    data = load_dataset(str(root), input_shape=(3, 7, 5))
    assert data.train.images.shape[1:] == (3, 7, 5)
    assert len(data.train) + len(data.heldout) + len(data.test) == 12
    import micromix.data.folder as folder

    reads = []
    real = folder._read
    monkeypatch.setattr(folder, "_read", lambda p, *a: reads.append(p) or real(p, *a))
    first = load_test_images(str(root), 2, (3, 7, 5))
    assert len(reads) == 2  # two files opened, not the folder
    assert torch.equal(first.images, data.test.images[:2])
    assert torch.equal(first.labels, data.test.labels[:2])


def test_fashion_non_square_and_first_test_images(tmp_path, fake_mnist):  # noqa: F811
    data = load_dataset("fashion_mnist", data_dir=tmp_path, input_shape=(3, 20, 12), heldout=5)
    assert data.train.images.shape == (25, 3, 20, 12) and data.test.images.shape[1:] == (3, 20, 12)
    assert torch.equal(data.test.images[:, 0], data.test.images[:, 2])  # grey repeated
    first = load_test_images("fashion_mnist", 3, (1, 1, 20, 12), data_dir=tmp_path)
    assert torch.equal(first.images[:, 0], data.test.images[:3, 0])
    npz = _npz(tmp_path / "d.npz")
    full = load_dataset(str(npz), input_shape=(1, 6, 4))
    assert torch.equal(load_test_images(str(npz), 4, (1, 6, 4)).images, full.test.images[:4])


@pytest.mark.parametrize("cmd", ["train", "search", "finetune"])
def test_batch_size_must_be_positive(cmd, capsys):
    extra = {"train": [], "search": ["--checkpoint", "x.pt"], "finetune": ["--checkpoint", "x"]}
    argv = [cmd, *extra[cmd], "--batch-size", "0", "--run-dir", "r"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch-size" in err and "at least 1" in err and len(err.splitlines()) == 1


def test_each_dataset_kind_is_one_source_and_only_the_built_in_one_is_no_path(tmp_path):
    """A stored dataset that is a folder or a file must come from the command line."""
    from micromix.data import KINDS, SOURCES, dataset_source
    from micromix.stored import names_code_or_path

    names = {"fashion_mnist": "Fashion-MNIST", "npz": str(tmp_path / "d.npz"), "folder": "a/b"}
    assert set(names) == set(KINDS) == set(SOURCES)
    for kind, name in names.items():
        assert dataset_source(name) is SOURCES[kind]
        assert names_code_or_path("dataset", name) == SOURCES[kind].is_path
    assert [k for k, s in SOURCES.items() if not s.is_path] == ["fashion_mnist"]
