"""Files: atomic writes, and loading that never runs code.

- **Atomic writes.** `write_bytes` / `write_text` / `write_json` / `save_checkpoint` write a
  temporary file in the same folder, fsync it and rename it over the target; the temporary
  file is removed on any failure, and a writer killed mid-write leaves only a `TMP_SUFFIX` file
  that the next `rundir.open_run_dir` of that folder removes. OSErrors (full or read-only disk,
  permissions) become one sentence naming the path and the cause (`StorageError`).
- **Loading without running code.** `load_checkpoint` uses `torch.load(weights_only=True)`, so
  checkpoints hold only tensors and plain Python values (numpy values are converted on save);
  `read_json` turns every way a JSON file can be wrong into one sentence of a chosen error type.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, MicromixError, StorageError

TMP_SUFFIX = ".micromix-tmp"  # temporary files of atomic writes; a killed writer may leave one
MAX_JSON_BYTES = 256 << 20  # settings, policies and reports are far smaller; /dev/zero is not


# ---- errors of the file system, as one sentence ------------------------------------------

_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "it does not exist",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of its path is not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EMFILE: "too many open files",
    errno.EIO: "an input/output error of the device",
}


def os_error_message(
    e: OSError, path: str | os.PathLike | None = None, action: str = "write"
) -> str:
    """`cannot write runs/x/qat.pt: the disk is full.` for any OSError."""
    where = path if path is not None else e.filename
    cause = _CAUSES.get(e.errno or 0) or (e.strerror or type(e).__name__).rstrip(".").lower()
    return f"cannot {action} {where if where is not None else 'a file'}: {cause}."


def storage_error(e: OSError, path: str | os.PathLike | None = None, action: str = "write"):
    return StorageError(os_error_message(e, path, action))


# ---- atomic writes -----------------------------------------------------------------------


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically: temp file in the same folder, fsync, rename.

    Readers see the old file or the new one, never a mix; on any failure the temporary file
    is removed and the old file stays. OSErrors become a StorageError naming `path`.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.fchmod(fd, default_mode())  # mkstemp's 0600 would make every result private
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise storage_error(e, path) from None
    finally:
        _discard(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` for writers that need a file name (matplotlib's
    savefig); renamed over `path` when the block ends without error, removed otherwise."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.fchmod(fd, default_mode())
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise storage_error(e, path) from None
    finally:
        _discard(tmp)


def _discard(tmp: str | None) -> None:
    """Remove a temporary file left by a failed write; a second failure must not mask the first."""
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def default_mode(folder: bool = False) -> int:
    """The permissions a plain open()/mkdir() would give under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically so a crash never leaves a half-written file behind."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=json_default)
    write_text(path, text + "\n")


def _fsync_dir(d: Path) -> None:
    """Make the rename itself durable (some file systems cannot open folders: ignore)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(
    path: str | os.PathLike,
    *,
    what: str | None = None,
    error: type[MicromixError] = MicromixError,
    expect: type | None = None,
) -> Any:
    """Parse a JSON file; any problem (missing, a folder, bad JSON, absurd nesting or numbers,
    not of type `expect`, e.g. dict) is one sentence of type `error`. `what` names the file in
    the message ("policy file")."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would block
            raise error(f"{name} is not a regular file.")
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise error(
                f"{name} is larger than {MAX_JSON_BYTES >> 20} MiB, too large for a micromix file."
            )
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise error(f"{name} does not exist.") from None
    except IsADirectoryError:
        raise error(f"{name} is a folder, not a JSON file.") from None
    except UnicodeDecodeError:
        raise error(f"{name} is not valid JSON (not UTF-8 text).") from None
    except OSError as e:
        raise error(os_error_message(e, path, "read")) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{name} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    except RecursionError:
        raise error(f"{name} is nested too deeply to be a micromix file.") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise error(
            f"{name} holds a value micromix cannot read ({str(e).split(';')[0]})."
        ) from None
    if expect is not None and not isinstance(obj, expect):
        kind = {dict: "a JSON object", list: "a JSON list"}.get(expect, expect.__name__)
        raise error(f"{name} is damaged: it does not hold {kind}.")
    return obj


# ---- checkpoints -------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save into memory, then an atomic write, so `kill -9` never corrupts a checkpoint
    and a full disk is a clear OSError (torch's own writer reports only "enforce fail").

    numpy arrays become tensors and numpy scalars Python numbers, so that `load_checkpoint`
    can read the file with `weights_only=True`.
    """
    buf = io.BytesIO()
    torch.save(plain_state(state), buf)
    write_bytes(path, buf.getvalue())


def plain_state(obj: Any) -> Any:
    """`obj` with numpy values replaced by tensors / Python numbers (weights_only-loadable)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, plain_state(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [plain_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain_state(v) for v in obj)
    return obj


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint without running code from it (`weights_only=True`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file.")
    if not path.is_file():  # a FIFO or device would block or never end
        raise CheckpointError(f"checkpoint {path} is not a regular file.")
    try:
        with warnings.catch_warnings():
            # torch warns about legacy pickle protocols on stderr; the refusal below is the
            # one sentence the user gets
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found:  # the refusal that matters: a class or function a pickle would call
            raise CheckpointError(
                f"checkpoint {path} holds a pickled {found.group(1)}, not only tensors and plain "
                "values, and micromix does not load those (loading them could run code)."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a checkpoint micromix can load without "
            "running code from it."
        ) from None
    except OSError as e:
        raise CheckpointError(os_error_message(e, path, "read")) from None
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(e).__name__})."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a micromix state dictionary.")
    return state


def json_default(o: Any) -> Any:
    """JSON for the values micromix writes: configs (`to_json`), numpy scalars, sets, paths."""
    if hasattr(o, "to_json"):
        return o.to_json()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")
