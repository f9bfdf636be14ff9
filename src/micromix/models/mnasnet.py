"""MNasNet-B1 (Tan et al. 2019), laid out exactly like torchvision's mnasnet1_0."""

from __future__ import annotations

from torch import nn

from micromix.models.layers import ConvNet, conv_bn
from micromix.models.mobilenet_v2 import InvertedResidual
from micromix.models.registry import register

# Depths of: stem, separable conv output, then the six stacks below (torchvision's _get_depths).
_DEPTHS = (32, 16, 24, 40, 80, 96, 192, 320)
# (expansion, kernel, first stride, repeats) of the six inverted-residual stacks.
_STACKS = ((3, 3, 2, 3), (3, 5, 2, 3), (6, 5, 2, 3), (6, 3, 1, 2), (6, 5, 2, 4), (6, 3, 1, 1))
_LAST_CHANNELS = 1280  # not width-scaled, as in torchvision


def round_depth(value: float, divisor: int = 8, round_up_bias: float = 0.9) -> int:
    """Round to a multiple of ``divisor``, rounding up if that would lose over 10% of ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new if new >= round_up_bias * value else new + divisor


@register("mnasnet")
def mnasnet(
    *,
    width: float = 1.0,
    resolution: int = 224,
    in_channels: int = 3,
    num_classes: int = 1000,
    stem_stride: int | None = None,
    dropout: float = 0.2,
) -> nn.Module:
    """MNasNet-B1 with ReLU; 4,383,312 parameters at width 1.0 / 1000 classes."""
    depths = [round_depth(d * width) for d in _DEPTHS]
    layers: list[nn.Module] = [
        conv_bn(in_channels, depths[0], 3, stem_stride),
        # Separable conv; written flat (never a residual) even if both depths round equal.
        conv_bn(depths[0], depths[0], 3, 1, groups=depths[0]),
        conv_bn(depths[0], depths[1], 1, act=None),
    ]
    ch = depths[1]
    for (expansion, kernel, stride, repeats), out in zip(_STACKS, depths[2:]):
        for i in range(repeats):
            block_stride = stride if i == 0 else 1
            layers.append(InvertedResidual(ch, out, kernel, block_stride, expansion, nn.ReLU))
            ch = out
    layers.append(conv_bn(ch, _LAST_CHANNELS, 1))
    return ConvNet(nn.Sequential(*layers), _LAST_CHANNELS, num_classes, dropout)
