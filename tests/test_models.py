"""Model zoo: exact published sizes, registry errors, fx traceability, config round trip."""

from __future__ import annotations

import json
import operator

import pytest
import torch
from torch import fx, nn

from micromix.errors import MicromixError
from micromix.models import create, create_from_config, input_shape, list_models

NAMES = ["mnasnet", "mobilenet_v1", "mobilenet_v2"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mobilenet_v1", 4_231_976), ("mobilenet_v2", 3_504_872), ("mnasnet", 4_383_312)],
)
def test_imagenet_parameter_counts(name: str, expected: int) -> None:
    assert n_params(create(name)) == expected


def test_mobilenet_v1_weight_elements() -> None:
    # Conv + linear weights only (what is stored at 8 bits); no biases, no BN parameters.
    model = create("mobilenet_v1")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sum(m.weight.numel() for m in layers) == 4_209_088


def test_list_models() -> None:
    assert list_models() == NAMES


def test_unknown_model_lists_available() -> None:
    with pytest.raises(MicromixError, match="unknown model 'foo'") as info:
        create("foo")
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"width": -0.5},
        {"width": float("nan")},
        {"resolution": 0},
        {"in_channels": 0},
        {"num_classes": 1.5},
        {"stem_stride": 0},
        {"dropout": 1.0},
        {"depth": 2},
    ],
)
def test_bad_options_raise(kwargs: dict) -> None:
    with pytest.raises(MicromixError):
        create("mobilenet_v2", **kwargs)


def test_stem_stride_resolution_rule() -> None:
    assert create("mobilenet_v1", resolution=64).micromix_config["stem_stride"] == 1
    assert create("mobilenet_v1", width=0.25, resolution=96).micromix_config["stem_stride"] == 2
    assert create("mobilenet_v1", stem_stride=2, resolution=28).features[0][0].stride == (2, 2)


def _small(name: str, width: float) -> nn.Module:
    return create(name, width=width, resolution=28, in_channels=1, num_classes=10).eval()


@pytest.mark.parametrize("width", [0.25, 0.35])
@pytest.mark.parametrize("name", NAMES)
def test_small_models_trace(name: str, width: float) -> None:
    model = _small(name, width)
    assert model.micromix_config["stem_stride"] == 1
    assert model.features[0][0].stride == (1, 1)
    assert input_shape(model) == (1, 1, 28, 28)
    x = torch.randn(2, 1, 28, 28)
    traced = fx.symbolic_trace(model)
    with torch.no_grad():
        eager, graph = model(x), traced(x)
    assert eager.shape == (2, 10)
    torch.testing.assert_close(graph, eager)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name: str) -> None:
    model = create(name, width=0.35, resolution=32, in_channels=1, num_classes=7, dropout=0.1)
    cfg = json.loads(json.dumps(model.micromix_config))  # must survive a checkpoint as JSON
    assert cfg["name"] == name and cfg["stem_stride"] == 1
    clone = create_from_config(cfg)
    assert clone.micromix_config == model.micromix_config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in clone.state_dict().items()} == shapes


def test_create_from_config_rejects_garbage() -> None:
    with pytest.raises(MicromixError):
        create_from_config({"width": 1.0})
    with pytest.raises(MicromixError):
        input_shape(nn.Linear(2, 2))


def _n_adds(model: nn.Module) -> int:
    graph = fx.symbolic_trace(model).graph
    adds = (operator.add, torch.add)
    return sum(1 for n in graph.nodes if n.op == "call_function" and n.target in adds)


@pytest.mark.parametrize(("name", "expected"), [("mobilenet_v2", 10), ("mnasnet", 10)])
def test_residual_adds(name: str, expected: int) -> None:
    # V2: 1+2+3+2+2+0 repeated stride-1 same-width blocks; MNasNet: 2+2+2+1+3+0.
    assert _n_adds(_small(name, 1.0)) == expected


def test_mobilenet_v1_has_no_adds() -> None:
    assert _n_adds(_small("mobilenet_v1", 0.25)) == 0
