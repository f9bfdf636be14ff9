"""Models written as a user would, none from the zoo: one nn.Module class per module, built
with no arguments, and the input shape it takes as INPUT_SHAPE = (C, H, W).

    maxpool_cnn.MaxPoolCNN        conv / max pooling (module and functional, padding, ceil_mode)
    concat_net.ConcatNet          two branches joined by torch.cat along channels
    mbv3_block.MobileNetV3Block   inverted residual with hardswish and a squeeze-excitation gate
    gated_net.GatedNet            sigmoid / silu / leaky_relu, a padded avg_pool2d, a linear SE
                                  gate reshaped with view, and a trailing log_softmax
"""

MODELS = {
    "maxpool_cnn": "MaxPoolCNN",
    "concat_net": "ConcatNet",
    "mbv3_block": "MobileNetV3Block",
    "gated_net": "GatedNet",
}
