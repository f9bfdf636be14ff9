"""MLPerf Tiny's reference models: TFLite Micro beside micromix in the same run.

For each task (kws, vww, ic, ad): TFLM's arena for the int8 file (its own Python runtime) and
the int8 file's size as TFLM's model FLASH; micromix's exact FLASH and RAM for the network
imported from the float file at W8/A8 and under a mixed ILP policy at half the W8/A8 FLASH;
the import checked against the float file run by TFLM on the same inputs; micromix's W8/A8
outputs against TFLM's int8 outputs (for information). The data is random, generated here:
uniform uint8 images (micromix's input convention, pixel / 255), and the ILP's sensitivities
use the float import's own arg-max as labels; no data set of these tasks is available offline.
micromix scales the dense layers' weights as the int8 file does (`weight_scales`: one scale per
tensor in all four files, so one multiplier and shift per fully connected layer), convolutions
per output channel.

    python bench/mlperf_tiny.py [--tasks kws,ad] [--images 32] [--out results/mlperf_tiny.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from micromix.budget import Budget
from micromix.cost import cost_rows
from micromix.data.loader import ImageSet
from micromix.errors import MicromixError
from micromix.files import write_json
from micromix.graph import WeightScales, trace
from micromix.importers import input_shape, load
from micromix.importers import reference as tflm
from micromix.importers.tflite import dense_scales
from micromix.integer import convert
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.quant import calibrate, prepare
from micromix.schedule import GRIDS, recomputed_macs, scheduled_report, split_points
from micromix.strategies.ilp import measure_sensitivity, solve_ilp

FILES = {
    "kws": ("kws_ref_model_float32.tflite", "kws_ref_model.tflite"),
    "vww": ("vww_96_float.tflite", "vww_96_int8.tflite"),
    "ic": ("pretrainedResnet.tflite", "pretrainedResnet_quant.tflite"),
    "ad": ("ad01_fp32.tflite", "ad01_int8.tflite"),
}
POLICIES = Path(__file__).resolve().parents[1] / "results" / "mlperf_tiny_policies"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "third_party" / "mlperf-tiny"


def weight_scales(task: str, base: Path) -> WeightScales:
    """The dense layers' weight scales of `task`'s int8 file (TFLite's fully connected layers:
    one per tensor), per output channel where the file has none."""
    return WeightScales(dense=dense_scales(base / FILES[task][1]) or "channel")


def file_layout(shape: tuple[int, int, int], x: np.ndarray) -> np.ndarray:
    c, h, w = shape
    return x.reshape(len(x), c) if (h, w) == (1, 1) else x.transpose(0, 2, 3, 1)


def logits(net, x: torch.Tensor) -> torch.Tensor:
    """The imported network's output before a trailing softmax (micromix's C returns logits)."""
    t = {"input": x}
    plan = (
        net.plan[:-1] if isinstance(getattr(net, net.plan[-1][0]), torch.nn.Softmax) else net.plan
    )
    for name, ins in plan:
        t[name] = getattr(net, name)(*(t[i] for i in ins))
    return t[plan[-1][0]]


def est_cycles(graph, policy) -> int | None:
    """The cost model's estimated Cortex-M4 cycles (micromix.cost; None if a layer has no row)."""
    rows = cost_rows(graph, policy)
    known = [r["est_cycles"] for r in rows if r["est_cycles"] is not None]
    return sum(known) if len(known) == len(rows) else None


def measured_cycles(task: str, build: str) -> int | None:
    """Estimated Cortex-M4 cycles counted under qemu by bench/mcu_cost.py (results/mcu_cost.json),
    None when that benchmark has not run on `task`."""
    path = Path(__file__).resolve().parents[1] / "results" / "mcu_cost.json"
    if not path.exists():
        return None
    run = json.loads(path.read_text()).get("networks", {}).get(task, {}).get("cortex-m4", {})
    return run.get(build, {}).get("est_cycles")


def import_error(fl: Path, net, shape, rng) -> float:
    model = tflm.float_copy(fl)
    worst = 0.0
    for _ in range(4):
        x = rng.uniform(0, 1, (1, *shape)).astype(np.float32)
        want = tflm.run(model, file_layout(shape, x))
        with torch.no_grad():
            got = net(torch.from_numpy(x)).numpy().reshape(want.shape)
        worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
    return worst


def against_tflm_int8(q8: bytes, im, net, imgs: np.ndarray, shape) -> dict:
    s, zp = tflm.input_quantization(q8)
    x = imgs.astype(np.float32) / 255
    qin = np.clip(np.round(x / s) + zp, -128, 127).astype(np.int8)
    theirs = np.stack([tflm.run(q8, file_layout(shape, qin[i : i + 1]))[0] for i in range(len(x))])
    ours = im.run(imgs).astype(np.float64) * im.tensors[im.graph.output].scale
    with torch.no_grad():
        ref = logits(net, torch.from_numpy(x)).numpy().reshape(ours.shape)
    agree = float(
        np.mean(theirs.reshape(len(x), -1).argmax(1) == ours.reshape(len(x), -1).argmax(1))
    )
    os_, ozp = tflm.output_quantization(q8)
    theirs = (theirs.reshape(ours.shape).astype(np.float64) - ozp) * os_
    return {
        "argmax": agree,
        "max_logit_diff_vs_float_import": float(np.abs(ours - ref).max()),
        # the same measure for TFLite's own int8 file: what "close" means on this network
        "tflm_int8_max_logit_diff_vs_float_import": float(np.abs(theirs - ref).max()),
    }


