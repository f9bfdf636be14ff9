"""Model zoo: a timm-style registry of small CNNs for microcontrollers (`registry.py`), the
blocks they share (`layers.py`), and model specs (`spec.py`: a zoo name, a user's .py file or
an importable module, as plain data).

Every zoo model is built only from ops the micromix fx tracer can fuse (conv+BN+ReLU, ``x + y``,
pooling, flatten, dropout, linear) and carries ``model.micromix_config``.
"""

from __future__ import annotations

from torch import nn

from micromix.errors import MicromixError
from micromix.models import mnasnet, mobilenet_v1, mobilenet_v2
from micromix.models.layers import ConvNet, conv_bn, init_weights
from micromix.models.registry import (
    CONFIG_KEYS,
    create,
    create_from_config,
    list_models,
    register,
)
from micromix.models.spec import (
    ModelSpec,
    attach_spec,
    authorize,
    build,
    input_shape_of,
    parse_input_shape,
    parse_model_args,
    record_input_shape,
    spec_from_ref,
    spec_of,
)


def input_shape(model: nn.Module) -> tuple[int, int, int, int]:
    """The (1, C, H, W) input of the model: traced, from its spec, or from a zoo config."""
    shape = input_shape_of(model)
    if shape is None:
        raise MicromixError(
            "the model's input shape is unknown; trace it once with mm.trace(model, input_shape=...)."
        )
    return shape


def from_source(ref: str, *, input_shape: object = None, **args: object) -> nn.Module:
    """Build ``--model REF`` from Python: a zoo name, "path/net.py:NAME" or "pkg.mod:NAME"."""
    return build(spec_from_ref(ref, args, input_shape))


__all__ = [
    "CONFIG_KEYS",
    "ModelSpec",
    "attach_spec",
    "authorize",
    "build",
    "from_source",
    "input_shape_of",
    "parse_input_shape",
    "parse_model_args",
    "record_input_shape",
    "spec_from_ref",
    "spec_of",
    "ConvNet",
    "conv_bn",
    "create",
    "create_from_config",
    "init_weights",
    "input_shape",
    "list_models",
    "register",
]
_ZOO = (mnasnet, mobilenet_v1, mobilenet_v2)  # imported for their registrations
