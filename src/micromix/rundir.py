"""Run directories: one folder per command with its settings, versions, results and checkpoints.

Two promises, kept here so every command gets them the same way (the third, atomic writes and
loading without running code, is `files.py`'s):

- **Identity.** `open_run_dir(path, command, settings, resume=, force=)` is the one way a
  command claims a folder. It takes the folder's lock, then checks before writing anything:
  a non-empty folder needs `--resume` or `--force`; `--resume` must find the same command
  (config.json's "command") and the same result-relevant settings (config.json's
  "settings"), else it is refused with a sentence naming the setting and both values. Only
  then is config.json written (a fresh start; a resume keeps it). `--force` starts over (the
  command's `owned` files are set aside until it ends, put back if it fails; a user's other
  files stay).
- **One writer.** An exclusive `fcntl.flock` on `<dir>/.micromix.lock` (holding the PID) for as
  long as the command runs; a second process is refused with a sentence naming the holder's
  PID. The kernel drops the lock when its process dies, so a `kill -9` never leaves a folder
  locked. Nested opens within one process share the lock.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import RunDirError
from .files import TMP_SUFFIX, json_default, read_json, storage_error, write_json

LOCK_NAME = ".micromix.lock"
CONFIG = "config.json"


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
    _previous: Previous | None = field(default=None, repr=False)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def close(self, failed: bool = False) -> None:
        """Release the folder. After --force, `failed` puts the earlier results back (the
        command wrote nothing whole); otherwise they are dropped now."""
        if self._previous is not None:
            self._previous.settle(failed)
            self._previous = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)


PREVIOUS = f".previous{TMP_SUFFIX}"
_PREVIOUS: dict[str, Previous] = {}  # run directory -> the results a --force set aside


@dataclass
class Previous:
    """What a --force start set aside (renamed, so it needs no free space): kept until the
    command ends, then dropped (success) or put back (failure). A `kill -9` leaves it as a
    temporary folder that the next `open_run_dir` removes."""

    folder: Path
    names: tuple[str, ...]  # what the command writes: removed before the old ones go back

    @classmethod
    def set_aside(cls, p: Path, names: Iterable[str]) -> Previous:
        folder = p / PREVIOUS
        names = tuple(dict.fromkeys((*names, CONFIG)))
        try:
            folder.mkdir()
            for name in names:
                if (p / name).exists() or (p / name).is_symlink():
                    os.rename(p / name, folder / name)
        except OSError as e:
            raise storage_error(e, folder, "write") from None
        prev = cls(folder, names)
        _PREVIOUS[str(p.resolve())] = prev
        return prev

    def settle(self, failed: bool) -> None:
        _PREVIOUS.pop(str(self.folder.parent.resolve()), None)
        if failed:
            for name in self.names:
                _remove(self.folder.parent / name)
            for e in self.folder.iterdir():
                os.rename(e, self.folder.parent / e.name)
        shutil.rmtree(self.folder, ignore_errors=True)


def settle_all(failed: bool) -> None:
    """End every --force of this process: drop the earlier results, or put them back when
    the command `failed` (the CLI calls this when a command ends)."""
    for prev in list(_PREVIOUS.values()):
        prev.settle(failed)


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
    - `force`: the entries named in `owned` (files or folders the command writes) and
      config.json are set aside and the command starts over; other files stay. They are
      dropped when the command ends well (`close()`, the context manager, `settle_all`) and put
      back when it fails, so a failed --force (a full disk) keeps the earlier results.

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
    previous = None
    try:
        _remove_stale_temps(p)
        resumed = _check_claim(p, command, settings, resume, force, result_keys)
        previous = Previous.set_aside(p, owned) if force and not created else None
        if resumed:  # same command and settings (checked): config.json already says so
            config = read_json(p / CONFIG, error=RunDirError)
        else:
            config = _config(p, command, settings)
            write_json(p / CONFIG, config)
    except BaseException:
        if previous is not None:
            previous.settle(failed=True)
        lock.release()
        if created:
            try:
                p.rmdir()
            except OSError:
                pass
        raise
    return RunDir(p, command, config, resumed, lock, previous)


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
    return json.loads(json.dumps(obj, default=json_default))


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
