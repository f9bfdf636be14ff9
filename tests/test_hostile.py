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
    (  # every strategy's search fine-tunes (rule's re-score too): refused before float training
        "run-rule-search-train-images-small",
        ["run", *D, *RUN, "--strategy", "rule", "--search-train-images", "8", "--run-dir", "{new}"],
        "fewer than one fine-tune batch",
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


# ---- code named inside a file: a spec is data --------------------------------------------
# A weights_only-loadable file can still name code: a model spec {"kind": "module", ...} names
# any importable callable with arguments from the file (here builtins.open(marker, "w")), and
# a received run directory's spec can point at a .py inside it that writes the marker when
# imported. No command may run either; the data-only commands work without them.

EVIL_PY = "open({marker!r}, 'w').write('imported')\nimport torch.nn as nn\nNet = nn.Linear\n"


def _callable_spec(marker: Path) -> dict:
    args = {"file": str(marker), "mode": "w"}
    return {"kind": "module", "name": "open", "location": "builtins", "args": args}


def _file_spec(py: Path) -> dict:
    return {"kind": "file", "name": "Net", "location": str(py), "input_shape": [1, 8, 8]}


@pytest.fixture(scope="module")
def code_world(world) -> dict[str, str]:
    """Checkpoints whose spec names a module callable, and received run directories whose
    spec names a .py inside them; copies of the real ones of `world` otherwise."""
    base, marker = Path(world["base"]) / "code", Path(world["marker"])
    base.mkdir()
    w = dict(world)
    state = torch.load(world["float_ckpt"], weights_only=True)
    for name, spec in (("spec_call", _callable_spec(marker)), ("spec_py", None)):
        d = base / name
        d.mkdir()
        (d / "evil.py").write_text(EVIL_PY.format(marker=str(marker)))
        spec = spec or _file_spec(d / "evil.py")
        torch.save({**state, "model_spec": spec, "graph": None}, d / "model.pt")
        w[f"{name}_ck"] = str(d / "model.pt")
        # a received run directory of each command, holding only the spec
        for cmd in ("run", "train", "search"):
            rd = d / f"recv_{cmd}"
            rd.mkdir()
            shutil.copy(d / "evil.py", rd / "evil.py")
            local = spec if spec["kind"] == "module" else _file_spec(rd / "evil.py")
            ref = f"{local['location']}:{local['name']}"
            settings = {"model_spec": local, "model": ref, "dataset": "fashion_mnist"}
            write_json(rd / "config.json", {"command": cmd, "settings": settings})
            w[f"{name}_{cmd}"] = str(rd)
        # a real search directory (graph.json included) whose recorded spec names the code
        rd = d / "recv_search_real"
        shutil.copytree(world["search"], rd)
        cfg = json.loads((rd / "config.json").read_text())
        cfg["settings"]["model_spec"] = local
        write_json(rd / "config.json", cfg)
        w[f"{name}_search_real"] = str(rd)
        # ... with a policy (report and memory then need the graph)
        rd = d / "recv_policy"
        shutil.copytree(d / "recv_run", rd)
        shutil.copy(Path(world["ft"]) / "policy.json", rd / "policy.json")
        w[f"{name}_policy"] = str(rd)
        # a fine-tune directory whose QAT checkpoint names the code; without its integer data
        # the export would have to build the model
        qd = d / "recv_qat"
        shutil.copytree(world["ft"], qd)
        (qd / "graph.json").unlink()
        ck = torch.load(qd / "qat.pt", weights_only=True)
        ck["model_spec"] = spec if spec["kind"] == "module" else _file_spec(qd / "evil.py")
        shutil.copy(d / "evil.py", qd / "evil.py")
        torch.save({k: v for k, v in ck.items() if k != "integer"}, qd / "qat.pt")
        w[f"{name}_qat"] = str(qd)
        # ... and with it: works from the data alone
        qd2 = d / "recv_qat_data"
        shutil.copytree(qd, qd2)
        torch.save(ck, qd2 / "qat.pt")
        w[f"{name}_qat_data"] = str(qd2)
    return w


NEW = ["--run-dir", "{new}"]


def _at(kind: str, name: str) -> str:
    """The `code_world` placeholder of the file or folder `name` of `kind`."""
    return "{" + f"{kind}_{name}" + "}"


# (id, argv, exit code, a phrase of the sentence when refused)
CODE_CASES = []
for _k in ("spec_call", "spec_py"):
    _ck = ["--checkpoint", _at(_k, "ck")]
    CODE_CASES += [
        (f"{_k}-memory-ckpt", ["memory", *_ck], 2, "names code to run"),
        (f"{_k}-search-ckpt", ["search", *_ck, *SEARCH, *D, *NEW], 2, "names code to run"),
        (f"{_k}-finetune-ckpt", ["finetune", *_ck, *FINETUNE, *D, *NEW], 2, "names code to run"),
        (f"{_k}-train-ckpt", ["train", *_ck, *TRAIN, *D, *NEW], 2, "names code to run"),
        (f"{_k}-run-ckpt", ["run", *_ck, *D, *RUN, *NEW], 2, "names code to run"),
        (f"{_k}-baseline-ckpt", ["baseline", "uniform", *_ck, *D, *NEW], 2, "names code"),
        (f"{_k}-fit8-ckpt", ["baseline", "fit8", *_ck, "--flash", "0.5x", *NEW], 2, "names code"),
        (f"{_k}-report-cfg", ["report", _at(_k, "run")], 0, ""),
        (f"{_k}-report-policy", ["report", _at(_k, "policy")], 2, "names code to run"),
        (f"{_k}-memory-run-dir", ["memory", "--run-dir", _at(_k, "policy")], 2, "names code"),
        (f"{_k}-memory-search-dir", ["memory", "--run-dir", _at(_k, "search")], 2, "names code"),
        (f"{_k}-export-cfg", ["export", "--run-dir", _at(_k, "run")], 2, "has no qat.pt"),
        (f"{_k}-export-qat", ["export", "--run-dir", _at(_k, "qat"), *D], 2, "names code"),
        (f"{_k}-export-qat-data", ["export", "--run-dir", _at(_k, "qat_data"), *D], 0, ""),
        (
            f"{_k}-train-resume",
            ["train", *TRAIN, *D, "--resume", "--run-dir", _at(_k, "train")],
            2,
            "names code to run",
        ),  # fmt: skip
        (
            f"{_k}-run-resume",
            ["run", *D, *RUN, "--resume", "--run-dir", _at(_k, "run")],
            2,
            "records --model",
        ),  # fmt: skip
        (
            f"{_k}-search-resume",
            ["search", *CK, *SEARCH, *D, "--resume", "--run-dir", _at(_k, "search_real")],
            2,
            "model_spec",
        ),  # fmt: skip
        (f"{_k}-memory-search-real", ["memory", "--run-dir", _at(_k, "search_real")], 0, ""),
    ]


@pytest.mark.parametrize("case, argv, code, needle", CODE_CASES, ids=[c[0] for c in CODE_CASES])
def test_no_code_named_inside_a_file_runs(code_world, capsys, case, argv, code, needle):
    base, marker = Path(code_world["base"]), Path(code_world["marker"])
    before = _tree(base)
    got, err = _run([a.format(**code_world) for a in argv], capsys)
    assert not marker.exists(), f"{case}: code named inside a file ran"
    assert got == code, (case, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith("micromix: error:") and needle in err, err
        assert _tree(base) == before, "a refused command changed files"


def test_a_refusal_says_which_code_and_how_to_run_it(code_world, capsys):
    code, err = _run(["memory", "--checkpoint", code_world["spec_call_ck"]], capsys)
    assert code == 2 and "module builtins:open" in err and "--model builtins:open" in err


def test_named_code_matching_the_file_is_accepted(code_world, capsys, tmp_path):
    """The user names the same code on the command line: the spec's code then runs (here a
    .py whose import writes the marker, so the marker shows that the authority came from the
    command line, not the file)."""
    marker = Path(code_world["marker"])
    py = Path(code_world["spec_py_ck"]).parent / "evil.py"
    argv = ["memory", "--checkpoint", code_world["spec_py_ck"], "--model", f"{py}:Net"]
    _run([*argv, "--input-shape", "1x8x8"], capsys)  # nn.Linear() then fails: no matter
    try:
        assert marker.exists(), "the named code did not run"
    finally:
        marker.unlink(missing_ok=True)


def test_a_link_out_of_a_received_run_directory_is_not_followed(world, capsys, tmp_path):
    d = tmp_path / "recv"
    shutil.copytree(world["ft"], d)
    secret = tmp_path / "secret.json"
    secret.write_text('{"format": 1}')
    (d / "policy.json").unlink()
    (d / "policy.json").symlink_to(secret)
    code, err = _run(["memory", "--run-dir", str(d)], capsys)
    assert code == 2 and "points outside the run directory" in err


def test_damaged_integer_data_is_one_sentence(world, capsys, tmp_path):
    """The stored graph and quantization parameters are read as hostile data too."""
    d = tmp_path / "recv"
    shutil.copytree(world["ft"], d)

    def op(ck: dict, i: int) -> dict:
        return ck["integer"]["graph"]["ops"][i]

    def layer(ck: dict) -> dict:
        return next(iter(ck["integer"]["quant_params"]["layers"].values()))

    for damage in (
        lambda ck: op(ck, 0).update(kind="system"),
        lambda ck: op(ck, -1).update(out_shape=[999, 1, 1]),
        lambda ck: layer(ck).update(w_int=layer(ck)["w_int"].float()),
        lambda ck: layer(ck).update(w_scale=layer(ck)["w_scale"][:1]),
    ):
        ck = torch.load(Path(world["ft"]) / "qat.pt", weights_only=True)
        damage(ck)
        torch.save(ck, d / "qat.pt")
        code, err = _run(["export", "--run-dir", str(d), "--no-check", "--random-images"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "damaged" in err, err
