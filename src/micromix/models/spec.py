"""Where a model comes from: a zoo name, a user's .py file, an importable module, or an ONNX /
TFLite file (`importers`: its numbers become torch layers, no code in it runs).

A `ModelSpec` is plain data (it round-trips through JSON and lives in config.json and in every
checkpoint), so no checkpoint ever needs a pickled class. Building from a file runs that
file, which is the point when it is the user's own model, and the danger when the spec came
from somebody else's file. So a spec has an authority: `named` is True only for a spec made
from what the user typed (`--model REF`, `spec_from_ref`) or from a live object of this
process; a spec read from JSON (`from_json`: checkpoints, config.json) is data. `build`
refuses a non-zoo spec that is not named, and `authorize` is the one way a file's spec becomes
buildable: the command line must name the same code (same file or module, same NAME, same
sha256 when both are known). Zoo specs are registry names and always build. An .onnx / .tflite
spec holds a path, and a path read from a file is never followed: it is authorized like a .py
file (the command line names the same file, same sha256), and builds only from a file whose
sha256 is the recorded one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from .. import importers
from ..errors import MicromixError
from .registry import create, list_models


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's architecture (the weights live elsewhere).

    kind: "zoo" (name is a registry name), "file" (location is the absolute path of a .py
    file), "module" (location is a dotted module name), or "onnx" / "tflite" (location is
    the absolute path of that file, name its file name); name is the class or factory;
    args its keyword arguments (JSON values); input_shape is (C, H, W) or None when unknown;
    sha256 is the hash of the source file when it was recorded.
    """

    kind: str
    name: str
    args: dict[str, Any] = field(default_factory=dict, hash=False)
    input_shape: tuple[int, int, int] | None = None
    location: str | None = None
    sha256: str | None = None
    # Not data: whether the user named this code in this process (see the module docstring).
    named: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if SOURCES.get(self.kind) is None:
            raise MicromixError(
                f"model spec kind must be one of {', '.join(SOURCES)}, got {self.kind!r}."
            )
        if not isinstance(self.name, str) or not self.name:
            raise MicromixError("a model spec needs a non-empty name.")
        if not isinstance(self.args, dict) or not all(isinstance(k, str) for k in self.args):
            raise MicromixError("model arguments must be a JSON object with string keys.")
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", parse_input_shape(self.input_shape))
        if not self.is_zoo and not self.location:
            raise MicromixError(f"a {self.kind} model spec needs its location.")

    @property
    def source(self) -> ModelSource:
        """The registry entry of this spec's kind: how it builds and what trust it needs."""
        return SOURCES[self.kind]

    @property
    def is_zoo(self) -> bool:
        """A name in micromix's model registry: it builds from any file as recorded."""
        return self.source.zoo

    @property
    def is_model_file(self) -> bool:
        """An ONNX / TFLite file: its location is a model read as data, not code."""
        return self.source.model_file

    @property
    def ref(self) -> str:
        """What the user types after --model."""
        if self.is_zoo:
            return self.name
        if self.is_model_file:
            return str(self.location)
        return f"{self.location}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "args": dict(self.args),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "location": self.location,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, d: Any) -> ModelSpec:
        if not isinstance(d, dict) or "kind" not in d or "name" not in d:
            raise MicromixError("the stored model spec is malformed (no kind or name).")
        unknown = set(d) - {"kind", "name", "args", "input_shape", "location", "sha256"}
        if unknown:
            raise MicromixError(f"the stored model spec has unknown keys {sorted(unknown)}.")
        shape = d.get("input_shape")
        return cls(
            kind=d["kind"],
            name=d["name"],
            args=dict(d.get("args") or {}),
            input_shape=None if shape is None else tuple(shape),
            location=d.get("location"),
            sha256=d.get("sha256"),
        )


def parse_input_shape(value: Any) -> tuple[int, int, int]:
    """(C, H, W) from "1x49x10", (1, 49, 10) or (1, 1, 49, 10) (a leading batch of 1)."""
    if isinstance(value, str):
        parts: list[Any] = value.lower().replace(",", "x").split("x")
    else:
        parts = list(value)
        if len(parts) == 4 and int(parts[0]) == 1:
            parts = parts[1:]
    try:
        dims = tuple(int(p) for p in parts)
        if any(float(p) != int(p) for p in parts):
            raise ValueError
    except (TypeError, ValueError):
        raise MicromixError(
            f"input shape must be CxHxW with positive integers (e.g. 1x49x10), got {value!r}."
        ) from None
    if len(dims) != 3 or min(dims) < 1:
        raise MicromixError(
            f"input shape must be CxHxW with positive integers (e.g. 1x49x10), got {value!r}."
        )
    return dims  # type: ignore[return-value]


