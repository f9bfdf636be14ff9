"""Model specs (zoo / file / module), checkpoints in the usual layouts, and the model file
round trip of a non-zoo model; a traced model remembers its input shape."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import TinyResNet

import micromix as mm
from micromix.errors import CheckpointError, MicromixError
from micromix.files import load_checkpoint
from micromix.models import (
    ModelSpec,
    attach_spec,
    authorize,
    build,
    from_source,
    parse_input_shape,
    spec_from_ref,
    spec_of,
)
from micromix.train import load_float, load_weights

NET = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, num_classes=10, c=4):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.bn(self.conv(x))))))


def make(num_classes=5):
    return Net(num_classes, c=6)
"""


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


def test_input_shape_forms():
    assert parse_input_shape("1x49x10") == parse_input_shape((1, 1, 49, 10)) == (1, 49, 10)
    for bad in ("49x10", "1x0x3", "axbxc", (1, 2.5, 3)):
        with pytest.raises(MicromixError, match="CxHxW"):
            parse_input_shape(bad)


def test_spec_json_round_trip_and_rebuild(net_file):
    spec = spec_from_ref(f"{net_file}:Net", {"num_classes": 12}, "1x9x7")
    assert spec.kind == "file" and spec.location == str(net_file.resolve())
    assert len(spec.sha256) == 64
    again = ModelSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec and again.input_shape == (1, 9, 7)
    with pytest.raises(MicromixError, match="names code to run"):
        build(again)  # read from a file: data, until the command line names the same code
    model = build(authorize(again, spec, "net.json"))
    assert model.fc.out_features == 12 and spec_of(model) == spec
    graph = mm.trace(model)  # the spec gives the shape
    assert graph.input_shape == (1, 1, 9, 7)
    factory = from_source(f"{net_file}:make", input_shape="1x8x8")  # a factory function
    assert factory.fc.out_features == 5 and factory.conv.out_channels == 6


def test_module_spec(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = spec_from_ref("mypkg.nets:Net", {"c": 3}, (1, 1, 5, 5))
    assert (spec.kind, spec.location, spec.input_shape) == ("module", "mypkg.nets", (1, 5, 5))
    assert build(spec).conv.out_channels == 3
    sys.modules.pop("mypkg.nets", None)
    sys.modules.pop("mypkg", None)


@pytest.mark.parametrize(
    "ref, needle",
    [
        ("resnet_9000", "unknown model"),
        ("missing.py:Net", "does not exist"),
        ("no_such_pkg.mod:Net", "cannot be found"),
    ],
)
def test_bad_refs_are_one_sentence(ref, needle):
    with pytest.raises(MicromixError, match=needle):
        spec_from_ref(ref)


def test_bad_names_and_args(net_file):
    with pytest.raises(MicromixError, match="no class or function named Nope"):
        build(spec_from_ref(f"{net_file}:Nope", {}, "1x4x4"))
    with pytest.raises(MicromixError, match="failed"):
        build(spec_from_ref(f"{net_file}:Net", {"colour": 3}, "1x4x4"))


def test_changed_file_warns_once(net_file, capsys):
    spec = spec_from_ref(f"{net_file}:Net", {}, "1x4x4")
    net_file.write_text(NET + "\n# changed\n")
    build(spec)
    build(spec)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed since it was recorded" in err[0]


def test_save_and_load_a_non_zoo_model(tmp_path, tiny_resnet):
    mm.trace(tiny_resnet, input_shape=(1, 1, 12, 10))  # recorded on the model
    assert mm.trace(tiny_resnet).input_shape == (1, 1, 12, 10)
    mm.save_model(tmp_path / "m.pt", tiny_resnet)
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck["model_spec"]["kind"] == "file" and ck["model_spec"]["name"] == "TinyResNet"
    with pytest.raises(MicromixError, match="names code to run"):
        mm.load_model(tmp_path / "m.pt")  # the file alone never picks the code
    loaded, _ = mm.load_model(tmp_path / "m.pt", named=spec_of(tiny_resnet))
    x = torch.rand(3, 1, 12, 10)
    assert torch.equal(loaded.eval()(x), tiny_resnet.eval()(x))
    assert mm.trace(loaded).input_shape == (1, 1, 12, 10)


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "ddp"])
def test_checkpoint_layouts(tmp_path, layout):
    torch.manual_seed(1)
    src = TinyResNet()
    sd = src.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer": {}},
        "ddp": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    }[layout]
    torch.save(obj, tmp_path / "w.pth")
    where = __import__("conftest").__file__
    spec = ModelSpec("file", "TinyResNet", {}, (1, 8, 8), where, named=True)
    model = load_float(tmp_path / "w.pth", spec)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


