"""MobileNetV1 (Howard et al. 2017): a stem conv then 13 depthwise-separable blocks, ReLU."""

from __future__ import annotations

from torch import nn

from micromix.models.layers import ConvNet, conv_bn
from micromix.models.registry import register

# (out_channels, stride) of the 13 depthwise-separable blocks, as in the paper's Table 1.
_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
_MIN_CHANNELS = 8


def scale_channels(channels: int, width: float) -> int:
    """Width rule: ``max(8, int(channels * width))``.

    Truncation matches Keras' alpha multiplier; the floor of 8 keeps tiny widths usable.
    """
    return max(_MIN_CHANNELS, int(channels * width))


@register("mobilenet_v1")
def mobilenet_v1(
    *,
    width: float = 1.0,
    resolution: int = 224,
    in_channels: int = 3,
    num_classes: int = 1000,
    stem_stride: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MobileNetV1; 4,231,976 parameters at width 1.0 / 1000 classes.

    ``resolution`` only matters for ``micromix_config``: the net is convolutional up to the
    global pool. ``stem_stride`` arrives resolved (int) from the registry wrapper.
    """
    ch = scale_channels(32, width)
    layers: list[nn.Module] = [conv_bn(in_channels, ch, 3, stem_stride)]
    for channels, stride in _BLOCKS:
        out = scale_channels(channels, width)
        # Depthwise 3x3 (spatial filtering per channel) then pointwise 1x1 (channel mixing).
        layers.append(nn.Sequential(conv_bn(ch, ch, 3, stride, groups=ch), conv_bn(ch, out, 1)))
        ch = out
    return ConvNet(nn.Sequential(*layers), ch, num_classes, dropout)
