"""Policy: JSON round trip, uniform policies, and every validation error (one sentence each)."""

from __future__ import annotations

import json

import pytest

from micromix.errors import PolicyError
from micromix.graph import INPUT, trace
from micromix.policy import FORMAT_VERSION, Policy


@pytest.fixture
def graph(tiny_resnet):
    return trace(tiny_resnet, (1, 1, 8, 8))


def one_sentence(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


def test_uniform_keeps_input_and_logits_at_8(graph):
    p = Policy.uniform(graph, 2, 4)
    assert set(p.weights) == {o.name for o in graph.weight_ops}
    assert set(p.weights.values()) == {2}
    assert p.activations[INPUT] == 8 and p.activations[graph.output] == 8
    assert {b for t, b in p.activations.items() if t not in (INPUT, graph.output)} == {4}
    assert p.validate(graph) is p


def test_json_round_trip(graph, tmp_path):
    p = Policy.uniform(graph, 8).replace(weights={"stem": 2}, activations={"conv1": 4})
    assert Policy.from_json(json.loads(json.dumps(p.to_json()))) == p
    p.save(tmp_path / "p.json")
    q = Policy.load(tmp_path / "p.json")
    assert q == p and hash(q) == hash(p) and q.key() == p.key()
    assert q.to_json()["format"] == FORMAT_VERSION


def test_policy_is_immutable(graph):
    p = Policy.uniform(graph, 8)
    with pytest.raises(TypeError):
        p.weights["stem"] = 2  # type: ignore[index]
    q = p.replace(weights={"stem": 2})
    assert p.weights["stem"] == 8 and q.weights["stem"] == 2 and p != q


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda p: p.replace(weights={"ghost": 8}), "unknown weight tensor 'ghost'"),
        (lambda p: p.replace(activations={"ghost": 8}), "unknown activation tensor 'ghost'"),
        (
            lambda p: Policy({k: v for k, v in p.weights.items() if k != "fc"}, p.activations),
            "no bits for weight tensor 'fc'",
        ),
        (
            lambda p: Policy(p.weights, {k: v for k, v in p.activations.items() if k != "conv1"}),
            "no bits for activation tensor 'conv1'",
        ),
        (lambda p: p.replace(weights={"stem": 3}), "'stem' has 3 bits; allowed are 2, 4, 8"),
        (lambda p: p.replace(activations={"conv1": 16}), "has 16 bits"),
        (lambda p: p.replace(weights={"stem": True}), "has True bits"),
        (lambda p: p.replace(weights={"stem": 4.0}), "has 4.0 bits"),
        (lambda p: p.replace(activations={INPUT: 4}), "'input' must stay at 8 bits"),
        (lambda p: p.replace(activations={"fc": 2}), "'fc' must stay at 8 bits"),
    ],
)
def test_validation_errors(graph, change, match):
    with pytest.raises(PolicyError, match=match) as e:
        change(Policy.uniform(graph, 8)).validate(graph)
    one_sentence(e)


def test_validate_with_other_allowed_bits(graph):
    p = Policy.uniform(graph, 8).replace(weights={"stem": 3})
    assert p.validate(graph, allowed=tuple(range(2, 9))) is p


@pytest.mark.parametrize(
    "obj, match",
    [
        ([1, 2], "not a JSON object"),
        ({"format": 2, "weights": {}, "activations": {}}, "format version 2"),
        ({"weights": {}, "activations": {}}, "format version None"),
        ({"format": FORMAT_VERSION, "activations": {}}, "no 'weights' object"),
        ({"format": FORMAT_VERSION, "weights": {}, "activations": [8]}, "no 'activations'"),
    ],
)
def test_from_json_errors(obj, match):
    with pytest.raises(PolicyError, match=match) as e:
        Policy.from_json(obj)
    one_sentence(e)


def test_load_errors(tmp_path):
    with pytest.raises(PolicyError, match="does not exist") as e:
        Policy.load(tmp_path / "nope.json")
    one_sentence(e)
    bad = tmp_path / "bad.json"
    bad.write_text("{'weights': ")
    with pytest.raises(PolicyError, match="not valid JSON") as e:
        Policy.load(bad)
    assert "\n" not in str(e.value)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not valid JSON"):
        Policy.load(binary)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": 99, "weights": {}, "activations": {}}))
    with pytest.raises(PolicyError, match=f"policy file {wrong} has format version 99"):
        Policy.load(wrong)
