"""Models from ONNX and TFLite files: exact imports (against torch, and against the files' own
float networks run by TFLite Micro), exact TF 'SAME' padding, refusals naming the op, the
path-is-data rule of model specs, and bit-exact C from imported MLPerf Tiny models."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyResNet, missing, require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.errors import MicromixError
from micromix.importers import input_shape, load
from micromix.importers.net import conv, same_padding
from micromix.models import ModelSpec, authorize, build, spec_from_ref

MLPERF = Path(__file__).resolve().parents[1].parent / "shared" / "third_party" / "mlperf-tiny"
FLOAT_FILES = {
    "kws": "kws_ref_model_float32.tflite",
    "vww": "vww_96_float.tflite",
    "ic": "pretrainedResnet.tflite",
    "ad": "ad01_fp32.tflite",
}


def require_module(*names: str) -> None:
    """Skip (fail under MICROMIX_STRICT=1) unless every Python package in `names` imports."""
    absent = [n for n in names if importlib.util.find_spec(n) is None]
    if absent:
        missing(f"Python package {', '.join(absent)} not installed (pip install '.[test]')")


def mlperf(name: str) -> Path:
    import os

    base = Path(os.environ.get("MICROMIX_MLPERF_TINY", MLPERF))
    if not (base / name).is_file():
        missing(f"{base / name} not found (set MICROMIX_MLPERF_TINY)")
    return base / name


# ---- exact padding -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 20),
    k=st.integers(1, 6),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
)
def test_same_padding_gives_tensorflows_output_size(n: int, k: int, s: int, d: int) -> None:
    before, after = same_padding(n, k, s, d)
    assert after - before in (0, 1)  # TF puts the odd row after
    assert (n + before + after - ((k - 1) * d + 1)) // s + 1 == -(-n // s)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    s=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_asymmetric_padding_maps_exactly(h, w, kh, kw, s, seed) -> None:
    """The oracle pads explicitly (before, after) and convolves without padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(3, 2, kh, kw, generator=g).double()  # float32 values, as the file's
    pads = (same_padding(h, kh, s), same_padding(w, kw, s))
    want = F.conv2d(F.pad(x, (*pads[1], *pads[0])), wt, stride=s)
    m = conv(wt.numpy(), None, pads, (s, s), 1).double()
    with torch.no_grad():
        got = m(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_padding_two_more_after_is_refused() -> None:
    with pytest.raises(MicromixError, match=r"padded \(0, 2\)"):
        conv(np.ones((1, 1, 3, 3)), None, ((0, 2), (0, 0)), (1, 1), 1)


# ---- ONNX ----------------------------------------------------------------------------------


def _export_onnx(model: torch.nn.Module, shape: tuple, path: Path) -> Path:
    require_module("onnx")
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, torch.randn(1, *shape), str(path), dynamo=False)
    return path


def test_onnx_from_torch_computes_what_torch_computes(tmp_path) -> None:
    torch.manual_seed(0)
    model = TinyResNet().eval()
    for m in model.modules():  # statistics that make BN folding matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    f = _export_onnx(model, (1, 12, 10), tmp_path / "net.onnx")
    assert input_shape("onnx", f) == (1, 12, 10)
    net = load("onnx", f)
    x = torch.randn(8, 1, 12, 10)
    with torch.no_grad():
        want, got = model(x), net(x)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_onnx_model_traces_into_the_same_ops_as_the_torch_model(tmp_path) -> None:
    from micromix.graph import trace

    model = TinyResNet().eval()
    f = _export_onnx(model, (1, 12, 12), tmp_path / "net.onnx")
    ours = trace(load("onnx", f), input_shape=(1, 1, 12, 12))
    theirs = trace(model, input_shape=(1, 1, 12, 12))
    assert [(o.kind, o.out_shape, o.weight and o.weight.shape) for o in ours.ops] == [
        (o.kind, o.out_shape, o.weight and o.weight.shape) for o in theirs.ops
    ]


def test_onnx_op_that_cannot_be_mapped_is_named(tmp_path) -> None:
    require_module("onnx")
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("LRN", ["x"], ["y"], size=3)
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
    )
    onnx.save(helper.make_model(g), str(tmp_path / "lrn.onnx"))
    with pytest.raises(MicromixError, match="ONNX op LRN"):
        load("onnx", tmp_path / "lrn.onnx")


def test_damaged_files_are_one_sentence(tmp_path) -> None:
    require_module("onnx", "tflite")
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MicromixError, match="not a readable ONNX file"):
        load("onnx", bad)
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MicromixError, match="not a TensorFlow Lite file"):
        load("tflite", bad)


