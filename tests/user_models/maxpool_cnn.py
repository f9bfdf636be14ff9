"""A small CNN with max pooling in both forms: nn.MaxPool2d and F.max_pool2d with padding and
ceil_mode."""

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (1, 28, 28)


class MaxPoolCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))  # 14x14
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)  # 7x7 (7.5 rounded up)
        x = F.relu(self.conv3(x))
        x = F.max_pool2d(x, 2, ceil_mode=True)  # 4x4: the last window hangs over the edge
        return self.fc(torch.flatten(x, 1))
