"""Integer model vs the fake-quant model of one QAT checkpoint (e.g. LSQ-trained) on test images.

    python -m bench.qat_lsq_agreement RUN_DIR/qat.pt [--images 10000]

Prints the weight quantizer of the checkpoint, top-1 of both models and the share of images
on which their predictions agree (bench/integer_agreement.py does this for the PTQ rows).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from micromix.data import load_dataset
from micromix.integer import convert
from micromix.quant.finetune import load_qat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("qat")
    ap.add_argument("--images", type=int, default=10000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    q, _ = load_qat(a.qat)
    test = load_dataset("fashion_mnist").test
    n, t0 = min(a.images, len(test)), time.time()
    with torch.no_grad():
        fq = torch.cat(
            [q(test.images[i : i + 500].float() / 255).argmax(1) for i in range(0, n, 500)]
        ).numpy()[:n]
    im = convert(q)
    yi = np.concatenate(
        [im.run(test.images[i : i + 500].numpy()).argmax(1) for i in range(0, n, 500)]
    )[:n]
    lab = test.labels[:n].numpy()
    print(
        f"{a.qat} ({q.weight_quant} weights), {n} test images: fake-quant "
        f"{100 * (fq == lab).mean():.2f} %, integer {100 * (yi == lab).mean():.2f} %, same "
        f"prediction {100 * (fq == yi).mean():.2f} %, {time.time() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
