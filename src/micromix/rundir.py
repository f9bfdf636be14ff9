"""Run directories: one folder per command with its settings, versions, results and checkpoints.

Three promises, kept here so every command gets them the same way:

- **Identity.** `open_run_dir(path, command, settings, resume=, force=)` is the one way a
  command claims a folder. It takes the folder's lock, then checks before writing anything:
  a non-empty folder needs `--resume` or `--force`; `--resume` must find the same command
  (config.json's "command") and the same result-relevant settings (config.json's
  "settings"), else it is refused with a sentence naming the setting and both values. Only
  then is config.json written (a fresh start; a resume keeps it). `--force` starts over (the command's `owned` files are removed;
  a user's other files stay).
- **One writer.** An exclusive `fcntl.flock` on `<dir>/.micromix.lock` (holding the PID) for as
  long as the command runs; a second process is refused with a sentence naming the holder's
  PID. The kernel drops the lock when its process dies, so a `kill -9` never leaves a folder
  locked. Nested opens within one process share the lock.
- **Atomic writes.** `write_bytes` / `write_text` / `write_json` / `save_checkpoint` write a
  temporary file in the same folder, fsync it and rename it over the target; the temporary
  file is removed on any failure. OSErrors (full or read-only disk, permissions) become one
  sentence naming the path and the cause (`StorageError`).

Files are loaded without running code: `load_checkpoint` uses `torch.load(weights_only=True)`,
so checkpoints hold only tensors and plain Python values (numpy values are converted on save).
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import math
import os
import pickle
import platform
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, MicromixError, RunDirError, StorageError

LOCK_NAME = ".micromix.lock"
TMP_SUFFIX = ".micromix-tmp"  # temporary files of atomic writes; a killed writer may leave one
CONFIG = "config.json"
MAX_JSON_BYTES = 256 << 20  # settings, policies and reports are far smaller; /dev/zero is not


def versions() -> dict[str, str]:
    from . import __version__

    return {
        "micromix": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": str(os.cpu_count()),
    }


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
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
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


# ---- locks -------------------------------------------------------------------------------

_HELD: dict[str, DirLock] = {}  # lock-file path -> lock held by this process


class DirLock:
    """An exclusive flock on one lock file, written with the holder's PID.

    The file is removed on release (after the lock is checked to still be on the file that
    the path names, so a process that raced with the removal retries on the new file).
    """

    def __init__(self, lockfile: Path) -> None:
        self.lockfile = lockfile
        self.fd: int | None = None
        self.count = 0

    def acquire(self, what: str) -> DirLock:
        key = os.path.abspath(self.lockfile)
        held = _HELD.get(key)
        if held is not None:  # nested use in one process shares the lock
            held.count += 1
            return held
        for _ in range(100):
            try:
                fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise storage_error(e, self.lockfile) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                who = f"PID {pid}" if pid else "a process that is starting"
                raise RunDirError(
                    f"{what} is in use by another micromix process ({who}); wait for it to "
                    "finish or use another folder."
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lockfile))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: try the new one
        else:
            raise RunDirError(f"cannot lock {what}: its lock file keeps changing.")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            os.close(fd)
            raise storage_error(e, self.lockfile) from None
        self.fd, self.count = fd, 1
        _HELD[key] = self
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.count -= 1
        if self.count > 0:
            return
        _HELD.pop(os.path.abspath(self.lockfile), None)
        try:
            os.unlink(self.lockfile)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def lock_dir(path: str | os.PathLike, *, lockfile: str | os.PathLike | None = None) -> DirLock:
    """Take the exclusive lock of folder `path` (creating it); `lockfile` overrides where the
    lock file lives (export locks its output folder through a sibling file)."""
    p = Path(path)
    lf = Path(lockfile) if lockfile is not None else p / LOCK_NAME
    try:
        lf.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, lf.parent) from None
    return DirLock(lf).acquire(str(p))


def release_all() -> None:
    """Release every lock this process holds (the CLI calls this when a command ends)."""
    for lock in list(_HELD.values()):
        lock.count = 1
        lock.release()


# ---- run directories ---------------------------------------------------------------------


@dataclass
class RunDir:
    """An open run directory: its path, the config written, and the lock (see module doc).

    Use as a context manager or call `close()`; `run_dir / "x.json"` gives a path inside.
    """

    path: Path
    command: str
    config: dict[str, Any]
    resumed: bool
    _lock: DirLock | None = field(default=None, repr=False)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run_dir(
    path: str | os.PathLike,
    command: str,
    settings: dict[str, Any],
    *,
    resume: bool = False,
    force: bool = False,
    result_keys: Iterable[str] | None = None,
    owned: Iterable[str] = (),
) -> RunDir:
    """Claim `path` for `command`: lock it, check it, then write config.json.

    - a new or empty folder: fresh start;
    - a non-empty folder without `resume`/`force`: refused ("pass --resume ... or --force");
    - `resume`: config.json must name the same `command`, and every setting in `result_keys`
      (dotted keys into nested dicts, e.g. "train.lr"; None: every key of `settings`) must
      equal the recorded one, else refused naming the setting and both values;
    - `force`: the entries named in `owned` (files or folders the command writes) are removed
      and the command starts over; other files stay.

    Nothing is written before the checks pass (a refusal leaves the folder as it was), and a
    resume leaves config.json as it is (its settings are the ones checked). The returned
    RunDir holds the lock until `close()` (or the end of the process); `resumed` says
    whether it continues a run.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"run directory {p} exists and is not a folder.")
    created = not p.exists()
    lock = lock_dir(p)
    try:
        _remove_stale_temps(p)
        resumed = _check_claim(p, command, settings, resume, force, result_keys)
        if force:
            for name in owned:
                _remove(p / name)
        if resumed:  # same command and settings (checked): config.json already says so
            config = read_json(p / CONFIG, error=RunDirError)
        else:
            config = _config(p, command, settings)
            write_json(p / CONFIG, config)
    except BaseException:
        lock.release()
        if created:
            try:
                p.rmdir()
            except OSError:
                pass
        raise
    return RunDir(p, command, config, resumed, lock)


