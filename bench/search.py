"""Search strategies on Fashion-MNIST / MobileNetV1-0.25 at the paper's budget ratios.

    python -m bench.search --checkpoint runs/float-mbv1-025/model.pt \\
        --episodes 300 --out runs/bench-search [--strategies rule,uniform,ilp,random,haq] \\
        [--finetune-epochs 3] [--profile]

FLASH = 0.48x and RAM = 0.42x of the uniform 8-bit figures. For each strategy: the search
(held-out accuracy after the short per-episode fine-tune, wall time, evaluated policies,
utilization of both budgets), then the same final QAT fine-tune of its best policy on the whole
train split and the accuracy on the TEST split. Each strategy runs in its own run directory
with resume on, so an interrupted benchmark continues where it stopped. `--profile` times the
parts of one haq episode instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import add_qat_recipe_arg
from micromix.budget import Budget
from micromix.data import load_dataset
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.strategies import QATEvaluator, QATSettings, QuantEnv, SearchConfig, Wall, search
from micromix.strategies.ddpg import DDPG, DDPGConfig
from micromix.strategies.env import OBS_DIM
from micromix.strategies.evaluate import threads
from micromix.train import evaluate, load_model


def final_finetune(
    model, policy: Policy, data, graph, recipe: str, epochs: int, seed: int
) -> dict:  # fmt: skip
    from micromix.quant.finetune import FinetuneConfig, finetune

    t0 = time.time()
    with threads(1):
        run = FinetuneConfig(epochs=epochs, seed=seed, progress=False)
        q = finetune(model, policy, data.train, recipe, run, graph=graph)
        test = evaluate(q, data.test)
        held = evaluate(q, data.heldout)
    return {"test_acc": test, "heldout_acc_full": held, "finetune_seconds": time.time() - t0}


def profile(model, data, graph, budget: Budget, n: int = 5) -> None:
    """Time the parts of haq episodes past warm-up: agent, wall, evaluation, updates, save."""
    ev = QATEvaluator(model, data, graph=graph)
    env, wall = QuantEnv(graph, budget), Wall(graph, budget)
    agent = DDPG(OBS_DIM, env.steps_per_episode, DDPGConfig(warmup=0, batch_size=64), seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):  # enough transitions for a batch
        agent.remember([(rng.random(OBS_DIM), 0.5, rng.random(OBS_DIM), False)] * 56, 0.0)
    parts: dict[str, list[float]] = {k: [] for k in ("act", "wall", "eval", "update", "save")}
    for ep in range(n):
        t = time.perf_counter()
        obs, done, trans = env.reset(), False, []
        while not done:
            a = agent.act(obs, ep)
            nxt, done = env.step(a)
            trans.append((obs, a, nxt, done))
            obs = nxt
        parts["act"].append(time.perf_counter() - t)
        t = time.perf_counter()
        policy, _ = wall.enforce(env.proposal())
        parts["wall"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ev(policy)
        parts["eval"].append(time.perf_counter() - t)
        t = time.perf_counter()
        agent.remember(trans, 0.0)
        agent.end_episode(ep, len(trans))
        parts["update"].append(time.perf_counter() - t)
        t = time.perf_counter()
        torch.save(agent.state_dict(), "/tmp/_micromix_profile.pt")
        parts["save"].append(time.perf_counter() - t)
    total = sum(np.mean(v) for v in parts.values())
    for k, v in parts.items():
        print(f"{k:>7}: {np.mean(v) * 1000:8.1f} ms  ({100 * np.mean(v) / total:.1f} %)")
    print(f"  total: {total:.2f} s per episode")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/float-mbv1-025/model.pt")
    ap.add_argument("--out", default="runs/bench-search")
    ap.add_argument("--strategies", default="rule,uniform,ilp,random,haq")
    ap.add_argument("--workers", type=int, default=1, help="policies evaluated at a time (Ray)")
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    add_qat_recipe_arg(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    model, _ = load_model(args.checkpoint)
    graph = trace(model)
    ref = memory_report(graph, Policy.uniform(graph, 8))
    budget = Budget.parse("0.48x", "0.42x", reference=ref)
    data = load_dataset()
    print(
        f"budget FLASH {budget.flash:,} B, RAM {budget.ram:,} B (8-bit {ref.flash_bytes:,} / {ref.ram_bytes:,})"
    )
    if args.profile:
        profile(model, data, graph, budget)
        return
    out = Path(args.out)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for strategy in args.strategies.split(","):
        if strategy in summary:
            print(f"{strategy}: done already")
            continue
        t0 = time.time()
        kw = {"episodes": args.episodes} if strategy in ("haq", "random") else {}
        r = search(
            model,
            data,
            budget,
            strategy,
            SearchConfig(
                run_dir=out / strategy,
                seed=args.seed,
                qat=QATSettings(),
                resume=True,
                workers=args.workers,
            ),
            graph=graph,
            **kw,
        )
        search_wall = time.time() - t0
        row = {
            **r.metrics(),
            "search_seconds_this_call": search_wall,
            **final_finetune(
                model, r.policy, data, graph, args.qat_recipe, args.finetune_epochs, args.seed
            ),
        }
        if len(r.history) > 1:  # best-so-far after 50, 100, ... evaluated episodes
            accs = np.maximum.accumulate([h["accuracy"] for h in r.history])
            row["best_at"] = {
                str(k): float(accs[k - 1]) for k in (25, 50, 100, 200, 300, 600) if k <= len(accs)
            }
        summary[strategy] = row
        out.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2))
        u = row["utilization"]
        print(
            f"{strategy:>8}: held-out {row['best_accuracy']:.2f}%  test {row['test_acc']:.2f}%  "
            f"FLASH {100 * u['flash']:.1f}%  RAM {100 * u['ram']:.1f}%  search {row['wall_seconds']:.0f}s "
            f"({row['evaluations']} evaluated)",
            flush=True,
        )


if __name__ == "__main__":
    main()
