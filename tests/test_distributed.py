"""QAT fine-tuning under DDP: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, out: str) -> None:
    # What torchrun puts in the environment of each process.
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    from test_quant import SkipNet, image_set

    from micromix import distributed as dist
    from micromix.graph import trace
    from micromix.policy import Policy
    from micromix.quant.finetune import FinetuneConfig, finetune
    from micromix.quant.recipe import recipe

    dist.init_from_env(torch.device("cpu"))
    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    q = finetune(
        model,
        Policy.uniform(g, 4),
        image_set(128),
        recipe("old", lr=3e-3, augment=False),
        FinetuneConfig(
            epochs=2, batch_size=16, max_batches=3, checkpoint=Path(out) / "ck.pt", progress=False
        ),
        graph=g,
    )
    torch.save({k: v.clone() for k, v in q.state_dict().items()}, Path(out) / f"rank{rank}.pt")
    dist.shutdown()


def test_ddp_ranks_end_identical(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "ck.pt").exists()  # rank 0 wrote the checkpoint
    from test_quant import SkipNet

    init = SkipNet().state_dict()
    assert not torch.equal(a["net.stem.weight"], init["stem.weight"])  # it trained


@pytest.mark.slow
def test_torchrun_finetune_cli(tmp_path, fashion):
    """`micromix finetune` runs unchanged under torchrun; only rank 0 writes the run dir."""
    from micromix.models import create
    from micromix.train import save_model

    save_model(
        tmp_path / "f.pt",
        create("mobilenet_v1", width=0.1, resolution=28, in_channels=1, num_classes=10),
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "micromix",
        "finetune",
        "--checkpoint",
        str(tmp_path / "f.pt"),
        "--bits",
        "4",
        "--epochs",
        "1",
        "--max-batches",
        "2",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "qat.pt").exists() and (tmp_path / "run" / "metrics.json").exists()
