"""The demo network's C under a patch schedule: bit-identical to the numpy reference on the
whole Fashion-MNIST test set, on the host and on the Cortex-M4 (qemu mps2-an386), with the
object files holding exactly the scheduled memory report's bytes.

The float MobileNetV1-0.25 (28 x 28) is calibrated post-training for W8/A8 and for the rule
policy at 0.48x FLASH / 0.42x RAM (as bench.c_inference does), converted with
`schedule="patch"` and exported. The Cortex-M4 image holds its test images in FLASH, so the
test set runs there in chunks (one image build per chunk).

    python -m bench.schedule_c [--images 10000] [--m4-images 10000] [--chunk 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.common import md_table
from micromix.budget import Budget
from micromix.data import load_dataset
from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.quant import calibrate, prepare, quant_params
from micromix.strategies import rule_policy
from micromix.train import load_model

CHECKPOINT = "src/micromix/assets/mobilenet_v1_w025_fmnist28.pt"


def _m4(imodel, x: np.ndarray, work: Path, chunk: int) -> int:
    """Images the Cortex-M4 image computed bit-identically (export_c raises on any other)."""
    done = 0
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        out = export_c(imodel, work / "m4", test_images=part, target="cortex-m4",
                       cm4_images=len(part))  # fmt: skip
        done += json.loads((out / "export.json").read_text())["cortex_m4"]["images"]
        print(f"  cortex-m4: {done} / {len(x)} images", flush=True)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=10000, help="host self-test images")
    ap.add_argument("--m4-images", type=int, default=10000)
    ap.add_argument("--chunk", type=int, default=1000, help="images per Cortex-M4 image")
    ap.add_argument("--work", default="runs/bench-schedule-c")
    ap.add_argument("--out", default="results/schedule_c.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = load_dataset("fashion_mnist")
    x = data.test.take(range(args.images)).images.numpy()
    model = load_model(CHECKPOINT)[0].eval()
    g = trace(model)
    ref = memory_report(g, Policy.uniform(g, 8))
    policies = {
        "W8/A8": Policy.uniform(g, 8),
        "rule 0.48x / 0.42x": rule_policy(g, Budget.parse("0.48x", "0.42x", reference=ref)),
    }
    rows, out_json = [], {}
    for i, (name, pol) in enumerate(policies.items()):
        qmodel = prepare(model, pol, g)
        calibrate(qmodel, data.train, batches=2)
        qp = quant_params(qmodel)
        layer = convert(qp, g, pol)
        imodel = convert(qp, g, pol, schedule="patch")
        rep, sched = imodel.report, imodel.report.schedule
        work = Path(args.work) / f"p{i}"
        out = export_c(imodel, work / "host", test_images=x)
        s = json.loads((out / "export.json").read_text())
        m4 = _m4(imodel, x[: args.m4_images], work, args.chunk) if args.m4_images else 0
        out_json[name] = {
            "schedule": sched.to_json() | {"steps": None},
            "layer_ram": layer.report.ram_bytes,
            "ram": rep.ram_bytes,
            "built": s["built"],
            "host_identical": s["selftest_identical"],
            "host_images": s["selftest_images"],
            "m4_identical": m4,
        }
        rows.append((
            name, f"{sched.split}, {sched.grid}x{sched.grid}", f"{layer.report.ram_bytes:,}",
            f"{rep.ram_bytes:,}", f"{s['built']['ram_bytes']:,}",
            f"{s['selftest_identical']:,} / {s['selftest_images']:,}",
            f"{m4:,} / {min(args.m4_images, len(x)):,}",
        ))  # fmt: skip
        print(name, out_json[name]["ram"], s["built"], flush=True)
    Path(args.out).write_text(json.dumps(out_json, indent=1))
    head = ["policy", "patch stage", "layer RAM B", "scheduled RAM B", "built RAM B",
            "host bit-identical", "Cortex-M4 bit-identical"]  # fmt: skip
    Path(args.out).with_suffix(".md").write_text(
        "# The demo network's C under a patch schedule\n\n"
        f"Reproduce: `python -m bench.schedule_c --images {args.images} --m4-images "
        f"{args.m4_images} --chunk {args.chunk}` (calibrated post-training from "
        f"`{CHECKPOINT}`; Fashion-MNIST test images; Cortex-M4 = qemu mps2-an386, "
        "arm-none-eabi-gcc -O2).\n\n" + "\n".join(md_table(head, rows)) + "\n"
    )


if __name__ == "__main__":
    main()
