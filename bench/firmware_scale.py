"""Paper scale on the chip: MobileNetV1-1.0, 3x224x224, 1000 classes, for the STM32H743
(2 MB FLASH, 512 kB AXI SRAM) with the rule policy; the library and a minimal firmware must
fit by the fit verdict, and the chip-sized image must compute the numpy reference's logits
under qemu (mps2-an500, Cortex-M7).

No 224-pixel data set with 1000 classes is on these machines: the weights are the model's
seeded random initialisation and the fake-quant model is calibrated (BatchNorm statistics and
activation clips, no training) on a few Fashion-MNIST training images, upscaled to 224x224
and repeated to three (RGB) channels. The logits mean nothing; the memory and the bit-exact
agreement are what this measures.

    python -m bench.firmware_scale [--out results/firmware_scale.md] [--calib 8]

Heavy (several minutes on two cores): run it once.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import md_table
from micromix.budget import Budget
from micromix.data import load_dataset
from micromix.data.loader import ImageSet
from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.mcu import get_target
from micromix.memory import memory_report
from micromix.models import create
from micromix.policy import Policy
from micromix.quant import calibrate, prepare
from micromix.strategies.wall import rule_policy

TARGET = "stm32h743"


def upscaled_rgb(n: int) -> torch.Tensor:
    """The first n Fashion-MNIST training images, bilinear to 224x224, gray repeated to RGB."""
    data = load_dataset("fashion_mnist")
    x = data.train.images[:n].float()
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/firmware_scale.md")
    ap.add_argument("--calib", type=int, default=8, help="calibration images")
    ap.add_argument("--keep", default=None, help="keep the export folder here")
    args = ap.parse_args()
    torch.manual_seed(0)
    times: dict[str, tuple[float, float]] = {}

    def lap(name: str, t0: float, c0: float) -> tuple[float, float]:
        times[name] = (time.time() - t0, cpu_seconds() - c0)
        print(f"{name}: {times[name][0]:.1f} s wall, {times[name][1]:.1f} s CPU", flush=True)
        return time.time(), cpu_seconds()

    t, c = time.time(), cpu_seconds()
    model = create("mobilenet_v1", width=1.0, resolution=224, in_channels=3, num_classes=1000)
    model.eval()
    graph = trace(model)
    target = get_target(TARGET)
    budget = Budget.parse(target=TARGET)
    ref = memory_report(graph, Policy.uniform(graph, 8))
    policy = rule_policy(graph, budget)
    rep = memory_report(graph, policy)
    t, c = lap("trace + rule policy", t, c)

    x = upscaled_rgb(args.calib)
    qmodel = prepare(model, policy, graph)
    ds = ImageSet(x, torch.zeros(len(x), dtype=torch.int64), tuple(str(i) for i in range(1000)))
    calibrate(qmodel, ds, batches=1, batch_size=len(x))
    imodel = convert(qmodel)
    t, c = lap("calibrate + integer model", t, c)

    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mm_scale_"))
    export_c(imodel, out, target=TARGET, test_images=x[:1].numpy(), cm4_images=1)
    t, c = lap("export: host self-test, fit verdict, chip-sized image under qemu", t, c)
    s = json.loads((out / "export.json").read_text())
    fit = s["fit"]
    wbits = sorted({b for b in policy.weights.values()})
    abits = sorted({b for b in policy.activations.values()})
    lines = [
        "# Paper scale on the chip: MobileNetV1-1.0 224x224x3, 1000 classes, STM32H743",
        "",
        "Command: `python -m bench.firmware_scale` (run once;",
        "2-core machine shared with other jobs; arm-none-eabi-gcc 12.2, qemu 7.2).",
        "",
        "Weights: seeded random initialisation (no 224-px 1000-class data set here); fake-quant",
        f"calibration only (BatchNorm statistics, activation clips) on {args.calib} Fashion-MNIST",
        "training images upscaled bilinearly to 224x224 and repeated to RGB. The logits carry no",
        "meaning; memory and bit-exactness do.",
        "",
        f"Target: {TARGET} ({target.core}); {target.source}.",
        f"Search budget from the target (largest region less the reserves): FLASH "
        f"{budget.flash:,} B, RAM {budget.ram:,} B.",
        f"Uniform 8-bit needs FLASH {ref.flash_bytes:,} B, RAM {ref.ram_bytes:,} B.",
        f"Rule policy: weight bits {wbits}, activation bits {abits}; memory model FLASH "
        f"{rep.flash_bytes:,} B, RAM {rep.ram_bytes:,} B (arena {rep.arena_bytes:,} + scratch "
        f"{rep.scratch_bytes:,}).",
        "",
        "## Fit verdict (library + minimal startup and main, linked against the chip's map)",
        "",
        *md_table(
            ("region", "needed (B)", "available (B)", "margin (B)"),
            [
                [f["region"], f"{f['needed']:,}", f"{f['available']:,}", f"{f['margin']:,}"]
                for f in (fit["flash"], fit["ram"])
            ],
            "lrrr",
        ),
    ]
    fb, rb = fit["flash_breakdown"], fit["ram_breakdown"]
    lines += [
        "",
        f"FLASH = constants {fb['constants']:,} + library code {fb['library_code']:,} + startup, "
        f"main, libc and vectors {fb['startup_main_libc_vectors']:,} B.",
        f"RAM = arena {rb['arena']:,} (input frame inside) + scratch {rb['scratch']:,} + startup "
        f"data {rb['startup_data']:,} + measured peak stack {rb['stack_peak']:,} B.",
        "",
        f"Chip-sized image (the chip's FLASH and RAM sizes at the addresses of qemu's "
        f"{fit['board']}): {fit['qemu_images']} image, logits equal to the numpy reference.",
        f"Host self-test: {s['selftest_identical']}/{s['selftest_images']} bit-identical.",
        "",
        "## Times",
        "",
        *md_table(
            ("step", "wall (s)", "CPU (s)"),
            [[k, f"{w:.1f}", f"{cp:.1f}"] for k, (w, cp) in times.items()],
            "lrr",
        ),
        "",
        f"Peak RSS of the Python process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    np.set_printoptions()


if __name__ == "__main__":
    main()