def test_checkpoint_mismatch_names_the_key_and_shapes(tmp_path):
    model = TinyResNet(c=5)
    other = TinyResNet(c=6).state_dict()
    with pytest.raises(
        CheckpointError, match=r"stem.weight has shape \(6, 1, 3, 3\) .* \(5, 1, 3, 3\)"
    ):
        load_weights(model, other, "w.pth")
    missing = {k: v for k, v in model.state_dict().items() if k != "fc.bias"}
    with pytest.raises(CheckpointError, match=r"lacks fc.bias \(shape \(3,\)\)"):
        load_weights(model, missing, "w.pth")
    extra = {**model.state_dict(), "head.weight": torch.zeros(2, 2)}
    with pytest.raises(
        CheckpointError, match=r"has head.weight \(shape \(2, 2\)\) that the model lacks"
    ):
        load_weights(model, extra, "w.pth")
    torch.save({"epoch": 3}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        load_float(tmp_path / "x.pth", ModelSpec("zoo", "mobilenet_v1"))
    with pytest.raises(CheckpointError, match="give --model"):
        torch.save(model.state_dict(), tmp_path / "y.pth")
        load_float(tmp_path / "y.pth", None)


def test_api_needs_the_shape_once(tiny_resnet):
    """search / finetune / convert after one trace: no graph= and no second shape."""
    from micromix.strategies.evaluate import SyntheticEvaluator

    graph = mm.trace(tiny_resnet, input_shape=(1, 1, 16, 16))
    ref = mm.memory_report(graph, mm.Policy.uniform(graph, 8))
    budget = mm.Budget.parse(flash="0.95x", reference=ref)
    result = mm.search(tiny_resnet, None, budget, "rule", evaluator=SyntheticEvaluator(graph))
    qmodel = mm.prepare(tiny_resnet, result.policy)
    imodel = mm.convert(qmodel)
    assert imodel.input_shape == (1, 16, 16)


def test_qat_checkpoint_of_a_file_model_converts_without_the_model(tmp_path, net_file):
    """The QAT checkpoint rebuilds its QAT model only with the model named by the caller, but
    its integer model comes from the stored data alone, equal to converting the live model."""
    from micromix.integer import convert
    from micromix.quant.finetune import load_qat, save_qat
    from micromix.stored import load_integer

    model = from_source(f"{net_file}:Net", input_shape="1x6x6", num_classes=4).eval()
    qmodel = mm.prepare(model, mm.Policy.uniform(mm.trace(model), 4))
    attach_spec(qmodel, spec_of(model))
    save_qat(tmp_path / "qat.pt", qmodel)
    with pytest.raises(MicromixError, match="names code to run"):
        load_qat(tmp_path / "qat.pt")
    again, ck = load_qat(tmp_path / "qat.pt", model)
    assert ck["model_spec"]["args"] == {"num_classes": 4}
    x = torch.rand(2, 1, 6, 6)
    assert torch.equal(again(x), qmodel(x))
    net_file.unlink()
    stored, live = load_integer(tmp_path / "qat.pt"), convert(qmodel)
    images = torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8).numpy()
    assert np.array_equal(stored.run(images), live.run(images))
    for a, b in zip(stored.ops, live.ops):
        assert a.op == b.op and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
        assert (a.weights is None) == (b.weights is None)
        assert a.weights is None or np.array_equal(a.weights, b.weights)


def test_every_stored_kind_has_one_source_and_only_the_zoo_builds_unnamed(tmp_path):
    """The registry of model sources holds each kind a config.json or checkpoint may name
    ("kind" stays the stored key); a spec read from a file builds only for the zoo, and the
    refusal says code or model file as the source does."""
    from micromix import importers
    from micromix.models.spec import SOURCES

    assert set(SOURCES) == {"zoo", "file", "module", *importers.KINDS.values()}
    for kind, source in SOURCES.items():
        where = None if source.zoo else str(tmp_path / f"net.{kind}")
        stored = ModelSpec.from_json(
            ModelSpec(kind, "mobilenet_v1" if source.zoo else "Net", location=where).to_json()
        )
        assert stored.to_json()["kind"] == kind and stored.source is source
        assert stored.is_zoo == (kind == "zoo")
        assert stored.is_model_file == (kind in importers.KINDS.values())
        if stored.is_zoo:
            assert authorize(stored, None, "config.json").named
            continue
        phrase = "names a model file" if stored.is_model_file else "names code to run"
        with pytest.raises(MicromixError, match=phrase):
            authorize(stored, None, "config.json")
        with pytest.raises(MicromixError, match=phrase):
            build(stored)  # unnamed: refused before any file is read
    with pytest.raises(MicromixError, match="kind must be one of zoo, file, module"):
        ModelSpec.from_json({"kind": "pickle", "name": "x", "location": "a"})