def patch_recompute(g) -> dict:
    """{split: {grid: recomputed MACs / layer MACs}} of every tensor a patch stage could end at
    (stage_ops; whether or not the C runs that stage: the cost of patching through it)."""
    layer = sum(o.macs for o in g.ops)
    return {
        s: {
            n: round(recomputed_macs(g, s, n) / layer, 4)
            for n in GRIDS
            if n <= min(g.tensors[s].shape[1:])
        }
        for s in split_points(g)
    }


def run_task(task: str, base: Path, n: int) -> dict:
    t0 = time.time()
    fl, q8f = (base / f for f in FILES[task])
    q8 = q8f.read_bytes()
    net, shape = load("tflite", fl), input_shape("tflite", fl)
    rng = np.random.default_rng(0)
    res: dict = {"tflm": {"arena": tflm.arena_bytes(q8), "flash": len(q8)}}
    res["import_max_rel_error"] = import_error(fl, net, shape, rng)
    scales = weight_scales(task, base)
    g = trace(net, input_shape=(1, *shape), scales=scales)
    res["dense_weight_scales"] = scales.dense
    imgs = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    with torch.no_grad():
        labels = logits(net, torch.from_numpy(imgs.astype(np.float32) / 255)).flatten(1).argmax(1)
    ds = ImageSet(
        torch.from_numpy(imgs), labels, tuple(str(i) for i in range(int(labels.max()) + 1))
    )
    w8 = Policy.uniform(g, 8)
    rep = memory_report(g, w8)
    q = prepare(net, w8, g)
    calibrate(q, ds, batches=1, batch_size=n)
    try:
        im = convert(q.eval())
        agree = against_tflm_int8(q8, im, net, imgs[: min(n, 16)], shape)
    except MicromixError as e:  # reported, not hidden: micromix's int32 worst-case check
        agree = {"argmax": None, "max_logit_diff_vs_float_import": None, "error": str(e)}
    auto = scheduled_report(g, w8, "auto")  # the schedule the export follows by default
    stream = scheduled_report(g, w8, "stream")
    res["patch_recompute"] = patch_recompute(g)
    res["micromix_w8a8"] = {
        "ram": rep.ram_bytes,
        "ram_auto": auto.ram_bytes,
        "schedule_auto": auto.schedule.describe() if auto.schedule is not None else "layer",
        # the input read row by row by the application (micromix_run_rows), never whole
        "ram_stream": stream.ram_bytes,
        "schedule_stream": stream.schedule.describe(),
        "flash": rep.flash_bytes,
        # counted under qemu (bench/mcu_cost.py) where it ran, else the cost model
        "est_cycles_m4": measured_cycles(task, "micromix_w8a8") or est_cycles(g, w8),
        "cmsis_nn_est_cycles_m4": measured_cycles(task, "cmsis_nn_s8"),
        "argmax_agreement_tflm_int8": agree["argmax"],
        "max_logit_diff_vs_float_import": agree["max_logit_diff_vs_float_import"],
        "tflm_int8_max_logit_diff_vs_float_import": agree.get(
            "tflm_int8_max_logit_diff_vs_float_import"
        ),
    }
    if "error" in agree:
        res["micromix_w8a8"]["integer_conversion_error"] = agree["error"]
    sens = measure_sensitivity(net, g, ds, batch_size=n)
    mixed = solve_ilp(g, Budget(flash=rep.flash_bytes // 2), sens)
    # for bench.mcu_cost --policies w8a8,results/mlperf_tiny_policies/{net}_mixed.json
    POLICIES.mkdir(parents=True, exist_ok=True)
    mixed.save(str(POLICIES / f"{task}_mixed.json"))
    mrep = memory_report(g, mixed)
    res["micromix_mixed"] = {
        "ram": mrep.ram_bytes,
        "ram_auto": scheduled_report(g, mixed, "auto").ram_bytes,
        "flash": mrep.flash_bytes,
        "est_cycles_m4": est_cycles(g, mixed),  # the cost model
        # counted under qemu by bench.mcu_cost --policies w8a8,<this policy's file> where it ran
        "est_cycles_m4_measured": measured_cycles(task, f"micromix_{task}_mixed"),
    }
    print(f"{task}: {res} ({time.time() - t0:.0f} s)", flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="kws,vww,ic,ad")
    p.add_argument("--images", type=int, default=32, help="random images for calibration")
    p.add_argument("--dir", default=os.environ.get("MICROMIX_MLPERF_TINY", str(DEFAULT_DIR)))
    p.add_argument("--out", default="results/mlperf_tiny.json")
    a = p.parse_args()
    torch.manual_seed(0)
    out = {t: run_task(t, Path(a.dir), a.images) for t in a.tasks.split(",")}
    write_json(a.out, out)


if __name__ == "__main__":
    main()
