"""Run directories: one folder per command with its settings, versions, results and checkpoints."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, MicromixError


def versions() -> dict[str, str]:
    import numpy

    from . import __version__

    return {
        "micromix": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": str(os.cpu_count()),
    }


def prepare_run_dir(path: str | os.PathLike, *, force: bool = False, resume: bool = False) -> Path:
    """Create `path`, refusing to reuse a non-empty folder unless resuming or forced.

    `--force` wipes nothing: it only allows writing over files of the same names, so a user's
    other files in the folder stay untouched.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise MicromixError(f"run directory {p} exists and is not a folder.")
    if p.exists() and any(p.iterdir()) and not (force or resume):
        raise MicromixError(
            f"run directory {p} is not empty; pass --resume to continue it or --force to overwrite it."
        )
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically so a crash never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MicromixError(f"{path} does not exist.") from None
    except json.JSONDecodeError as e:
        raise MicromixError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None


def write_config(run_dir: str | os.PathLike, command: str, settings: dict[str, Any]) -> None:
    """Record every setting plus library versions; on resume the previous config is kept aside."""
    run_dir = Path(run_dir)
    cfg = {"command": command, "argv": sys.argv, "settings": settings, "versions": versions()}
    target = run_dir / "config.json"
    if target.exists():
        old = read_json(target)
        if old.get("command") == command:
            cfg["previous"] = {k: old.get(k) for k in ("settings", "versions")}
    write_json(target, cfg)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save through a temporary file and rename, so `kill -9` never corrupts a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(e).__name__})."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a micromix state dictionary.")
    return state


def _json_default(o: Any) -> Any:
    if hasattr(o, "to_json"):
        return o.to_json()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")
