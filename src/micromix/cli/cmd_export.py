"""`micromix export`: the fine-tuned model of a run directory as a checked C99 project."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DatasetNotFoundError, MicromixError
from ..policy import Policy
from .common import add_data_args, add_schedule_args, positive_int

if TYPE_CHECKING:
    from ..mcu import Target
    from ..schedule import Scheduling

NAME = "export"
HELP = "integer-only C code of a fine-tuned model, built and checked bit for bit"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        required=True,
        help="run directory of `micromix finetune` (qat.pt) or `micromix run` (finetune/qat.pt)",
    )
    p.add_argument("--out", help="output folder (default: RUN_DIR/c)")
    p.add_argument(
        "--target",
        default=None,
        help="host: gcc self-test; cortex-m4: also a test-only bare-metal image under qemu; an "
        "MCU target (stm32h743, ... or my_board.toml): also the fit verdict against its memory "
        "map and the chip-sized image under qemu (exit 2 when it does not fit); default: the "
        "target of the export being replaced, else host",
    )
    p.add_argument(
        "--chip-images",
        type=positive_int,
        default=4,
        help="test images run on the chip-sized (or test-only Cortex-M4) image (default 4)",
    )
    p.add_argument(
        "--images",
        type=positive_int,
        default=1000,
        help="test images for the self-test (default 1000)",
    )
    add_data_args(p, default=None)  # default: the dataset the run directory recorded
    p.add_argument(
        "--random-images",
        action="store_true",
        help="self-test on random images instead of the dataset's test images",
    )
    add_schedule_args(p, recorded=True)
    p.add_argument("--no-check", action="store_true", help="write the files without building")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty output folder (only once the new export is complete)",
    )


def _test_images(
    args: argparse.Namespace, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The first N test images of the dataset (only those are read), or random ones with
    --random-images (never as a silent fallback: a missing dataset is an error)."""
    from ..data import load_test_images

    if args.random_images:
        rng = np.random.default_rng(0)
        imgs = rng.integers(0, 256, (args.images, *shape), dtype=np.uint8)
        return imgs, None, f"{args.images} random images (--random-images)"
    try:
        test = load_test_images(args.dataset, args.images, shape, data_dir=args.data_dir)
    except DatasetNotFoundError as e:
        raise DatasetNotFoundError(
            f"{str(e).rstrip('.')}; the self-test needs test images (or pass --random-images)."
        ) from None
    n = len(test)
    return test.images.numpy(), test.labels.numpy(), f"the first {n} {args.dataset} test images"


