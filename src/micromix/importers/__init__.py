"""Models from other frameworks' files: ONNX (.onnx) and TensorFlow Lite (.tflite).

A file is data: its numbers become plain torch layers built by micromix's own code
(`net.ImportedNet`), and nothing named inside it is imported or called. `KINDS` maps a file
suffix to the model-spec kind (`models.spec`), which keeps the file's path and sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from ..errors import MicromixError
from .net import ImportedNet

KINDS = {".onnx": "onnx", ".tflite": "tflite"}


def kind_of(path: str | Path) -> str | None:
    """ "onnx" or "tflite" for a file name with that suffix, else None."""
    return KINDS.get(Path(path).suffix.lower())


def _onnx() -> ModuleType:
    from . import onnx

    return onnx


def _tflite() -> ModuleType:
    from . import tflite

    return tflite


# kind -> its reader module, imported when first used (each pulls in its framework's parser).
IMPORTERS: dict[str, Callable[[], ModuleType]] = {"onnx": _onnx, "tflite": _tflite}


def _module(kind: str) -> ModuleType:
    reader = IMPORTERS.get(kind)
    if reader is None:
        raise MicromixError(f"no importer for {kind!r} files; micromix reads .onnx and .tflite.")
    return reader()


def input_shape(kind: str, path: str | Path) -> tuple[int, int, int]:
    """(C, H, W) of the file's input."""
    return _module(kind).input_shape(path)


def load(kind: str, path: str | Path) -> ImportedNet:
    """The file's network as a torch module in eval mode, its weights from the file."""
    return _module(kind).load(path)


__all__ = ["IMPORTERS", "KINDS", "ImportedNet", "input_shape", "kind_of", "load"]
