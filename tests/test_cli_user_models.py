"""Bring your own model, through the plain CLI: a model defined in a .py file that the test
writes (none from the zoo) goes through `memory`, `search --strategy rule`, a short
`finetune`, `export` (C bit-identical, object bytes = memory report), and `micromix run`,
then `report` / `export` / `memory --run-dir` / `run --resume` from the run directory
without being told the model again.

All data here is SYNTHETIC (random pixels with a class-dependent bright band, so that a few
steps learn something): a Fashion-MNIST-sized (1x28x28) image folder and a 1x49x10 keyword-
spotting-like .npz (NHWC floats in [0, 1]). Adding a model is one line in MODELS.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool
from PIL import Image

from micromix.cli import main

RESNET = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """Basic residual block with a projection (1x1 conv + BN) shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.proj(x))


class ResNet(nn.Module):
    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.b1 = Block(width, 2 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.b1(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))
'''

DSCNN = '''
import torch
import torch.nn as nn


def dw_block(c):
    return nn.Sequential(
        nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
    )


def ds_cnn(num_classes=12, c=12):
    """A DS-CNN for 49x10 MFCC frames (keyword spotting), built by a factory function."""
    return nn.Sequential(
        nn.Conv2d(1, c, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        dw_block(c), dw_block(c),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, num_classes),
    )
