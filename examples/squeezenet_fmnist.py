"""A SqueezeNet 1.1-style network as a user would write it: fire modules, MaxPool (ceil mode),
no BatchNorm, and a ReLU before the global average pooling. No micromix imports.

micromix run --model examples/squeezenet_fmnist.py:SqueezeNet --input-shape 1x28x28

Without BatchNorm, SGD at micromix's old default (peak lr 0.1, no warm-up, no clipping) left
this net at chance (issue 25); results/float_recipe.md has the numbers.
"""

import torch
import torch.nn as nn


class Fire(nn.Module):
    """Squeeze (1x1) then two parallel expands (1x1 and 3x3), concatenated along channels."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.s = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True))
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU(inplace=True))
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.s(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1's layout with every channel count times `width` (1.0: 64, 16/64, ...)."""

    def __init__(self, num_classes: int = 10, width: float = 0.5, in_channels: int = 1):
        super().__init__()

        def c(n: int) -> int:
            return max(4, int(n * width))

        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c(64), 3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            pool,
            Fire(c(64), c(16), c(64), c(64)),
            Fire(c(128), c(16), c(64), c(64)),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(c(128), c(32), c(128), c(128)),
            Fire(c(256), c(32), c(128), c(128)),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(c(256), c(48), c(192), c(192)),
            Fire(c(384), c(48), c(192), c(192)),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(c(384), num_classes, 1),
            nn.ReLU(inplace=True),  # as in SqueezeNet: the logits are a ReLU's output, pooled
            nn.AdaptiveAvgPool2d(1),
        )

        # torchvision's SqueezeNet initialisation: He-uniform convs, a small final conv,
        # zero biases (PyTorch's default init shrinks the signal through 18 BN-free layers
        # until no optimizer moves it).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.classifier[1]:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)
