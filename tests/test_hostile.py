"""Hostile but fair input through the CLI: every case exits 2 with one sentence on stderr, no
traceback, no code run from a file, and the folders it could touch unchanged (hashed before
and after). The commands run in-process (fast); the lock and kill -9 cases need processes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import full_disk
from PIL import Image

from micromix.cli import main
from micromix.files import TMP_SUFFIX, write_json
from micromix.models import create
from micromix.pipeline import preset
from micromix.rundir import LOCK_NAME, open_run_dir
from micromix.train import save_model

MARKER = "pwned.txt"  # what the malicious pickles create when they run


class Evil:
    """Unpickling this calls open(marker, "w"): code execution if a loader allows it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _images(root: Path, classes: int, per_class: int, rng: np.random.Generator) -> None:
    for c in range(classes):
        d = root / f"c{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            a = (rng.integers(0, 60, (8, 8)) + 60 * c).astype(np.uint8)
            Image.fromarray(a, "L").save(d / f"{i}.png")


# Settings of the prepared run directories; a resume with these reaches the checkpoints.
TRAIN = ["--resolution", "8", "--classes", "3", "--epochs", "1", "--batch-size", "32"]
FINETUNE = ["--bits", "8", "--epochs", "1", "--batch-size", "32", "--max-batches", "1"]
SEARCH = ["--flash", "0.6x", "--episodes", "1", "--warmup", "1"]
SEARCH += ["--train-images", "64", "--eval-images", "32", "--no-progress"]
RUN = ["--resolution", "8", "--classes", "3", "--float-epochs", "1", "--ram", "0.8x", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """Tiny image folders, a float model, real train / finetune / search run directories, and
    copies of them whose checkpoints are malicious pickles."""
    base = tmp_path_factory.mktemp("hostile")
    out = tmp_path_factory.mktemp("outside")  # the marker lives outside the watched tree
    rng = np.random.default_rng(0)
    _images(base / "img", 3, 70, rng)  # 168 train (135 after the held-out), 42 test
    _images(base / "img4", 4, 6, rng)  # more classes than the 3-class model
    (base / "folder").mkdir()
    save_model(base / "float.pt", create("mobilenet_v1", width=0.25, resolution=8, num_classes=3))
    data = ["--dataset", str(base / "img")]
    w = {k: str(base / k) for k in ("img", "img4", "folder")}
    w["float_ckpt"] = str(base / "float.pt")
    w["base"], w["new"], w["marker"] = str(base), str(base / "new"), str(out / MARKER)
    for name, argv in (
        ("train", ["train", *TRAIN]),
        ("ft", ["finetune", "--checkpoint", w["float_ckpt"], *FINETUNE]),
        ("search", ["search", "--checkpoint", w["float_ckpt"], *SEARCH]),
    ):
        assert main([*argv, *data, "--run-dir", str(base / name)]) == 0, name
        w[name] = str(base / name)
    evil = Evil(out / MARKER)
    torch.save({"kind": "micromix-model", "x": evil}, base / "evil.pt")
    (base / "evil_raw.pt").write_bytes(pickle.dumps(evil, protocol=2))
    # protocol 5 (Python's default): torch.load also prints a UserWarning, which must not reach
    # the user as extra stderr lines
    (base / "evil_p5.pt").write_bytes(pickle.dumps(evil, protocol=5))
    torch.save([evil], base / "evil_list.pt")
    w.update({k: str(base / f"{k}.pt") for k in ("evil", "evil_raw", "evil_p5", "evil_list")})
    for name, victim in (
        ("train", "checkpoint.pt"),
        ("ft", "checkpoint.pt"),
        ("search", "checkpoint.pt"),
    ):
        shutil.copytree(base / name, base / f"{name}_evil")
        shutil.copy(base / "evil.pt", base / f"{name}_evil" / victim)
        w[f"{name}_evil"] = str(base / f"{name}_evil")
    shutil.copytree(base / "ft", base / "qat_evil")
    shutil.copy(base / "evil.pt", base / "qat_evil" / "qat.pt")
    w["qat_evil"] = str(base / "qat_evil")
    # A `micromix run` directory with the float stage done, as the CLI below would make it.
    cfg = replace(
        preset("quick"), dataset=w["img"], resolution=8, classes=3, float_epochs=1, ram="0.8x"
    )
    with open_run_dir(base / "run", "run", cfg.to_json()):
        write_json(base / "run" / "stages.json", {"float": {"test_acc": 50.0}})
        (base / "run" / "float").mkdir()
        save_model(
            base / "run" / "float" / "model.pt",
            create("mobilenet_v1", width=0.25, resolution=8, num_classes=3),
        )
    shutil.copytree(base / "run", base / "run_evil")
    shutil.copy(base / "evil.pt", base / "run_evil" / "float" / "model.pt")
    w["run"], w["run_evil"] = str(base / "run"), str(base / "run_evil")
    for name, stages in (("run_list", "[1]"), ("run_str", '{"float": "x"}')):
        shutil.copytree(base / "run", base / name)
        (base / name / "stages.json").write_text(stages)  # edited by hand
        w[name] = str(base / name)
    # Policy files no reader should choke on.
    (base / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (base / "hugeint.json").write_text('{"format": 1, "weights": {"a": ' + "9" * 5000 + "}}")
    (base / "bigbits.json").write_text('{"format": 1, "weights": {"a": 1e999}, "activations": {}}')
    w.update({k: str(base / f"{k}.json") for k in ("nested", "hugeint", "bigbits")})
    return w


D = ["--dataset", "{img}"]
CK = ["--checkpoint", "{float_ckpt}"]
# (id, argv, a phrase the sentence must hold). {name} are paths of the `world` fixture.
CASES = [
    # -- no code runs from a file: every --checkpoint and every file a --resume reads --------
    ("memory-ckpt", ["memory", "--checkpoint", "{evil}"], "does not load"),
    ("memory-ckpt-raw", ["memory", "--checkpoint", "{evil_raw}"], "does not load"),
    ("memory-ckpt-list", ["memory", "--checkpoint", "{evil_list}"], "does not load"),
    (
        "search-ckpt",
        ["search", "--checkpoint", "{evil}", *SEARCH, *D, "--run-dir", "{new}"],
        "does not load",
    ),
    (
        "finetune-ckpt",
        ["finetune", "--checkpoint", "{evil}", *FINETUNE, *D, "--run-dir", "{new}"],
        "does not load",
    ),
    (
        "run-ckpt",
        ["run", "--checkpoint", "{evil}", *D, *RUN, "--run-dir", "{new}"],
        "does not load",
    ),
    (
        "baseline-uniform-ckpt",
        ["baseline", "uniform", "--checkpoint", "{evil}", *D, "--run-dir", "{new}"],
        "does not load",
    ),
    (
        "baseline-fit8-ckpt",
        ["baseline", "fit8", "--checkpoint", "{evil}", "--flash", "0.5x", "--run-dir", "{new}"],
        "does not load",
    ),
    (
        "baseline-kmeans-ckpt",
        ["baseline", "kmeans", "--checkpoint", "{evil}", *D, "--run-dir", "{new}"],
        "does not load",
    ),
    ("export-qat", ["export", "--run-dir", "{qat_evil}", *D, "--no-check"], "does not load"),
    (
        "train-resume",
        ["train", *TRAIN, *D, "--run-dir", "{train_evil}", "--resume"],
        "does not load",
    ),
    (
        "finetune-resume",
        ["finetune", *CK, *FINETUNE, *D, "--run-dir", "{ft_evil}", "--resume"],
        "does not load",
    ),
    (
        "search-resume",
        ["search", *CK, *SEARCH, *D, "--run-dir", "{search_evil}", "--resume"],
        "does not load",
    ),
    ("run-resume-float", ["run", *D, *RUN, "--run-dir", "{run_evil}", "--resume"], "does not load"),
    # -- run directories: command, settings, emptiness ---------------------------------------
    (
        "search-on-train-dir",
        ["search", *CK, *SEARCH, *D, "--run-dir", "{train}", "--resume"],
        "`micromix train`",
    ),
    (
        "finetune-on-search-dir",
        ["finetune", *CK, *FINETUNE, *D, "--run-dir", "{search}", "--resume"],
        "`micromix search`",
    ),
    (
        "run-on-finetune-dir",
        ["run", *D, *RUN, "--run-dir", "{ft}", "--resume"],
        "`micromix finetune`",
    ),
    ("train-on-run-dir", ["train", *TRAIN, *D, "--run-dir", "{run}", "--resume"], "`micromix run`"),
    ("train-no-resume", ["train", *TRAIN, *D, "--run-dir", "{train}"], "--resume"),
    ("run-no-resume", ["run", *D, *RUN, "--run-dir", "{run}"], "pass --resume"),
    (
        "train-resume-lr",
        ["train", *TRAIN, "--lr", "0.2", *D, "--run-dir", "{train}", "--resume"],
        "train.lr was 0.1, now 0.2",
    ),
    (
        "train-resume-seed",
        ["train", *TRAIN, "--seed", "3", *D, "--run-dir", "{train}", "--resume"],
        "train.seed",
    ),
    (
        "finetune-resume-epochs",
        [
            "finetune",
            *CK,
            *FINETUNE[:2],
            "--epochs",
            "2",
            *FINETUNE[4:],
            *D,
            "--run-dir",
            "{ft}",
            "--resume",
        ],
        "train.epochs was 1, now 2",
    ),
    (
        "finetune-resume-bits",
        ["finetune", *CK, "--bits", "4", *FINETUNE[2:], *D, "--run-dir", "{ft}", "--resume"],
        "bits.",
    ),
    (
        "finetune-resume-batches",
        ["finetune", *CK, *FINETUNE[:-1], "2", *D, "--run-dir", "{ft}", "--resume"],
        "train.max_batches",
    ),
    (
        "search-resume-images",
        [
            "search",
            *CK,
            *SEARCH[:6],
            "--train-images",
            "128",
            *SEARCH[-3:],
            *D,
            "--run-dir",
            "{search}",
            "--resume",
        ],
        "evaluator.settings.train_images",
    ),
    (
        "search-resume-seed",
        ["search", *CK, *SEARCH, "--seed", "1", *D, "--run-dir", "{search}", "--resume"],
        "seed",
    ),
    (
        "run-resume-flash",
        ["run", *D, *RUN, "--flash", "0.40x", "--run-dir", "{run}", "--resume"],
        'flash was "0.48x", now "0.40x"',
    ),
    ("run-dir-is-file", ["train", *TRAIN, *D, "--run-dir", "{float_ckpt}"], "not a folder"),
    ("report-stages-list", ["report", "{run_list}"], "does not hold a JSON object"),
    ("report-stages-str", ["report", "{run_str}"], "damaged"),
    ("run-resume-stages-list", ["run", *D, *RUN, "--run-dir", "{run_list}", "--resume"], "damaged"),
    # -- settings checked before any stage ---------------------------------------------------
    ("flash-inf", ["memory", "--flash", "infx"], "--flash"),
    ("flash-1e400", ["memory", "--flash", "1e400x"], "--flash"),
    ("flash-nan", ["memory", "--flash", "nanx"], "--flash"),
    ("flash-negative", ["memory", "--flash=-0.5x"], "--flash"),
    ("ram-negative-bytes", ["memory", "--ram=-5kB"], "--ram"),
    ("run-flash-inf", ["run", *D, *RUN, "--flash", "infx", "--run-dir", "{new}"], "--flash"),
    (
        "run-export-images-0",
        ["run", *D, *RUN, "--export-images", "0", "--run-dir", "{new}"],
        "--export-images",
    ),
    (
        "run-eval-images-0",
        ["run", *D, *RUN, "--eval-images", "0", "--run-dir", "{new}"],
        "--eval-images",
    ),
    ("run-more-classes", ["run", "--dataset", "{img4}", *RUN, "--run-dir", "{new}"], "4 classes"),
    (
        "train-more-classes",
        ["train", *TRAIN, "--dataset", "{img4}", "--run-dir", "{new}"],
        "4 classes",
    ),
    (
        "finetune-more-classes",
        ["finetune", *CK, *FINETUNE, "--dataset", "{img4}", "--run-dir", "{new}"],
        "4 classes",
    ),
    (
        "search-more-classes",
        ["search", *CK, *SEARCH, "--dataset", "{img4}", "--run-dir", "{new}"],
        "4 classes",
    ),
    (
        "finetune-policy-folder",
        ["finetune", *CK, "--policy", "{folder}", *D, "--run-dir", "{new}"],
        "is a folder",
    ),
    ("memory-policy-folder", ["memory", "--policy", "{folder}"], "is a folder"),
    ("memory-policy-nested", ["memory", "--policy", "{nested}"], "nested too deeply"),
    ("memory-policy-hugeint", ["memory", "--policy", "{hugeint}"], "cannot read"),
    ("memory-policy-bigbits", ["memory", "--policy", "{bigbits}"], "policy"),
    ("memory-policy-device", ["memory", "--policy", "/dev/zero"], "not a regular file"),
    ("memory-ckpt-device", ["memory", "--checkpoint", "/dev/zero"], "not a regular file"),
    ("memory-ckpt-folder", ["memory", "--checkpoint", "{folder}"], "is a folder"),
    ("memory-flash-tiny-ratio", ["memory", "--flash", "1e-30x"], "less than one byte"),
    ("memory-width-huge", ["memory", "--width", "1e9"], "out of memory"),
    ("memory-bits-0", ["memory", "--bits", "0"], "--bits"),
    (
        "train-batch-0",
        ["train", *TRAIN, "--batch-size", "0", *D, "--run-dir", "{new}"],
        "--batch-size",
    ),
    ("train-lr-negative", ["train", *TRAIN, "--lr", "-1", *D, "--run-dir", "{new}"], "--lr"),
    ("train-lr-nan", ["train", *TRAIN, "--lr", "nan", *D, "--run-dir", "{new}"], "--lr"),
    ("train-lr-inf", ["train", *TRAIN, "--lr", "inf", *D, "--run-dir", "{new}"], "--lr"),
    ("train-epochs-0", ["train", *TRAIN, "--epochs", "0", *D, "--run-dir", "{new}"], "--epochs"),
    ("train-seed-negative", ["train", *TRAIN, "--seed", "-1", *D, "--run-dir", "{new}"], "--seed"),
    ("train-width-0", ["train", *TRAIN, "--width", "0", *D, "--run-dir", "{new}"], "--width"),
    (
        "train-fewer-than-batch",
        ["train", *TRAIN, "--batch-size", "1000", *D, "--run-dir", "{new}"],
        "no batch",
    ),
    (
        "finetune-fewer-than-batch",
        ["finetune", *CK, *FINETUNE[:5], "1000", *D, "--run-dir", "{new}"],
        "no batch",
    ),
    ("finetune-epochs-0", ["finetune", *CK, "--epochs", "0", *D, "--run-dir", "{new}"], "--epochs"),
    ("finetune-lr-nan", ["finetune", *CK, "--lr", "nan", *D, "--run-dir", "{new}"], "--lr"),
    (
        "search-episodes-0",
        ["search", *CK, "--flash", "0.6x", "--episodes", "0", *D, "--run-dir", "{new}"],
        "--episodes",
    ),
    (
        "search-warmup-negative",
        ["search", *CK, "--flash", "0.6x", "--warmup", "-1", *D, "--run-dir", "{new}"],
        "--warmup",
    ),
    (
        "search-train-images-small",
        [
            "search",
            *CK,
            *SEARCH[:6],
            "--train-images",
            "10",
            *SEARCH[-3:],
            *D,
            "--run-dir",
            "{new}",
        ],
        "fewer than one fine-tune batch",
    ),
    ("export-images-0", ["export", "--run-dir", "{ft}", "--images", "0", *D], "--images"),
    (
        "export-no-dataset",
        ["export", "--run-dir", "{ft}", "--dataset", "{new}", "--out", "{new}"],
        "--random-images",
    ),
    (
        "export-out-is-run-dir",
        ["export", "--run-dir", "{ft}", "--out", "{ft}", "--force", *D],
        "would replace the run directory",
    ),
    (
        "export-out-is-file",
        ["export", "--run-dir", "{ft}", "--out", "{float_ckpt}", *D],
        "not a folder",
    ),
    (
        "run-ckpt-folder",
        ["run", "--checkpoint", "{folder}", *D, *RUN, "--run-dir", "{new}"],
        "is a folder",
    ),
    (
        "run-ckpt-model-conflict",
        ["run", *CK, "--model", "mobilenet_v2", *D, *RUN, "--run-dir", "{new}"],
        "contradicts the checkpoint",
    ),
]


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case, argv, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_sentence_and_changes_nothing(world, capsys, case, argv, needle):
    base, marker = Path(world["base"]), Path(world["marker"])
    before = _tree(base)
    code, err = _run([a.format(**world) for a in argv], capsys)
    assert code == 2, (case, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("micromix: error:") and needle in err, err
    assert not marker.exists(), "a checkpoint ran code"
    assert _tree(base) == before, "a refused command changed files"


def test_the_table_is_broad():
    assert len(CASES) >= 40
    assert sum("does not load" in c[2] for c in CASES) >= 10


def test_resume_with_the_recorded_settings_is_accepted(world, capsys, tmp_path):
    """The refusals above are about the settings, not about resuming as such."""
    d = tmp_path / "train"
    shutil.copytree(world["train"], d)
    code, err = _run(
        ["train", *TRAIN, "--dataset", world["img"], "--run-dir", str(d), "--resume"], capsys
    )
    assert code == 0, err
    assert (d / "config.json").read_text() == Path(world["train"], "config.json").read_text()
    assert not (d / LOCK_NAME).exists()  # released when the command ended


def test_force_starts_over(world, capsys, tmp_path):
    d = tmp_path / "ft"
    shutil.copytree(world["ft"], d)
    (d / "notes.txt").write_text("mine")
    old = (d / "qat.pt").read_bytes()
    argv = ["finetune", "--checkpoint", world["float_ckpt"], "--bits", "4", *FINETUNE[2:]]
    code, err = _run([*argv, "--dataset", world["img"], "--run-dir", str(d), "--force"], capsys)
    assert code == 0, err
    assert (d / "notes.txt").read_text() == "mine"  # not ours: kept
    assert (d / "qat.pt").read_bytes() != old
    assert json.loads((d / "config.json").read_text())["settings"]["policy"] == "uniform W4/A4"


# ---- disks: full, read-only ------------------------------------------------------------------


def _raise_on(monkeypatch, err: int, under: Path) -> None:
    """Writes below `under` fail with errno `err` (as root, chmod cannot make a folder
    read-only, so the failure is simulated at os.open)."""
    real = os.open

    def fake(path, flags, *a, **k):
        if str(path).startswith(str(under)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(err, os.strerror(err), str(path))
        return real(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", fake)


@pytest.mark.parametrize(
    "err, cause", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")]
)
def test_disk_errors_are_one_sentence_and_leave_nothing(
    world, capsys, monkeypatch, tmp_path, err, cause
):
    d = tmp_path / "run"
    d.mkdir()
    _raise_on(monkeypatch, err, d)
    code, out = _run(["train", *TRAIN, "--dataset", world["img"], "--run-dir", str(d)], capsys)
    assert code == 2 and len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
    assert str(d) in out and cause in out, out
    assert list(d.iterdir()) == []


def test_read_only_folder(world, capsys, monkeypatch, tmp_path):
    """A chmod'ed folder where that blocks writes; as root (where it does not) EACCES is
    simulated the same way."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        if os.geteuid() == 0:
            _raise_on(monkeypatch, errno.EACCES, d)
        code, out = _run(["train", *TRAIN, "--dataset", world["img"], "--run-dir", str(d)], capsys)
    finally:
        d.chmod(0o755)
    assert code == 2 and "permission denied" in out and str(d) in out, out
    assert len(out.strip().splitlines()) == 1 and list(d.iterdir()) == []


def test_full_disk_during_a_write_removes_the_temporary_file(world, capsys, monkeypatch, tmp_path):
    d = tmp_path / "run"

    full_disk(monkeypatch)
    code, out = _run(["train", *TRAIN, "--dataset", world["img"], "--run-dir", str(d)], capsys)
    assert (
        code == 2 and "config.json: the disk is full" in out and len(out.strip().splitlines()) == 1
    )
    assert not d.exists()  # made by this command, removed when it was refused
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(TMP_SUFFIX)]


def test_export_on_a_full_disk_keeps_the_old_export(world, capsys, monkeypatch, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "micromix_weights.c").write_text("/* the old model */\n")
    before = _tree(out)

    full_disk(monkeypatch)
    argv = ["export", "--run-dir", world["ft"], "--out", str(out), "--force", "--no-check"]
    code, err = _run([*argv, "--random-images", "--images", "4"], capsys)
    assert code == 2 and "the disk is full" in err and len(err.strip().splitlines()) == 1, err
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folder left


# ---- one writer per run directory ----------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from micromix.rundir import lock_dir
    lock_dir(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_second_writer_is_refused_naming_the_pid_and_kill_9_frees_the_lock(world, capsys, tmp_path):
    d = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(d)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        code, err = _run(["train", *TRAIN, "--dataset", world["img"], "--run-dir", str(d)], capsys)
        assert code == 2 and f"PID {proc.pid}" in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in d.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The kernel dropped the lock with the process; its stale file does not block.
    t0 = time.time()
    code, err = _run(["train", *TRAIN, "--dataset", world["img"], "--run-dir", str(d)], capsys)
    assert code == 0, err
    assert time.time() - t0 < 60 and not (d / LOCK_NAME).exists()


# ---- generated text: C comments and printed shell commands ---------------------------------

INJECT = "evil*/ int pwned(void) { return 1; } /*"


class NamedNet(torch.nn.Module):
    """A user model whose layer name tries to close a C comment and define a function."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module(INJECT, torch.nn.Conv2d(1, 4, 3, padding=1))
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(getattr(self, INJECT)(x)).flatten(1))


def test_layer_names_cannot_inject_c_code(tmp_path):
    import re

    from conftest import require_tool

    from micromix.export import export_c
    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.policy import Policy

    require_tool("gcc", "make", "nm", "size")
    g = trace(NamedNet().eval(), (1, 1, 4, 4))
    assert INJECT in [o.name for o in g.ops]
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol), g, pol)
    images = np.random.default_rng(0).integers(0, 256, (4, 1, 4, 4), dtype=np.uint8)
    out = export_c(im, tmp_path / "c", test_images=images)  # builds, runs, bit-exact
    for f in out.glob("*.[ch]"):
        code = re.sub(r"/\*.*?\*/", "", f.read_text(), flags=re.S)  # what the compiler sees
        assert not re.search(r"\bpwned\b", code), f.name  # only inside sanitized identifiers
    syms = subprocess.run(["nm", *map(str, out.rglob("*.o"))], capture_output=True, text=True)
    assert syms.stdout and not re.search(r"\bpwned\b", syms.stdout)


def test_report_quotes_the_printed_shell_command(tmp_path):
    import shlex

    from micromix.report import render

    d = tmp_path / "runs $(touch x) 'q'"
    with open_run_dir(d, "run", {}):
        write_json(d / "stages.json", {"export": {"target": "host", "seconds": 1.0}})
        write_json(d / "c" / "export.json", {"target": "host"})
        render(d)
    line = next(x for x in (d / "report.md").read_text().splitlines() if "make -C" in x)
    cmd = line.split("build with `", 1)[1].rsplit("`", 1)[0]
    assert shlex.split(cmd) == ["make", "-C", str(d / "c")]


def test_run_records_the_model_of_its_checkpoint(tmp_path):
    from micromix.pipeline import resolve_checkpoint

    path = tmp_path / "v2.pt"
    save_model(path, create("mobilenet_v2", width=0.35, resolution=16, num_classes=5))
    cfg = resolve_checkpoint(replace(preset("quick"), checkpoint=str(path)))
    assert (cfg.model, cfg.width, cfg.resolution, cfg.classes) == ("mobilenet_v2", 0.35, 16, 5)


def test_a_protocol5_pickle_is_one_sentence_without_torch_warnings(world, capsys):
    """torch.load warns about pickle protocols above 2 on stderr; the user gets one sentence."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["memory", "--checkpoint", world["evil_p5"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [str(w.message) for w in caught] == []
    assert len(err) == 1 and "without running code" in err[0]
    assert not Path(world["marker"]).exists()