def parse_model_args(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        args = json.loads(text)
    except json.JSONDecodeError as e:
        raise MicromixError(
            f"--model-args is not valid JSON ({e.msg} at column {e.colno})."
        ) from None
    if not isinstance(args, dict):
        raise MicromixError(
            f"--model-args must be a JSON object like '{{\"num_classes\": 12}}', got {text!r}."
        )
    return args


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def spec_from_ref(
    ref: str, args: dict[str, Any] | None = None, input_shape: Any = None
) -> ModelSpec:
    """The spec of `--model REF`: a zoo name, path/to/net.py:NAME, package.module:NAME, or
    path/to/net.onnx / .tflite (its input shape read from the file)."""
    args = dict(args or {})
    shape = None if input_shape is None else parse_input_shape(input_shape)
    if ref in list_models():
        return ModelSpec("zoo", ref, args, shape, named=True)
    if importers.kind_of(ref):
        return _imported_spec(ref, args, shape)
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise MicromixError(
            f"unknown model {ref!r}; give a zoo name ({', '.join(list_models())}), "
            "path/to/net.py:NAME, package.module:NAME or a .onnx / .tflite file."
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise MicromixError(f"model file {where} does not exist.")
        return ModelSpec("file", name, args, shape, str(path), file_sha256(path), named=True)
    if not all(part.isidentifier() for part in where.split(".")):
        raise MicromixError(f"{where!r} is neither a .py file nor a dotted module name.")
    origin = importlib.util.find_spec(where) if _importable(where) else None
    if origin is None:
        raise MicromixError(f"module {where} cannot be found on the Python path.")
    sha = file_sha256(origin.origin) if origin.origin and Path(origin.origin).is_file() else None
    return ModelSpec("module", name, args, shape, where, sha, named=True)


def _imported_spec(ref: str, args: dict[str, Any], shape: Any) -> ModelSpec:
    kind = importers.kind_of(ref) or ""
    path = Path(ref).expanduser().resolve()
    if not path.is_file():
        raise MicromixError(f"model file {ref} does not exist.")
    if args:
        raise MicromixError(f"--model-args does not apply to {kind} files; {ref} has no arguments.")
    found = importers.input_shape(kind, path)
    if shape is not None and shape != found:
        raise MicromixError(
            f"--input-shape {'x'.join(map(str, shape))} differs from the input "
            f"{'x'.join(map(str, found))} that {ref} declares; leave --input-shape out."
        )
    return ModelSpec(kind, path.name, {}, found, str(path), file_sha256(path), named=True)


def refuse_code(spec: ModelSpec, source: str) -> MicromixError:
    """The one sentence for a file whose spec names code the command line did not name."""
    if spec.is_model_file:
        return MicromixError(
            f"{source} names a model file ({spec.ref}) and micromix follows no path read from "
            f"a file; if you trust it, give --model {spec.ref} on the command line."
        )
    return MicromixError(
        f"{source} names code to run ({spec.kind} {spec.ref}) and micromix runs no code named "
        f"inside a file; if you trust it, give --model {spec.ref} (with its --model-args and "
        "--input-shape) on the command line."
    )


def authorize(recorded: ModelSpec, named: ModelSpec | None, source: str) -> ModelSpec:
    """The buildable spec for a spec read from a file (`source` says which, for messages).

    A zoo spec is a registry name: it builds as recorded. Any other spec builds only when the
    user named the same code (`named`, from the command line): same kind, location and NAME,
    and the same sha256 when both are known. The result is the named spec, with the file's
    arguments and input shape where the command line gave none. Raises before anything is
    imported."""
    if recorded.is_zoo:
        return replace(recorded, named=True)
    if named is None or not named.named or named.is_zoo:
        raise refuse_code(recorded, source)
    same = (recorded.kind, recorded.location, recorded.name) == (
        named.kind,
        named.location,
        named.name,
    )
    if not same:
        raise MicromixError(
            f"{source} records model {recorded.ref} but --model names {named.ref}; give "
            f"--model {recorded.ref} to use this file, or another file for {named.ref}."
        )
    if recorded.sha256 and named.sha256 and recorded.sha256 != named.sha256:
        raise MicromixError(
            f"{source} records {recorded.ref} with sha256 {recorded.sha256[:12]} but that "
            f"file now has sha256 {named.sha256[:12]}; restore the recorded source or start "
            "over with --force."
        )
    return replace(
        named,
        args=named.args or dict(recorded.args),
        input_shape=named.input_shape or recorded.input_shape,
    )


def _importable(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


_WARNED: set[str] = set()


def _warn(msg: str) -> None:
    if msg not in _WARNED:  # once per process: one command rebuilds a model several times
        _WARNED.add(msg)
        print(f"micromix: warning: {msg}", file=sys.stderr, flush=True)


def _import_file(path: Path, sha: str) -> Any:
    # One module object per file content: the same file is executed once per process.
    mod_name = f"micromix_user_{sha[:16]}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise MicromixError(f"{path} cannot be imported as a Python file.")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[mod_name]
        raise MicromixError(
            f"importing {path} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
        ) from None
    return module


def _file_module(spec: ModelSpec, warn: bool) -> Any:
    """The module of a .py file spec, executed once per file content; warns when the file
    changed since its sha256 was recorded."""
    path = Path(spec.location or "")
    if not path.is_file():
        raise MicromixError(f"model file {path} (recorded in the model spec) does not exist.")
    sha = file_sha256(path)
    if warn and spec.sha256 and sha != spec.sha256:
        _warn(f"{path} changed since it was recorded (sha256 {spec.sha256[:12]} -> {sha[:12]}).")
    return _import_file(path, sha)


def _dotted_module(spec: ModelSpec, warn: bool) -> Any:
    """The imported module of a dotted-name spec, checked against the recorded hash."""
    try:
        module = importlib.import_module(spec.location or "")
    except Exception as e:
        raise MicromixError(
            f"importing module {spec.location} failed ({type(e).__name__}: {e})."
        ) from None
    origin = getattr(module, "__file__", None)
    if warn and spec.sha256 and origin and Path(origin).is_file():
        sha = file_sha256(origin)
        if sha != spec.sha256:
            _warn(f"module {spec.location} ({origin}) changed since it was recorded.")
    return module


def build(spec: ModelSpec, *, warn: bool = True) -> nn.Module:
    """The model a spec describes (fresh weights); `spec_of` gives the spec back."""
    model, spec = spec.source.build(spec, warn)
    attach_spec(model, spec)
    return model


def _build_zoo(spec: ModelSpec, warn: bool) -> tuple[nn.Module, ModelSpec]:
    model = create(spec.name, **spec.args)
    cfg = model.micromix_config
    shape = (cfg["in_channels"], cfg["resolution"], cfg["resolution"])
    if spec.input_shape is not None and spec.input_shape != shape:
        if spec.input_shape[0] != shape[0]:
            raise MicromixError(
                f"input shape {spec.input_shape} has {spec.input_shape[0]} channels but the "
                f"model takes {shape[0]}; use --in-channels {spec.input_shape[0]}."
            )
        shape = spec.input_shape  # a zoo net is convolutional: any H x W works
    return model, replace(spec, args=_zoo_args(cfg), input_shape=shape)


def _build_code(
    module_of: Callable[[ModelSpec, bool], Any], spec: ModelSpec, warn: bool
) -> tuple[nn.Module, ModelSpec]:
    """A user's class or factory, found in the module `module_of` runs, called with args."""
    if not spec.named:  # only `authorize` or the command line make a file's spec buildable
        raise refuse_code(spec, "the model spec")
    factory = getattr(module_of(spec, warn), spec.name, None)
    if factory is None or not callable(factory):
        raise MicromixError(f"{spec.location} has no class or function named {spec.name}.")
    try:
        model = factory(**spec.args)
    except TypeError as e:
        raise MicromixError(f"{spec.name}(**{spec.args}) failed: {e}.") from None
    if not isinstance(model, nn.Module):
        raise MicromixError(f"{spec.ref} returned a {type(model).__name__}, not a torch.nn.Module.")
    return model, spec


def _build_model_file(spec: ModelSpec, warn: bool) -> tuple[nn.Module, ModelSpec]:
    if not spec.named:
        raise refuse_code(spec, "the model spec")
    path = Path(spec.location or "")
    if not path.is_file():
        raise MicromixError(f"model file {path} does not exist.")
    if spec.sha256 and file_sha256(path) != spec.sha256:
        # The file is the model (its weights too): a changed file is another model.
        raise MicromixError(
            f"{path} changed since it was named (sha256 {spec.sha256[:12]}); name it again."
        )
    return importers.load(spec.kind, path), spec


def _zoo_args(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k != "name"}


@dataclass(frozen=True)
class ModelSource:
    """One kind of model spec (a small registry keyed by the stored `kind`, timm style): its
    builder `build(spec, warn) -> (model, spec as built)` and what trust it needs."""

    build: Callable[[ModelSpec, bool], tuple[nn.Module, ModelSpec]]
    zoo: bool = False  # a registry name: builds as recorded, no code named by a file runs
    model_file: bool = False  # the location is a model file read as data (ONNX, TFLite)


# The kinds a spec (and so config.json and every checkpoint) may name, in the order messages
# list them. `file` and `module` run the user's code, so they build only when `named`.
SOURCES: dict[str, ModelSource] = {
    "zoo": ModelSource(_build_zoo, zoo=True),
    "file": ModelSource(partial(_build_code, _file_module)),
    "module": ModelSource(partial(_build_code, _dotted_module)),
    # onnx, tflite: importers.load reads the file by the spec's kind
    **dict.fromkeys(importers.IMPORTERS, ModelSource(_build_model_file, model_file=True)),
}


@dataclass(frozen=True)
class _Known:
    """What micromix learned about a model it did not write: the spec it was built from and
    the input shape it was last traced with."""

    spec: ModelSpec | None = None
    input_shape: tuple[int, int, int] | None = None


# The one place for that knowledge. It is kept beside the model (weakly: an entry goes with its
# model), never written onto it; zoo models carry their own `micromix_config`.
_KNOWN: weakref.WeakKeyDictionary[nn.Module, _Known] = weakref.WeakKeyDictionary()


def attach_spec(model: nn.Module, spec: ModelSpec | None) -> None:
    """Remember that `model` is described by `spec` (what `spec_of` then returns)."""
    _KNOWN[model] = replace(_KNOWN.get(model, _Known()), spec=spec)


def attached_spec(model: nn.Module) -> ModelSpec | None:
    """The spec `build` or `attach_spec` gave `model`, nothing derived."""
    return _KNOWN.get(model, _Known()).spec


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The model's spec: the one it was built from, or one derived for a zoo model or for a
    class defined in a file (keyword arguments unknown: {}), with the traced input shape."""
    known = _KNOWN.get(model, _Known())
    spec = known.spec
    cfg = getattr(model, "micromix_config", None)
    if spec is None:
        if isinstance(cfg, dict) and "name" in cfg:
            r = int(cfg["resolution"])
            spec = ModelSpec(
                "zoo", cfg["name"], _zoo_args(cfg), (int(cfg["in_channels"]), r, r), named=True
            )
        else:
            spec = _spec_from_class(model)
    if spec is None:
        return None
    if known.input_shape is not None:
        spec = replace(spec, input_shape=known.input_shape)
    return spec


def _spec_from_class(model: nn.Module) -> ModelSpec | None:
    cls = type(model)
    if "<locals>" in cls.__qualname__ or "." in cls.__qualname__:
        return None  # not reachable by name from its module
    module = sys.modules.get(cls.__module__)
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    if path is None or not Path(path).is_file():
        return None
    path = str(Path(path).resolve())
    # A package module (pkg.net) is found again by import; a script or a test file by its path.
    # The class is live in this process, so its code already ran: the spec is `named`.
    if module is not None and "." in cls.__module__ and _importable(cls.__module__):
        sha = file_sha256(path)
        return ModelSpec("module", cls.__qualname__, {}, None, cls.__module__, sha, named=True)
    return ModelSpec("file", cls.__qualname__, {}, None, path, file_sha256(path), named=True)


def input_shape_of(model: nn.Module) -> tuple[int, int, int, int] | None:
    """(1, C, H, W) the model was last traced with, or the one its spec or zoo config gives."""
    known = _KNOWN.get(model, _Known())
    shape = known.input_shape or (known.spec.input_shape if known.spec else None)
    if shape is not None:
        return (1, *shape)
    cfg = getattr(model, "micromix_config", None)
    if isinstance(cfg, dict) and "resolution" in cfg:
        r = int(cfg["resolution"])
        return (1, int(cfg["in_channels"]), r, r)
    return None


def record_input_shape(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Remember the traced shape of `model`, so no later call needs it again."""
    shape = parse_input_shape(tuple(int(d) for d in input_shape))
    try:
        _KNOWN[model] = replace(_KNOWN.get(model, _Known()), input_shape=shape)
    except TypeError:
        pass  # a model that cannot be weakly referenced simply keeps asking for the shape