def check_run_dir(
    path: str | os.PathLike, command: str, *, resume: bool = False, force: bool = False
) -> None:
    """The checks of `open_run_dir` that need no settings, read-only: call it before slow
    loading so a folder that would be refused is refused at once."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"run directory {p} exists and is not a folder.")
    if p.is_dir():
        _check_claim(p, command, {}, resume, force, ())


def _check_claim(
    p: Path,
    command: str,
    settings: dict[str, Any],
    resume: bool,
    force: bool,
    result_keys: Iterable[str] | None,
) -> bool:
    """Raise RunDirError unless `command` may write into `p`; True when it resumes a run."""
    if not _entries(p) or force:
        return False
    if not resume:
        raise RunDirError(
            f"run directory {p} is not empty; pass --resume to continue it or --force to "
            "start over."
        )
    cfg_path = p / CONFIG
    if not cfg_path.is_file():
        raise RunDirError(
            f"{p} holds files but no {CONFIG}, so it is not a micromix run directory to "
            "resume; use another --run-dir, or --force to write into it."
        )
    old = read_json(cfg_path, error=RunDirError, expect=dict)
    old_cmd = old.get("command")
    if old_cmd != command:
        raise RunDirError(
            f"run directory {p} was made by `micromix {old_cmd}`, not `micromix {command}`; "
            "use another --run-dir, or --force to start over there."
        )
    before = _flatten(old.get("settings") or {})
    now = _flatten(_as_json(settings))
    keys = list(now) + [k for k in before if k not in now]
    if result_keys is not None:
        wanted = tuple(result_keys)
        keys = [k for k in keys if any(k == w or k.startswith(w + ".") for w in wanted)]
    for k in keys:
        a, b = before.get(k, _MISSING), now.get(k, _MISSING)
        if not _same(a, b):
            raise RunDirError(
                f"cannot resume {p} with other settings: {k} was {_show(a)}, now {_show(b)} "
                "(rerun with the recorded settings, or pass --force to start over)."
            )
    return True


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def _show(v: Any) -> str:
    return "not set" if v is _MISSING else json.dumps(v)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; empty dicts stay values."""
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _as_json(obj: Any) -> Any:
    """What `obj` reads back as after a JSON round trip (tuples become lists, ...)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _entries(p: Path) -> list[Path]:
    return [e for e in p.iterdir() if e.name != LOCK_NAME and not e.name.endswith(TMP_SUFFIX)]


def _remove_stale_temps(p: Path) -> None:
    """Temporary files of atomic writes whose process was killed (we hold the lock now)."""
    for e in p.iterdir():
        if not e.name.endswith(TMP_SUFFIX):
            continue
        if e.is_dir() and not e.is_symlink():  # a killed export's staging folder
            shutil.rmtree(e, ignore_errors=True)
        else:
            try:
                e.unlink()
            except OSError:
                pass


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError as e:
        raise storage_error(e, p, "remove") from None


def _config(p: Path, command: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "command": command,
        "argv": sys.argv,
        "settings": settings,
        "versions": versions(),
        # Floating-point sums depend on how work is split over threads: part of "same seed,
        # same result" (with the device type and the torch version in `versions`).
        "torch_threads": torch.get_num_threads(),
    }


def prepare_run_dir(path: str | os.PathLike, *, force: bool = False, resume: bool = False) -> Path:
    """Create `path`, refusing to reuse a non-empty folder unless resuming or forced.

    Older entry point without identity checks or lock; commands use `open_run_dir`.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"run directory {p} exists and is not a folder.")
    if p.exists() and _entries(p) and not (force or resume):
        raise RunDirError(
            f"run directory {p} is not empty; pass --resume to continue it or --force to start over."
        )
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, p) from None
    return p


def write_config(run_dir: str | os.PathLike, command: str, settings: dict[str, Any]) -> None:
    """Record every setting plus library versions (no checks: `open_run_dir` does those)."""
    write_json(Path(run_dir) / CONFIG, _config(Path(run_dir), command, settings))


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