def _check_out(out: Path, run_dir: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MicromixError(f"{out} exists and is not a folder; choose another --out.")
    o, r = out.resolve(), run_dir.resolve()
    if o == r or o in r.parents:
        raise MicromixError(
            f"--out {out} would replace the run directory {run_dir}; choose a folder inside or "
            "beside it."
        )
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MicromixError(f"{out} is not empty; pass --force to replace the export.")


def kept_target(out: Path) -> str | Target:
    """The target the export in `out` was made for (its export.json), so `export --force`
    without --target rebuilds it for the same chip; host when there is none to replace."""
    from ..files import read_json
    from ..mcu import target_from_json

    summary = out / "export.json"
    if not summary.is_file():
        return "host"
    info = read_json(summary, expect=dict)
    if isinstance(info.get("chip"), dict):  # a user's target file may be gone: its map is here
        return target_from_json(info["chip"])
    return info.get("target") if info.get("target") in ("host", "cortex-m4") else "host"


def _recorded_dataset(run_dir: Path, random_images: bool) -> str:
    """The --dataset of the command that made the run directory (fashion_mnist if none); a
    recorded path is not followed (the user gives --dataset again)."""
    from ..stored import names_code_or_path, recorded_setting, refuse_recorded

    name = recorded_setting(run_dir, "dataset") or "fashion_mnist"
    if names_code_or_path("dataset", name) and not random_images:
        raise refuse_recorded("dataset", name, run_dir / "config.json")
    return name


def scheduling_of(args: argparse.Namespace, run_dir: Path) -> Scheduling:
    """--schedule / --max-recompute where given, else what the run directory recorded (the
    schedule its search held the budget to), else auto at 0.1."""
    from ..schedule import Scheduling
    from ..stored import recorded_scheduling

    base = recorded_scheduling(run_dir) or Scheduling()
    return Scheduling(
        base.schedule if args.schedule is None else args.schedule,
        base.max_recompute if args.max_recompute is None else args.max_recompute,
    )


def run(args: argparse.Namespace) -> int:
    from ..export import export_c
    from ..rundir import lock_dir
    from ..stored import QAT_FILES, first_file, inside, load_integer

    if args.target not in (None, "host", "cortex-m4"):
        from ..mcu import get_target

        get_target(args.target)  # an unknown target or a bad target file: stop now
    run_dir = Path(args.run_dir)
    scheduling = scheduling_of(args, run_dir)
    ckpt = first_file(run_dir, QAT_FILES)
    if ckpt is None:
        raise MicromixError(
            f"{run_dir} has no qat.pt; run `micromix finetune --run-dir {run_dir}` first."
        )
    out = Path(args.out) if args.out else run_dir / "c"
    _check_out(out, run_dir, args.force)  # before the slow loading
    target = args.target if args.target is not None else kept_target(out)
    if args.dataset is None:
        args.dataset = _recorded_dataset(run_dir, args.random_images)
    imodel = load_integer(ckpt, scheduling)
    policy_file = inside(run_dir, "policy.json")
    if policy_file.exists() and Policy.load(policy_file) != imodel.policy:
        raise MicromixError(f"{policy_file} does not match the policy stored in {ckpt}.")
    images, labels, what = _test_images(args, imodel.input_shape)
    # One exporter per output folder; the lock file sits beside it because the folder itself
    # is replaced whole at the end.
    lock = lock_dir(out, lockfile=out.parent / f".{out.name}.micromix.lock")
    try:
        _check_out(out, run_dir, args.force)
        name = target if isinstance(target, str) else target.name
        kept = " (the replaced export's)" if args.target is None and name != "host" else ""
        print(
            f"micromix: exporting {len(imodel.ops)} ops to {out} for {name}{kept}; "
            f"self-test on {what}"
        )
        export_c(
            imodel,
            out,
            target=target,
            test_images=images,
            check=not args.no_check,
            cm4_images=args.chip_images,
        )
    finally:
        lock.release()
    rep = imodel.report
    print(
        f"  FLASH {rep.flash_bytes:,} B constants, RAM {rep.ram_bytes:,} B = arena "
        f"{rep.arena_bytes:,} + kernel scratch {rep.scratch_bytes:,} (memory model)"
    )
    if rep.schedule is not None:
        print(f"  schedule {rep.schedule.describe()}")
    if labels is not None:
        acc = 100.0 * float(np.mean(imodel.run(images).astype(np.int64).argmax(1) == labels))
        print(f"  integer top-1 on those images: {acc:.2f}%")
    if args.no_check:
        print("  not built (--no-check); `make check` in the folder builds and runs the self-test")
        return 0
    from ..files import read_json

    summary = read_json(out / "export.json")
    b = summary["built"]
    print(
        f"  built: {b['const_bytes']:,} B constants in .rodata, {b['arena_bytes']:,} B arena, "
        f"{b['scratch_bytes']:,} B scratch: exactly the memory model"
    )
    print(
        f"  self-test: {summary['selftest_identical']}/{summary['selftest_images']} images "
        "bit-identical to the numpy reference"
    )
    if "fit" in summary:
        f = summary["fit"]
        print(f"  fit verdict for {f['target']} ({f['core']}): fits")
        for k in ("flash", "ram"):
            r = f[k]
            print(
                f"    {k.upper()} {r['needed']:,} / {r['available']:,} B of {r['region']} "
                f"(margin {r['margin']:,} B)"
            )
        print(
            f"    chip-sized image under qemu {f['board']}: {f['qemu_images']} images identical; "
            f"peak stack {f['ram_breakdown']['stack_peak']:,} B"
        )
    if "cortex_m4" in summary:
        m = summary["cortex_m4"]
        print(
            f"  cortex-m4 test-only image (qemu mps2-an386's map): {m['images']} images "
            f"identical; image FLASH "
            f"{m['flash_bytes']:,} B, RAM {m['ram_bytes']:,} B (stack used {m['stack_used']:,} B)"
        )
    return 0