# ---- TFLite: the MLPerf Tiny reference files -----------------------------------------------


def _file_input(shape: tuple[int, int, int], x: np.ndarray) -> np.ndarray:
    """micromix's N x C x H x W input in the file's layout (NHWC, or N x F for a vector)."""
    c, h, w = shape
    return x.reshape(len(x), c) if (h, w) == (1, 1) else x.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("task", sorted(FLOAT_FILES))
def test_float_reference_file_imports_exactly(task: str) -> None:
    """Outputs equal to the file's own float network run by TFLite Micro, within 1e-4
    relative (KWS's float file keeps int8 weights: TFLM runs its dequantized float copy)."""
    require_module("tflite", "tflite_micro")
    from micromix.importers import reference

    f = mlperf(FLOAT_FILES[task])
    shape = input_shape("tflite", f)
    net = load("tflite", f)
    model = reference.float_copy(f)
    rng = np.random.default_rng(1)
    for _ in range(2):
        x = rng.uniform(-1, 1, (1, *shape)).astype(np.float32) * (30 if task == "kws" else 1)
        want = reference.run(model, _file_input(shape, x))
        with torch.no_grad():
            got = net(torch.from_numpy(x)).numpy().reshape(want.shape)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_int8_file_imports_its_dequantized_weights() -> None:
    """Each imported conv weight of the int8 KWS file is (q - zero_point) * scale of its output
    channel, read here through TFLM's own flatbuffer schema (a second reader), in torch's OIHW."""
    require_module("tflite", "tflite_micro")
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    f = mlperf("kws_ref_model.tflite")
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(f.read_bytes(), 0))
    g = m.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    convs = [op for op in g.operators if codes[op.opcodeIndex] == fb.BuiltinOperator.CONV_2D]
    got = [mod.weight for name, mod in load("tflite", f).named_children() if name[:4] == "conv"]
    assert len(got) == len(convs) == 5
    for op, w in zip(convs, got):
        t = g.tensors[op.inputs[1]]
        q = np.asarray(m.buffers[t.buffer].data, np.uint8).view(np.int8).reshape(t.shape)
        scale = np.asarray(t.quantization.scale, np.float64)[:, None, None, None]
        want = ((q - np.asarray(t.quantization.zeroPoint)[:, None, None, None]) * scale).astype(
            np.float32
        )
        w = w.detach().numpy()
        if w.shape[2] != want.shape[1]:  # the stem's 'SAME' rows: one leading zero row
            assert not w[:, :, 0].any()
            w = w[:, :, 1:]
        np.testing.assert_array_equal(w, want.transpose(0, 3, 1, 2))


@pytest.mark.parametrize(
    "name",
    ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
     "ad01_int8.tflite", "ad01_fp32.tflite"],
)  # fmt: skip
def test_dense_scales_read_as_tflms_own_reader_reads_them(name: str) -> None:
    """importers.tflite.dense_scales (what the MLPerf Tiny benches scale dense layers by) gives
    what TFLM's flatbuffer schema (a second reader) has for the fully connected weights: one
    scale each in every int8 file ("tensor"), none in a float file (None)."""
    require_module("tflite", "tflite_micro")
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    from micromix.importers.tflite import dense_scales

    f = mlperf(name)
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(f.read_bytes(), 0))
    g = m.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    fcs = [op for op in g.operators if codes[op.opcodeIndex] == fb.BuiltinOperator.FULLY_CONNECTED]
    quant = [g.tensors[op.inputs[1]].quantization for op in fcs]
    counts = [len(q.scale) for q in quant if q is not None and q.scale is not None]
    want = None if not counts else "tensor" if max(counts) == 1 else "channel"
    assert fcs and dense_scales(f) == want
    assert (want is None) == name.endswith(("fp32.tflite",))


def test_tflite_op_that_cannot_be_mapped_is_named(tmp_path) -> None:
    require_module("tflite", "tflite_micro")
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(mlperf("ad01_fp32.tflite").read_bytes(), 0))
    m.operatorCodes[0].builtinCode = fb.BuiltinOperator.TANH
    m.operatorCodes[0].deprecatedBuiltinCode = fb.BuiltinOperator.TANH
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    (tmp_path / "tanh.tflite").write_bytes(bytes(b.Output()))
    with pytest.raises(MicromixError, match="operator TANH"):
        load("tflite", tmp_path / "tanh.tflite")


# ---- model specs: a path read from a file is data ------------------------------------------


