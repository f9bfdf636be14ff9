"""MobileNetV2 (Sandler et al. 2018), laid out exactly like torchvision's mobilenet_v2."""

from __future__ import annotations

from torch import nn

from micromix.models.layers import ConvNet, conv_bn
from micromix.models.registry import register

# (expansion t, out channels c, repeats n, first stride s), the paper's Table 2.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` (at least ``divisor``), as torchvision."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    # Never round down by more than 10%, so scaled layers keep close to the requested capacity.
    return new + divisor if new < 0.9 * value else new


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when expansion is 1) -> kxk depthwise -> 1x1 linear projection.

    No activation after the projection (the paper's "linear bottleneck"); the skip ``x + y``
    is added when the block keeps shape. Also used by MNasNet.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int, act: type
    ) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn(in_ch, hidden, 1, act=act))
        layers.append(conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        layers.append(conv_bn(hidden, out_ch, 1, act=None))
        self.block = nn.Sequential(*layers)
        # Fixed at build time, so fx tracing sees static control flow.
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


@register("mobilenet_v2")
def mobilenet_v2(
    *,
    width: float = 1.0,
    resolution: int = 224,
    in_channels: int = 3,
    num_classes: int = 1000,
    stem_stride: int | None = None,
    dropout: float = 0.2,
) -> nn.Module:
    """MobileNetV2 with ReLU6; 3,504,872 parameters at width 1.0 / 1000 classes."""
    ch = make_divisible(32 * width)
    # As torchvision: the last conv only grows with width, never shrinks below 1280.
    last = make_divisible(1280 * max(1.0, width))
    layers: list[nn.Module] = [conv_bn(in_channels, ch, 3, stem_stride, act=nn.ReLU6)]
    for t, c, n, s in _SETTINGS:
        out = make_divisible(c * width)
        for i in range(n):
            layers.append(InvertedResidual(ch, out, 3, s if i == 0 else 1, t, nn.ReLU6))
            ch = out
    layers.append(conv_bn(ch, last, 1, act=nn.ReLU6))
    return ConvNet(nn.Sequential(*layers), last, num_classes, dropout)