'''

USER_MODELS = Path(__file__).parent / "user_models"  # i10-ops' op models: 10 classes each

# (source text or .py path, NAME, --model-args, --input-shape, dataset kind); one line per model.
MODELS = [
    pytest.param(RESNET, "ResNet", {"num_classes": 3}, "1x28x28", "folder", id="resnet-proj"),
    pytest.param(DSCNN, "ds_cnn", {"num_classes": 4}, "1x49x10", "npz", id="ds-cnn-kws"),
    pytest.param(
        USER_MODELS / "mbv3_block.py", "MobileNetV3Block", {}, "1x28x28", "npz", id="mbv3-se"
    ),
]
# Max pooling and concat (i10-ops' models) through the same CLI path; the run-dir test below
# does not depend on the ops, so it keeps the three above.
OP_MODELS = [
    pytest.param(
        USER_MODELS / "maxpool_cnn.py", "MaxPoolCNN", {}, "1x28x28", "folder", id="maxpool"
    ),
    pytest.param(USER_MODELS / "concat_net.py", "ConcatNet", {}, "1x28x28", "npz", id="concat"),
]


def _synthetic(n: int, shape: tuple[int, int, int], classes: int, seed: int):
    """Random uint8 images with a bright horizontal band whose position is the class."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 60, (n, c, h, w)).astype(np.float32)
    for i in range(n):
        x[i, :, (y[i] * h) // classes : ((y[i] + 1) * h) // classes] += 150
    return x.clip(0, 255).astype(np.uint8), y


def make_dataset(root: Path, kind: str, shape: tuple[int, int, int], classes: int) -> str:
    """A synthetic dataset of `kind`: an image folder with train/ and test/, or an .npz."""
    (x, y), (xt, yt) = _synthetic(240, shape, classes, 0), _synthetic(60, shape, classes, 1)
    if kind == "npz":
        path = root / "data.npz"
        nhwc = lambda a: (a.astype(np.float32) / 255).transpose(0, 2, 3, 1)  # noqa: E731
        np.savez(path, x_train=nhwc(x), y_train=y, x_test=nhwc(xt), y_test=yt)
        return str(path)
    for part, (images, labels) in (("train", (x, y)), ("test", (xt, yt))):
        for i, (img, label) in enumerate(zip(images, labels)):
            d = root / "folder" / part / f"class{label}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0]).save(d / f"{i}.png")
    return str(root / "folder")


def _need_gcc() -> None:
    require_tool("gcc", "make", "nm", "size")


def cli(*argv: str) -> None:
    assert main([str(a) for a in argv]) == 0, argv


def memory_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    cli("memory", *argv, "--json")
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("source, name, margs, shape, kind", MODELS + OP_MODELS)
def test_user_model_through_the_cli(tmp_path, capsys, source, name, margs, shape, kind):
    _need_gcc()
    net = tmp_path / "net.py"
    net.write_text(source.read_text() if isinstance(source, Path) else source)
    model = [f"--model={net}:{name}", f"--model-args={json.dumps(margs)}", f"--input-shape={shape}"]
    dims = tuple(int(d) for d in shape.split("x"))
    data = make_dataset(tmp_path, kind, dims, margs.get("num_classes", 10))
    # Trace and memory model of the fresh model, straight from the file.
    mem8 = memory_json(capsys, *model)
    assert mem8["flash_bytes"] > 0 and mem8["ram_bytes"] > 0
    # Float weights from an ordinary training loop: a DDP-prefixed {"state_dict": ...} file.
    import torch

    from micromix.models import from_source

    torch.manual_seed(0)
    ref = from_source(f"{net}:{name}", input_shape=shape, **margs)
    assert ref(torch.zeros(1, *dims)).shape == (1, margs.get("num_classes", 10))
    plain = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, plain)
    cli("train", *model, "--checkpoint", plain, "--dataset", data, "--epochs", 1,
        "--batch-size", 32, "--lr", 0.05, "--run-dir", tmp_path / "float")  # fmt: skip
    float_pt = tmp_path / "float" / "model.pt"
    # Commands that build the model name its code on the command line, even with the model
    # file (whose spec is data: it never picks the code that runs).
    cli("search", *model, "--checkpoint", float_pt, "--strategy", "rule", "--flash", "0.85x",
        "--ram", "0.85x", "--dataset", data, "--train-images", 64, "--eval-images", 32,
        "--batch-size", 16, "--no-progress", "--run-dir", tmp_path / "search")  # fmt: skip
    policy = tmp_path / "search" / "policy.json"
    cli("finetune", *model, "--checkpoint", float_pt, "--policy", policy, "--dataset", data,
        "--epochs", 1, "--max-batches", 3, "--batch-size", 16, "--run-dir", tmp_path / "ft")  # fmt: skip
    capsys.readouterr()
    # The recorded dataset is a path: read from a run directory, it is not followed.
    assert main(["export", "--run-dir", str(tmp_path / "ft"), "--images", "12"]) == 2
    assert f"records --dataset {data}" in capsys.readouterr().err
    cli("export", "--run-dir", tmp_path / "ft", "--images", 12, "--dataset", data)
    out = capsys.readouterr().out
    assert f"the first 12 {data} test images" in out
    assert "12/12 images bit-identical" in out and "exactly the memory model" in out
    built = json.loads((tmp_path / "ft" / "c" / "export.json").read_text())["built"]
    # The memory report of the run directory (its model and policy) = the compiled objects.
    mem = memory_json(capsys, "--run-dir", tmp_path / "ft")
    assert (built["const_bytes"], built["ram_bytes"]) == (mem["flash_bytes"], mem["ram_bytes"])
    # The model file alone is measured from its stored graph: no --model, no code.
    assert mem == memory_json(capsys, "--checkpoint", float_pt, "--policy", policy)


# A run directory without its model's source does not depend on the model: one in the default
# run (npz data, a non-square input); every model goes through the CLI in the test above.
SOURCELESS = [
    p if p.id == "ds-cnn-kws" else pytest.param(*p.values, id=p.id, marks=pytest.mark.slow)
    for p in MODELS
]


@pytest.mark.parametrize("source, name, margs, shape, kind", SOURCELESS)
def test_run_dir_of_a_user_model_works_without_its_source(tmp_path, capsys, source, name, margs,
                                                          shape, kind):  # fmt: skip
    """report, export and memory of a run directory work from its data with the model's .py
    deleted (C bit-identical to the run's own export); a resume needs --model again, and a
    changed source is refused naming both hashes."""
    _need_gcc()
    net = tmp_path / "net.py"
    source = source.read_text() if isinstance(source, Path) else source
    net.write_text(source)
    dims = tuple(int(d) for d in shape.split("x"))
    data = make_dataset(tmp_path, kind, dims, margs.get("num_classes", 10))
    run = tmp_path / "run"
    model = ["--model", f"{net}:{name}", "--model-args", json.dumps(margs), "--input-shape", shape]
    cli("run", "--quiet", *model, "--dataset", data, "--strategy", "rule", "--float-epochs", 1,
        "--flash", "0.85x", "--ram", "0.85x", "--search-train-images", 64,
        "--search-eval-images", 32, "--finetune-epochs", 1, "--finetune-batches", 2,
        "--eval-images", 30, "--export-images", 6, "--export-target", "host",
        "--batch-size", 32, "--run-dir", run)  # fmt: skip
    spec = json.loads((run / "config.json").read_text())["settings"]["model_spec"]
    assert spec["kind"] == "file" and spec["location"] == str(net.resolve())
    assert spec["input_shape"] == list(dims) and spec["args"] == margs
    net.unlink()  # a received run directory: the data travels, the model's source does not
    capsys.readouterr()
    cli("report", run)
    assert "report.md" in capsys.readouterr().out and (run / "policy.png").exists()
    cli("export", "--run-dir", run, "--out", tmp_path / "c2", "--images", 6, "--dataset", data)
    assert "6/6 images bit-identical" in capsys.readouterr().out
    for c_file in (run / "c").glob("*.[ch]"):
        assert c_file.read_bytes() == (tmp_path / "c2" / c_file.name).read_bytes(), c_file.name
    stages = json.loads((run / "stages.json").read_text())
    mem = memory_json(capsys, "--run-dir", run)
    assert stages["export"]["memory model FLASH (B)"] == mem["flash_bytes"]
    # Resuming builds the model: only with --model (and the data path) given again, and only
    # the recorded source.
    net.write_text(source + "\n# edited\n")
    for argv, needle in (([], "--model"), (model, "sha256")):
        capsys.readouterr()
        argv = ["run", "--resume", "--quiet", *argv, "--dataset", data, "--run-dir", str(run)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and str(net.resolve()) in err
    net.write_text(source)
    cli("run", "--resume", "--quiet", *model, "--dataset", data, "--run-dir", run)  # no redo
