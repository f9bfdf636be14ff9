"""Peak memory of `micromix run --strategy rule` on MobileNetV1-1.0 at 3x224x224, 1000 classes.

Builds an image folder of SYNTHETIC-by-construction data: Fashion-MNIST images upscaled to
224x224 and tinted to RGB, in 1000 class sub-folders (class k takes Fashion-MNIST image k):
one training image per class in train/, one test image for each of the first `--test-classes`
classes in test/. Then runs the whole pipeline under `/usr/bin/time -v` with tiny epoch and
image counts (the point is memory, not accuracy) and writes the peak RSS and the exact command
to results/scale.md.

    python -m bench.scale [--root /tmp/micromix-scale] [--out results/scale.md]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 1000
SIZE = 224
LIMIT_BYTES = 3 * 10**9


def build_folder(root: Path, test_classes: int) -> None:
    from micromix.data import load_fashion_mnist

    if (root / "done").exists():
        return
    train, _ = load_fashion_mnist()
    tints = np.random.default_rng(0).uniform(0.5, 1.0, (CLASSES, 3))
    for k in range(CLASSES):
        for part, idx in (("train", k), ("test", CLASSES + k)):
            if part == "test" and k >= test_classes:
                continue
            grey = Image.fromarray(train.images[idx, 0].numpy()).resize(
                (SIZE, SIZE), Image.Resampling.BILINEAR
            )
            rgb = (np.asarray(grey, np.float32)[..., None] * tints[k]).astype(np.uint8)
            d = root / part / f"class{k:04d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb, "RGB").save(d / "0.png")
    (root / "done").write_text("ok\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/micromix-scale", help="where the folder is built")
    ap.add_argument("--run-dir", default="/tmp/micromix-scale-run")
    ap.add_argument("--test-classes", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default="results/scale.md")
    a = ap.parse_args()
    root = Path(a.root)
    t0 = time.time()
    build_folder(root, a.test_classes)
    build_s = time.time() - t0
    cmd = [
        "/usr/bin/time", "-v", sys.executable, "-m", "micromix", "run", "--quiet", "--force",
        "--model", "mobilenet_v1", "--width", "1.0", "--input-shape", f"3x{SIZE}x{SIZE}",
        "--classes", str(CLASSES), "--dataset", str(root), "--strategy", "rule",
        "--flash", "0.48x", "--ram", "0.42x", "--float-epochs", "1",
        "--batch-size", str(a.batch_size), "--search-train-images", "16",
        "--search-eval-images", "16", "--finetune-epochs", "1", "--finetune-batches", "4",
        "--eval-images", "16", "--export-images", "2", "--export-target", "host",
        "--run-dir", a.run_dir,
    ]  # fmt: skip
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    wall = time.time() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return 1
    rss = int(m.group(1)) * 1024
    shown = " ".join(shlex.quote(c) for c in cmd).replace(sys.executable, "python")
    Path(a.out).write_text(
        f"""# Scale: MobileNetV1-1.0, 3x224x224, 1000 classes, from an image folder

Peak RSS of the whole `micromix run --strategy rule` (float training, budget, rule policy with
its short QAT score, QAT fine-tune, integer model, C export built and checked, report):
**{rss / 1e9:.2f} GB** ({rss:,} bytes, `Maximum resident set size` of `/usr/bin/time -v`;
the limit asked for is 3 GB). Wall time {wall / 60:.1f} min on the shared 2-core machine.

The data is a folder built by `python -m bench.scale` ({build_s:.0f} s): Fashion-MNIST images
upscaled to 224x224 and tinted to RGB, 1000 class sub-folders with ONE training image each
(train/) and one test image for each of the first {a.test_classes} classes (test/). The counts
are tiny on purpose: this measures memory, not accuracy (1 float epoch over 800 images, batch
{a.batch_size}; 16 images per search score; 4 QAT batches; 16 test images; 2 self-test images).

Command (run by `python -m bench.scale`):

```
{shown}
```

Summary printed by the run:

```
{proc.stdout.strip()[-2500:]}
```
"""
    )
    print(f"peak RSS {rss:,} B; written to {a.out}")
    return 0 if rss <= LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
