from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from micromix.errors import MicromixError, UnsupportedOpError
from micromix.graph import INPUT, WeightScales, graph_from_json, trace
from micromix.models import create


def test_tiny_resnet_ops_fused_in_order(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    assert [o.kind for o in g.ops] == ["conv", "conv", "conv", "add", "avgpool", "linear"]
    stem, dw, pw, add, pool, fc = g.ops
    assert stem.bn == "bn" and stem.act == "relu" and stem.out_shape == (5, 4, 4)
    assert dw.is_depthwise and dw.act == "relu6" and dw.bn == "bn1"
    assert pw.act is None and pw.bn is None  # linear projection: a signed tensor
    assert add.act == "relu" and set(add.inputs) == {stem.output, pw.output}
    assert fc.in_shape == (5, 1, 1) and fc.out_shape == (3, 1, 1)
    assert g.output == fc.output and g.input == INPUT


def test_macs_and_weights(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    stem, dw, pw, add, pool, fc = g.ops
    assert stem.macs == 5 * 4 * 4 * 1 * 3 * 3
    assert dw.macs == 5 * 4 * 4 * 1 * 3 * 3
    assert pw.macs == 5 * 4 * 4 * 5
    assert fc.macs == 5 * 3
    assert stem.weight.row_elems == 9 and pw.weight.row_elems == 5 and fc.weight.shape == (3, 5)


def test_lifetimes_keep_skip_tensor_alive(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    t = g.tensors
    stem = g.ops[0].output
    assert (t[INPUT].first, t[INPUT].last) == (0, 0)
    assert (t[stem].first, t[stem].last) == (0, 3)  # read by the dw conv and by the add
    assert t[g.output].last == len(g.ops) - 1
    assert not g.is_chain
    assert set(g.live_at(2)) == {stem, g.ops[1].output, g.ops[2].output}


def test_signedness(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    signed = {n: t.signed for n, t in g.tensors.items()}
    assert signed[INPUT] is False
    assert signed["stem"] is False and signed["conv2"] is True
    assert signed[g.ops[3].output] is False  # ReLU after the add
    assert signed[g.output] is True  # logits


def test_zoo_models_chain_and_residual():
    g1 = trace(create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10))
    assert g1.is_chain and len(g1.weight_ops) == 28
    g2 = trace(create("mobilenet_v2", width=0.35, resolution=28, in_channels=1, num_classes=10))
    assert not g2.is_chain and sum(o.kind == "add" for o in g2.ops) == 10


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 2 * 2, 2)

    def forward(self, x):
        x = torch.relu(self.c(x))
        x = F.avg_pool2d(x, 2)
        return self.fc(x.view(x.size(0), -1))


def test_functional_forms_and_flatten_of_spatial_map():
    g = trace(Functional(), (1, 3, 4, 4))
    assert [o.kind for o in g.ops] == ["conv", "avgpool", "linear"]
    assert g.ops[0].act == "relu" and g.ops[1].kernel == (2, 2)
    # flatten is an alias: the linear sees the (C, H, W) map, which the export must reorder to HWC
    assert g.ops[2].in_shape == (4, 2, 2) and g.ops[2].weight.row_elems == 16


class WithShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        return self.up(self.c(x))


class Interp(nn.Module):
    def forward(self, x):
        return torch.flip(x, (2,))


class WithNestedInterp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)
        self.block = nn.Sequential(Interp())

    def forward(self, x):
        return self.block(self.c(x))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.c(x)
        return x


class StandaloneBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        return self.c(self.bn(x))


@pytest.mark.parametrize(
    "model, needle",
    [
        (WithShuffle(), "PixelShuffle` at module `up`"),
        (
            WithNestedInterp(),
            "`flip` (fx node `flip`) in the forward of module `block.0` (Interp)",
        ),
        (DataDependent(), "torch.fx cannot trace"),
        (StandaloneBN(), "module `bn`"),
    ],
)
def test_unsupported_ops_name_op_and_place(model, needle):
    with pytest.raises(UnsupportedOpError) as e:
        trace(model, (1, 1, 8, 8))
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_trace_needs_shape_outside_zoo(tiny_resnet):
    with pytest.raises(UnsupportedOpError, match="input_shape"):
        trace(tiny_resnet)


def test_a_model_that_does_not_run_on_the_shape_is_one_sentence_with_the_cause(capfd):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(UnsupportedOpError) as e:
        trace(net, (1, 3, 8, 8))
    msg = str(e.value)
    assert "layer `0` (Conv2d)" in msg and "to have 1 channels, but got 3" in msg
    assert "\n" not in msg and "ShapeProp" not in msg and "meta=" not in msg
    assert capfd.readouterr().err == ""  # fx's own traceback is not printed
    with pytest.raises(UnsupportedOpError, match=r"layer `3` \(Linear\)"):
        trace(net, (1, 1, 10, 10))  # the convolution runs; the flattened size is wrong


def test_weight_scales_round_trip_through_json_and_refuse_a_bad_value() -> None:
    """The setting is data: per channel by default, JSON round trip, and a bad value or key is
    one sentence (MicromixError: exit 2 on the command line) before anything runs."""
    import json

    s = WeightScales(dense="tensor")
    assert WeightScales.from_json(json.loads(json.dumps(s.to_json()))) == s
    assert WeightScales().dense == "channel"
    with pytest.raises(MicromixError, match="dense weight scales must be one of"):
        WeightScales(dense="row")
    with pytest.raises(MicromixError, match="dense weight scales"):
        WeightScales.from_json({"dense": "layer"})
    with pytest.raises(MicromixError, match="unknown setting 'conv'"):
        WeightScales.from_json({"dense": "tensor", "conv": "tensor"})


def test_per_tensor_scales_are_recorded_on_dense_ops_and_stored() -> None:
    """trace(..., WeightScales("tensor")) marks the linears only; the stored Graph keeps it
    and a Graph stored before the setting existed reads as per channel."""
    import json

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 5)).eval()
    g = trace(net, (1, 1, 4, 4), WeightScales(dense="tensor"))
    assert [o.per_tensor for o in g.weight_ops] == [False, True]
    assert graph_from_json(json.loads(json.dumps(g.to_json()))) == g
    plain = trace(net, (1, 1, 4, 4))
    assert not any(o.per_tensor for o in plain.ops)
    old = plain.to_json()
    for o in old["ops"]:
        del o["per_tensor"]
    assert graph_from_json(old) == plain
