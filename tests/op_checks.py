"""What every op of the registry must pass, end to end (used by the tests/test_ops_*.py files):
a short QAT of a small model around the op, the integer model's op fed the fake-quant model's
input codes giving exactly its output codes (the op moves codes, so nothing may differ), and
the C library, built with gcc, bit-identical to the numpy reference with exactly the memory
report's bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import require_tool
from test_user_models import fake_quant_codes, random_data

from micromix.errors import UnsupportedOpError
from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.model import run_op
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.quant import FinetuneConfig, finetune


def refusal(call) -> str:
    """The one-sentence refusal of tracing `call` applied to a small conv's output."""

    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return call(self.conv(x))

    with pytest.raises(UnsupportedOpError) as e:
        trace(M(), (1, 1, 4, 4))
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def policies(g) -> dict[str, Policy]:
    """8-bit, 4-bit, 2-bit, and mixed bits from a fixed seed."""
    rng = np.random.default_rng(3)
    out = {f"{b}/{b}": Policy.uniform(g, b) for b in (8, 4, 2)}
    acts = {t: int(rng.choice([2, 4, 8])) for t in g.tensors if t not in (g.input, g.output)}
    w = {o.name: int(rng.choice([2, 4, 8])) for o in g.weight_ops}
    out["mixed"] = Policy.uniform(g, 8).replace(weights=w, activations=acts)
    return out


def end_to_end(model: torch.nn.Module, shape: tuple, pol: Policy, kind: str, out_dir) -> None:
    require_tool("gcc", "make", "nm", "size")
    g = trace(model, (1, *shape))
    assert kind in {o.kind for o in g.ops}
    report = memory_report(g, pol)
    data = random_data(shape, n=96)
    run = FinetuneConfig(epochs=1, max_batches=2, batch_size=32, progress=False, calib_batches=2)
    qmodel = finetune(model, pol, data, config=run, graph=g)
    im = convert(qmodel)
    x = data.images[:48]
    fq = fake_quant_codes(qmodel, x)
    for iop in im.ops:
        if iop.op.kind == kind:
            got = run_op(iop, *(fq[t] for t in iop.op.inputs))
            assert np.array_equal(got, fq[iop.op.output]), iop.name
    out = export_c(im, out_dir, test_images=x.numpy())
    s = json.loads((out / "export.json").read_text())
    assert s["selftest_identical"] == s["selftest_images"] == 48
    assert (s["built"]["const_bytes"], s["built"]["ram_bytes"]) == (
        report.flash_bytes,
        report.ram_bytes,
    )
