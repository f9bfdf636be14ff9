"""Time of a QAT training step over a float training step, same model, same batches.

Also times a naive fake-quant (composed autograd ops) on the 8/8 model for comparison, the
`new` recipe's step (quant.recipe: LSQ weight step sizes, no teacher) and the `kd` recipe's
(`new` + distillation from the float model) with the teacher's forward pass included: online (a
teacher forward every step, as with augmentation) and cached (no augmentation: each image's
teacher logits are computed once per run, so a run of E epochs pays 1/E of a teacher forward
per step; E = --epochs).

    python -m bench.qat_overhead [--steps 30] [--batch 128] [--threads N] [--epochs 3]

MobileNetV1-0.25 at 28x28 (stride-1 stem), random data, Adam, train mode (BN updating).
Float and QAT steps are interleaved in rounds so that a load change on a shared machine hits
both alike; the figure is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import types

import torch
import torch.nn as nn

from micromix.graph import trace
from micromix.models import create
from micromix.policy import Policy
from micromix.quant import ActQuant, WeightQuant, prepare
from micromix.quant.finetune import make_teacher
from micromix.quant.recipe import KD, NEW
from micromix.train import distill_loss, teacher_forward


def step_timer(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher: nn.Module | None = None,
    every: float = 1.0,
):
    """One training step. With `teacher`: the distillation loss of the new recipe, the teacher
    run on the batch (online, every=1) or its forward time counted `every` (< 1: cached logits
    computed once per run, amortized over the run's epochs) with stored logits used."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    stored = teacher(x).detach() if teacher is not None else None

    def step() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        if teacher is None:
            loss = loss_fn(model(x), y)
        else:
            if every >= 1:
                soft = teacher_forward(teacher, x)
            else:
                soft = stored
            loss = distill_loss(model(x), y, soft, KD.kd_weight, KD.kd_temperature, loss_fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if teacher is not None and every < 1:  # the cached logits' share of this step
            t1, c1 = time.perf_counter(), time.process_time()
            teacher_forward(teacher, x)
            wall += every * (time.perf_counter() - t1)
            cpu += every * (time.process_time() - c1)
        return wall, cpu

    return step


def naive(qmodel: nn.Module) -> nn.Module:
    """The textbook fake-quant for comparison: composed autograd ops, STE by detach, the
    per-channel weight scale recomputed from max|w| each step."""

    def act(self, x):
        lo = -self.alpha if self.signed else torch.zeros_like(self.alpha)
        xc = torch.minimum(torch.maximum(x, lo), self.alpha)
        u = xc / (self.alpha / self.qmax)
        return ((torch.floor(u + 0.5) - u).detach() + u) * (self.alpha / self.qmax)

    def weight(self, w):
        s = w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / self.qmax
        u = torch.clamp(w / s, self.qmin, self.qmax)
        return ((torch.floor(u + 0.5) - u).detach() + u) * s

    for m in qmodel.modules():
        if isinstance(m, ActQuant):
            m.forward = types.MethodType(act, m)
        elif isinstance(m, WeightQuant):
            m.forward = types.MethodType(weight, m)
    return qmodel


def mixed_policy(graph) -> Policy:
    """A search-like policy: bits cycle 8/4/2 over layers and tensors."""
    cycle = (8, 4, 2)
    w = {o.name: cycle[i % 3] for i, o in enumerate(graph.weight_ops)}
    a = {
        t: 8 if t in (graph.input, graph.output) else cycle[(i + 1) % 3]
        for i, t in enumerate(graph.tensors)
    }
    return Policy(w, a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per model per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--epochs", type=int, default=3, help="run length the cached teacher spreads over"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10)
    graph = trace(model)
    x = torch.rand(args.batch, 1, 28, 28).mul_(255).round_().div_(255)
    y = torch.randint(0, 10, (args.batch,))
    policies = {
        "8/8": Policy.uniform(graph, 8),
        "4/4": Policy.uniform(graph, 4),
        "W2/A4": Policy.uniform(graph, 2, 4),
        "mixed 8/4/2": mixed_policy(graph),
    }
    timers = {"float": step_timer(model, x, y)}
    for name, pol in policies.items():
        timers[name] = step_timer(prepare(model, pol, graph), x, y)
    timers["naive 8/8"] = step_timer(naive(prepare(model, policies["8/8"], graph)), x, y)
    teacher = make_teacher(model)
    for name in ("4/4", "W2/A4"):
        lsq = prepare(model, policies[name], graph, weight_quant=NEW.weight_quant)
        timers[f"new {name}"] = step_timer(lsq, x, y)
        lsq = prepare(model, policies[name], graph, weight_quant=KD.weight_quant)
        timers[f"kd {name} online"] = step_timer(lsq, x, y, teacher)
        lsq = prepare(model, policies[name], graph, weight_quant=KD.weight_quant)
        timers[f"kd {name} cached"] = step_timer(lsq, x, y, teacher, every=1 / args.epochs)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in timers}
    for _ in range(3):  # warm-up
        for t in timers.values():
            t()
    for _ in range(args.rounds):
        for name, t in timers.items():
            times[name] += [t() for _ in range(args.steps)]
    # Wall time is what a user waits; process CPU time is less disturbed by other jobs on a
    # shared machine (with one thread it is the compute itself; more threads add spin-waits).
    base_wall = statistics.median(t[0] for t in times["float"])
    base_cpu = statistics.median(t[1] for t in times["float"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.rounds} x {args.steps} steps each, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'model':<18} {'wall ms':>8} {'ratio':>6} {'cpu ms':>8} {'ratio':>6}")
    for name, ts in times.items():
        wall = statistics.median(t[0] for t in ts)
        cpu = statistics.median(t[1] for t in ts)
        print(
            f"{name:<18} {1000 * wall:>8.1f} {wall / base_wall:>6.2f} "
            f"{1000 * cpu:>8.1f} {cpu / base_cpu:>6.2f}"
        )


if __name__ == "__main__":
    main()
