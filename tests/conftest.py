"""Shared fixtures: tiny models for fast tests, and the real dataset when installed."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST splits, or skip with the install instruction."""
    from micromix.data import load_dataset

    try:
        return load_dataset("fashion_mnist")
    except DatasetNotFoundError:
        pytest.skip(
            "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist (or set MICROMIX_DATA)"
        )
