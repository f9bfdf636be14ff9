"""TFLite Micro's own runtime (the `tflite-micro` package) as the reference for imported files.

Used by the tests and by bench/mlperf_tiny.py: `run` computes a .tflite file's outputs in TFLM,
`arena_bytes` reads the arena TFLM allocates for it, and `float_copy` turns a hybrid file
(int8 weights, float activations, which TFLM refuses to run) into a pure float file with the
same dequantized weights, so an import can be checked against the file's own float network.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MicromixError

_INT8, _FLOAT32 = 9, 0  # schema.fbs TensorType


def _runtime() -> Any:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise MicromixError(
            "running .tflite files needs TFLite Micro's runtime: pip install tflite-micro."
        ) from None
    return runtime


def run(model: bytes, x: np.ndarray) -> np.ndarray:
    """The file's output for one input `x` in the file's layout (NHWC or (1, N)); an int8
    file takes and returns int8."""
    it = _runtime().Interpreter.from_bytes(bytes(model))
    it.set_input(np.ascontiguousarray(x), 0)
    it.invoke()
    return np.array(it.get_output(0))


def input_quantization(model: bytes) -> tuple[float, int] | None:
    """(scale, zero point) of an integer input, None for a float input."""
    return _quantization(_runtime().Interpreter.from_bytes(bytes(model)).get_input_details(0))


def output_quantization(model: bytes) -> tuple[float, int] | None:
    """(scale, zero point) of an integer output, None for a float output."""
    return _quantization(_runtime().Interpreter.from_bytes(bytes(model)).get_output_details(0))


def _quantization(details: dict) -> tuple[float, int] | None:
    if details["dtype"] == np.float32:
        return None
    p = details["quantization_parameters"]
    return float(p["scales"][0]), int(p["zero_points"][0])


def arena_bytes(model: bytes) -> int:
    """The arena TFLM allocates for the file (its RecordingMicroAllocator's total, printed on
    the process's stderr after one invoke)."""
    it = _runtime().Interpreter.from_bytes(bytes(model))
    d = it.get_input_details(0)
    it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), 0)
    it.invoke()
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    if m is None:
        raise MicromixError("TFLite Micro did not report its arena.")
    return int(m.group(1))


def float_copy(path: str | Path) -> bytes:
    """The file with every int8 constant that feeds a float operator stored as float32
    (`(q - zero_point) * scale`); a file without such constants comes back unchanged."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(Path(path).read_bytes(), 0))
    for g in model.subgraphs:
        for t in g.tensors:
            data = model.buffers[t.buffer].data
            if t.type != _INT8 or data is None or len(data) == 0:
                continue
            q = t.quantization
            a = np.frombuffer(bytes(np.asarray(data, dtype=np.uint8)), np.int8).reshape(t.shape)
            shape = [1] * a.ndim
            scale = np.asarray(q.scale, np.float64)
            if scale.size > 1:
                shape[q.quantizedDimension] = scale.size
            zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else 0, np.float64)
            f = (a - zp.reshape(shape if zp.size > 1 else [1] * a.ndim)) * scale.reshape(shape)
            model.buffers[t.buffer].data = np.frombuffer(f.astype(np.float32).tobytes(), np.uint8)
            t.type, t.quantization = _FLOAT32, None
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