def test_spec_of_a_tflite_file_is_authorized_like_a_py_file(tmp_path) -> None:
    require_module("tflite")
    f = tmp_path / "ad.tflite"
    f.write_bytes(mlperf("ad01_fp32.tflite").read_bytes())
    spec = spec_from_ref(str(f))
    assert (spec.kind, spec.input_shape, spec.ref, spec.named) == (
        "tflite",
        (640, 1, 1),
        str(f),
        True,
    )
    stored = ModelSpec.from_json(json.loads(json.dumps(spec.to_json())))
    with pytest.raises(MicromixError, match="follows no path read from a file"):
        build(stored)
    with pytest.raises(MicromixError, match="follows no path read from a file"):
        authorize(stored, None, "run/config.json")
    ok = authorize(stored, spec_from_ref(str(f)), "run/config.json")
    assert sum(p.numel() for p in build(ok).parameters()) == sum(
        p.numel() for p in load("tflite", f).parameters()
    )
    other = tmp_path / "other.tflite"
    other.write_bytes(f.read_bytes())
    with pytest.raises(MicromixError, match="records model"):
        authorize(stored, spec_from_ref(str(other)), "run/config.json")
    f.write_bytes(mlperf("kws_ref_model_float32.tflite").read_bytes())
    with pytest.raises(MicromixError, match="sha256"):
        authorize(stored, spec_from_ref(str(f)), "run/config.json")
    with pytest.raises(MicromixError, match="changed since it was named"):
        build(spec)


def test_spec_refuses_arguments_and_a_different_input_shape() -> None:
    require_module("tflite")
    f = str(mlperf("kws_ref_model_float32.tflite"))
    assert spec_from_ref(f, input_shape="1x49x10").input_shape == (1, 49, 10)
    with pytest.raises(MicromixError, match="differs from the input 1x49x10"):
        spec_from_ref(f, input_shape="1x28x28")
    with pytest.raises(MicromixError, match="--model-args does not apply"):
        spec_from_ref(f, {"num_classes": 3})
    with pytest.raises(MicromixError, match="does not exist"):
        spec_from_ref("/nonexistent/net.onnx")


def test_cli_memory_of_the_anomaly_detection_file(capsys) -> None:
    """AD is dense-only on a 640 vector: (640, 1, 1) in, ten Linear layers; the CLI's FLASH is
    the memory model's for the traced import."""
    require_module("tflite")
    from micromix.cli import main
    from micromix.graph import trace
    from micromix.memory import memory_report
    from micromix.policy import Policy

    f = mlperf("ad01_fp32.tflite")
    assert main(["memory", "--model", str(f)]) == 0
    out = capsys.readouterr().out
    g = trace(load("tflite", f), input_shape=(1, 640, 1, 1))
    assert [o.kind for o in g.ops] == ["linear"] * 10
    flash = memory_report(g, Policy.uniform(g, 8)).flash_bytes
    assert f"FLASH {flash:,} B" in out


# ---- bit-exact C of imported models --------------------------------------------------------


def _w8a8_c(f: Path, tmp: Path) -> dict:
    from micromix.data.loader import ImageSet
    from micromix.export import export_c
    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.policy import Policy
    from micromix.quant import calibrate, prepare

    require_tool("gcc", "make", "nm", "size")
    net = load("tflite", f)
    shape = input_shape("tflite", f)
    g = trace(net, input_shape=(1, *shape))
    rng = np.random.default_rng(0)
    imgs = torch.from_numpy(rng.integers(0, 256, (64, *shape), dtype=np.uint8))
    ds = ImageSet(imgs, torch.zeros(64, dtype=torch.int64), ("x",))
    q = prepare(net, Policy.uniform(g, 8), g)
    calibrate(q, ds, batches=2, batch_size=32)
    im = convert(q.eval())
    out = export_c(im, tmp / "c", test_images=imgs[:8].numpy())
    return json.loads((out / "export.json").read_text())


@pytest.mark.parametrize("task", ["kws", "ad", "ic"])
def test_imported_reference_model_exports_bit_exact_c(tmp_path, task: str) -> None:
    require_module("tflite")
    s = _w8a8_c(mlperf(FLOAT_FILES[task]), tmp_path)
    assert s["selftest_identical"] == s["selftest_images"] == 8


@pytest.mark.slow
def test_imported_vww_exports_bit_exact_c(tmp_path) -> None:
    require_module("tflite")
    s = _w8a8_c(mlperf(FLOAT_FILES["vww"]), tmp_path)
    assert s["selftest_identical"] == s["selftest_images"] == 8
