"""Models written by a user (tests/user_models, none from the zoo) go through every stage:
trace, memory report, a short QAT, integer conversion and the C export built with gcc. The C is
bit-identical to the numpy reference, the object files hold exactly the memory report's bytes,
and each op of the integer model computes what the fake-quant model computes."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
import torch.fx
from conftest import require_tool
from user_models import MODELS

from micromix.data import ImageSet
from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.model import run_op
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.quant import FinetuneConfig, finetune


def user_model(name: str) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    mod = importlib.import_module(f"user_models.{name}")
    torch.manual_seed(0)
    return getattr(mod, MODELS[name])().eval(), mod.INPUT_SHAPE


def random_data(shape: tuple[int, int, int], n: int = 256, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return ImageSet(x, y, tuple(str(i) for i in range(10)))


def user_policy(name: str, g) -> Policy:
    """Mixed bits; ConcatNet's branches get different bits (4 and 2) and the concat 8."""
    rng = np.random.default_rng(1)
    pol = Policy.uniform(g, 8)
    acts = {t: int(rng.choice([2, 4, 8])) for t in g.tensors if t not in (g.input, g.output)}
    weights = {o.name: int(rng.choice([2, 4, 8])) for o in g.weight_ops}
    if name == "concat_net":
        acts.update({"branch_a": 4, "branch_b2": 2, "stem": 8, "cat": 8})
    return pol.replace(weights=weights, activations=acts)


def fake_quant_codes(qmodel, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Integer codes (NHWC, int64) of every activation tensor of the fake-quant model."""
    values: dict[str, torch.Tensor] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            values[n.name] = v = super().run_node(n)
            return v

    with torch.no_grad():
        Recorder(qmodel.net).run(x.float() / 255)
    calls = {n.target: n.name for n in qmodel.net.graph.nodes if n.op == "call_module"}
    g, codes = qmodel.graph, {}
    for name, t in g.tensors.items():
        q = qmodel.act_quant(name)
        target = qmodel.act_targets[name]
        node = (
            t.fx_node
            if target in (qmodel.act_targets.get(i) for i in _inputs(g, name))
            else calls[target]
        )
        v = values[node] / q.scale()
        v = v.reshape(*v.shape, 1, 1) if v.dim() == 2 else v
        codes[name] = torch.floor(v + 0.5).long().numpy().transpose(0, 2, 3, 1)
    return codes


def _inputs(g, tensor: str) -> tuple[str, ...]:
    t = g.tensors[tensor]
    return () if t.producer is None else g.op(t.producer).inputs


@pytest.mark.parametrize("name", list(MODELS))
def test_user_model_end_to_end(tmp_path, name: str) -> None:
    require_tool("gcc", "make", "nm", "size")
    model, shape = user_model(name)
    g = trace(model, (1, *shape))
    pol = user_policy(name, g)
    report = memory_report(g, pol)
    data = random_data(shape)
    run = FinetuneConfig(epochs=1, max_batches=3, batch_size=32, calib_batches=2, progress=False)
    qmodel = finetune(model, pol, data, config=run, graph=g)
    im = convert(qmodel)
    assert (im.report.flash_bytes, im.report.ram_bytes) == (report.flash_bytes, report.ram_bytes)

    # Each op of the integer model, fed the fake-quant model's input codes, gives its output
    # codes: tables, max pooling and concat exactly; requantized ops within one step.
    x = data.images[:64]
    fq = fake_quant_codes(qmodel, x)
    for iop in im.ops:
        got = run_op(iop, *(fq[t] for t in iop.op.inputs))
        want = fq[iop.op.output]
        diff = np.abs(got - want)
        if iop.op.kind in ("lut", "maxpool", "cat"):
            assert diff.max() == 0, (name, iop.name)
        assert diff.max() <= 1 and (diff > 0).mean() <= 0.01, (name, iop.name, diff.max())
    ref = im.run(x.numpy())
    with torch.no_grad():
        logits = qmodel(x.float() / 255) / im.tensors[g.output].scale
    assert (np.abs(logits.numpy() - ref) > 0.5).mean() <= 0.02  # errors may compound a little

    # The C library: bit-identical to the reference, and exactly the memory report's bytes.
    out = export_c(im, tmp_path / "c", test_images=x.numpy())
    s = json.loads((out / "export.json").read_text())
    assert s["selftest_identical"] == s["selftest_images"] == 64
    assert s["built"] == {
        "const_bytes": report.flash_bytes,
        "rodata_bytes": report.flash_bytes,
        "arena_bytes": report.arena_bytes,
        "scratch_bytes": report.scratch_bytes,
        "ram_bytes": report.ram_bytes,
    }


def test_trailing_log_softmax_is_left_out_with_a_note() -> None:
    model, shape = user_model("gated_net")
    g = trace(model, (1, *shape))
    assert len(g.notes) == 1 and "arg-max" in g.notes[0] and "logits" in g.notes[0]
    assert g.op(g.output).kind == "linear"
    pol = Policy.uniform(g, 8)
    from micromix.quant import prepare

    qmodel = prepare(model, pol, g).eval()
    x = torch.rand(4, *shape)
    with torch.no_grad():  # the float model's rows are log-probabilities, the QAT's logits
        assert torch.allclose(torch.logsumexp(model(x), 1), torch.zeros(4), atol=1e-5)
        assert not torch.allclose(torch.logsumexp(qmodel(x), 1), torch.zeros(4), atol=1e-2)
    assert "log_softmax" not in qmodel.net.code


def test_concat_branches_keep_their_own_bits_and_the_kernel_writes_only_its_output(
    tmp_path,
) -> None:
    """Sub-byte channels of different inputs share output bytes: the concat kernel's
    read-modify-write must stay inside its output tensor (checked-writes build)."""
    require_tool("gcc", "make", "nm", "size")
    from test_export import run_checked_build

    from micromix.integer.convert import random_qparams

    model, shape = user_model("concat_net")
    g = trace(model, (1, *shape))
    for acts in ({"cat": 2, "branch_a": 4, "branch_b2": 8}, {"cat": 4, "branch_a": 2, "stem": 2}):
        pol = Policy.uniform(g, 4).replace(activations=acts)
        im = convert(random_qparams(g, pol, seed=3), g, pol)
        cat = next(i for i in im.ops if i.op.kind == "cat")
        assert cat.in_bits == tuple(pol.activations[t] for t in cat.op.inputs)
        x = random_data(shape, 16).images.numpy()
        out = export_c(im, tmp_path / f"c{acts['cat']}", test_images=x, check=False)
        r = run_checked_build(out)
        assert r.returncode == 0, r.stderr
        assert b"16/16 images bit-identical" in r.stdout
