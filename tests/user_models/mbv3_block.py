"""A MobileNetV3-style network: hardswish stem, one inverted residual block with a
squeeze-excitation gate (global average pool, 1x1 conv, ReLU, 1x1 conv, hardsigmoid, channel-wise
multiply) and a residual add, then pooling and a linear classifier."""

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (1, 28, 28)


class MobileNetV3Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.stem_act = nn.Hardswish()
        self.expand = nn.Conv2d(8, 24, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(24)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False)
        self.dw_bn = nn.BatchNorm2d(24)
        self.se_reduce = nn.Conv2d(24, 8, 1)
        self.se_expand = nn.Conv2d(8, 24, 1)
        self.se_gate = nn.Hardsigmoid()
        self.project = nn.Conv2d(24, 8, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem_act(self.stem_bn(self.stem(x)))  # 14x14
        y = F.hardswish(self.expand_bn(self.expand(x)))
        y = F.hardswish(self.dw_bn(self.dw(y)))
        s = F.adaptive_avg_pool2d(y, 1)
        s = self.se_gate(self.se_expand(F.relu(self.se_reduce(s))))
        y = y * s  # N x C x H x W times an N x C x 1 x 1 gate
        x = x + self.project_bn(self.project(y))
        x = F.hardswish(self.head(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
