"""Sigmoid, SiLU (as a module and written by hand) and LeakyReLU activations, a 3x3 stride-1 padded average pool, a
squeeze-excitation gate built from Linear layers (reshaped with view), and a trailing
log_softmax (left out of the integer model: the C returns the logits)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (1, 28, 28)


class GatedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 12, 3, stride=2, padding=1)
        self.act = nn.SiLU()
        self.conv = nn.Conv2d(12, 12, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.fc1 = nn.Linear(12, 4)
        self.fc2 = nn.Linear(4, 12)
        self.out = nn.Linear(12, 10)

    def forward(self, x):
        x = self.act(self.stem(x))  # 14x14
        x = F.leaky_relu(self.bn(self.conv(x)), 0.1)  # 7x7
        x = F.avg_pool2d(x, 3, stride=1, padding=1)  # count_include_pad: divisor 9 everywhere
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        x = x * g.view(-1, 12, 1, 1)
        x = x * torch.sigmoid(x)  # swish written by hand: traced as one silu table
        return F.log_softmax(self.out(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), dim=1)
