"""Shared fixtures: tiny models for fast tests, and the real dataset when installed.

Tests that need something from outside Python (gcc, the Cortex-M tools, valgrind, the
Fashion-MNIST files) call `require_tool(...)` / `require_fashion()` or use the `fashion`
fixture: without it they skip, except when MICROMIX_STRICT=1 (CI), where they FAIL, so a CI
run cannot pass without the checks the project promises.
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from micromix.errors import DatasetNotFoundError


class TinyResNet(nn.Module):
    """A non-zoo model: stem, a residual block with ReLU after the add, pooling, linear."""

    def __init__(self, c: int = 5, classes: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 1, bias=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        y = F.relu6(self.bn1(self.conv1(x)))
        y = self.conv2(y)
        x = F.relu(x + y)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(self.drop(x))


@pytest.fixture
def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet().eval()


STRICT = os.environ.get("MICROMIX_STRICT", "") not in ("", "0")
FASHION_HINT = (
    "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist (or set MICROMIX_DATA)"
)


def full_disk(monkeypatch) -> None:
    """Every fsync fails as on a full disk (ENOSPC): atomic writes fail at their last step."""

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def missing(reason: str) -> None:
    """Skip this test, or fail it under MICROMIX_STRICT=1."""
    if STRICT:
        pytest.fail(f"MICROMIX_STRICT=1 and {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(*names: str) -> None:
    """Skip (fail under MICROMIX_STRICT=1) unless every program in `names` is on PATH."""
    absent = [n for n in names if shutil.which(n) is None]
    if absent:
        missing(f"{', '.join(absent)} not installed")


def require_module(name: str):
    """The imported module `name` (an optional extra), or skip / fail as `missing` says."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the optional module {name} is not installed")


def require_fashion(**kwargs):
    """The Fashion-MNIST splits (load_dataset kwargs), or skip / fail as `missing` says."""
    from micromix.data import load_dataset

    try:
        return load_dataset("fashion_mnist", **kwargs)
    except DatasetNotFoundError:
        missing(FASHION_HINT)


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST splits (skip, or fail under MICROMIX_STRICT=1, when absent)."""
    return require_fashion()
