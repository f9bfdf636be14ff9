"""Two branches of different depth joined by torch.cat on channels (an Inception-style block);
a policy can give the branches different bits."""

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (1, 28, 28)


class ConcatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.branch_a = nn.Conv2d(8, 6, 1)
        self.branch_b1 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.branch_b1_bn = nn.BatchNorm2d(8)
        self.branch_b2 = nn.Conv2d(8, 5, 1)
        self.mix = nn.Conv2d(6 + 5 + 8, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))  # 14x14
        a = F.relu(self.branch_a(x))
        b = self.branch_b2(F.relu(self.branch_b1_bn(self.branch_b1(x))))  # signed: no ReLU
        y = torch.cat([a, b, x], dim=1)  # 6 + 5 + 8 channels
        y = F.relu(self.mix(y))
        return self.fc(torch.flatten(self.pool(y), 1))
