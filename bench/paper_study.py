"""The study of arXiv 2008.05124 scaled down to Fashion-MNIST (README: "The paper's study").

For each model: Table A (FLASH-only budget, 0.48x of the 8-bit FLASH: haq mixed uniform vs
k-means non-uniform at the same per-layer bits vs uniform 4-bit weights), Table B (FLASH 0.48x
+ RAM 0.42x: haq vs rule vs ilp vs the best 8-bit network that fits vs uniform 4-bit), each
policy after the same final QAT fine-tune; and a Pareto sweep of FLASH budgets. Every cell is
stored in OUT/raw.json as soon as it is measured, and a rerun skips measured cells, so the
study can be stopped and continued.

    python -m bench.paper_study --out results/paper_study            # the committed run
    python -m bench.paper_study --models mobilenet_v1 --episodes 10 --finetune-epochs 1  # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import micromix as mm
from bench.common import FLOAT_CMD, add_qat_recipe_arg, float_path
from micromix.baselines import best_fitting_8bit
from micromix.budget import Budget
from micromix.data import load_dataset
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.models import create_from_config
from micromix.policy import Policy
from micromix.quant.finetune import FinetuneConfig, finetune
from micromix.quant.kmeans import kmeans_flash_bytes, kmeans_quantize
from micromix.quant.recipe import RECIPES
from micromix.strategies import SearchConfig, search
from micromix.train import FitRun, evaluate, fit, float_recipe, load_model

# What a cell's RAM figure means; raw.json files from before the scratch term lack it.
RAM_MODEL = "arena+scratch"


class Study:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.raw_path = self.out / "raw.json"
        self.raw = json.loads(self.raw_path.read_text()) if self.raw_path.exists() else {}
        self.data = load_dataset("fashion_mnist")

    def cell(self, key: str, fn):
        """Measure `fn()` once; the result is saved at once so an interrupted study resumes."""
        if key in self.raw:
            return self.raw[key]
        meta = self.raw.setdefault("_meta", {})
        if meta.get("ram_model") != RAM_MODEL:
            if any(not k.startswith("_") for k in self.raw):
                sys.exit(
                    f"{self.raw_path} was measured with the arena-only RAM model (before the "
                    "kernels' scratch was counted); render it with --tables-only or use a new --out."
                )
            meta["ram_model"] = RAM_MODEL
        t0 = time.time()
        print(f"== {key}", flush=True)
        value = fn()
        value["seconds"] = round(time.time() - t0, 1)
        self.raw[key] = value
        self.raw_path.write_text(json.dumps(self.raw, indent=1))
        print(f"   {value}", flush=True)
        return value

    def qat(self, model, policy: Policy, graph) -> dict:
        a = self.args
        run = FinetuneConfig(epochs=a.finetune_epochs, seed=a.seed, progress=False)
        q = finetune(model, policy, self.data.train, a.qat_recipe, run, graph=graph)
        rep = memory_report(graph, policy)
        return {
            "test_acc": evaluate(q, self.data.test),
            "flash": rep.flash_bytes,
            "ram": rep.ram_bytes,
        }

    def searched(
        self,
        model,
        graph,
        budget: Budget,
        strategy: str,
        tag: str,
        episodes: int | None = None,
        weights_only: bool = False,
    ) -> dict:
        a = self.args
        from dataclasses import replace

        from micromix.strategies import DDPGConfig, create

        n = episodes or a.episodes
        kw = {"weights_only": weights_only}
        if strategy in ("haq", "random"):
            kw["episodes"] = n
        if strategy == "haq":
            kw["agent"] = replace(DDPGConfig(), warmup=min(a.warmup, max(1, n // 3)))
        res = search(
            model,
            self.data,
            budget,
            create(strategy, **kw),
            SearchConfig(
                run_dir=self.out / "runs" / tag,
                seed=a.seed,
                resume=True,
                force=True,
                progress=False,
                plots=False,
            ),
            graph=graph,
        )
        out = self.qat(model, res.policy, graph)
        out.update(
            heldout_acc=res.accuracy,
            search_score=res.search_score,
            policy=res.policy.to_json(),
            utilization=res.utilization,
        )
        return out

    def model(self, name: str) -> None:
        a = self.args
        model, _ = load_model(float_path(name))
        graph = trace(model)
        ref = memory_report(graph, Policy.uniform(graph, 8))
        self.cell(
            f"{name}/float",
            lambda: {
                "test_acc": evaluate(model, self.data.test),
                "flash": ref.flash_bytes,
                "ram": ref.ram_bytes,
            },
        )
        flash_only = Budget.parse(f"{a.flash}x", None, reference=ref)
        both = Budget.parse(f"{a.flash}x", f"{a.ram}x", reference=ref)

        if "A" in a.tables:
            # Table A: weights only (activations at 8 bits), FLASH 0.48x.
            haq_a = self.cell(
                f"{name}/A/haq",
                lambda: self.searched(
                    model, graph, flash_only, "haq", f"{name}-A-haq", weights_only=True
                ),
            )
            wbits = haq_a["policy"]["weights"]

            def kmeans_cell() -> dict:
                km = kmeans_quantize(model, wbits, graph, act_bits=8)
                cfg = RECIPES[a.qat_recipe].train_config(a.finetune_epochs, seed=a.seed)
                fit(km, self.data.train, cfg, FitRun(progress=False))
                fl = kmeans_flash_bytes(graph, wbits)
                return {
                    "test_acc": evaluate(km, self.data.test),
                    "flash": fl["flash_bytes"],
                    "codebook_bytes": fl["codebook_bytes"],
                }

            self.cell(f"{name}/A/kmeans", kmeans_cell)
            self.cell(
                f"{name}/A/uniform_w4a8",
                lambda: self.qat(model, Policy.uniform(graph, 4, 8), graph),
            )

        if "B" in a.tables:
            # Table B: FLASH 0.48x + RAM 0.42x.
            for strategy in ("haq", "rule", "ilp"):
                self.cell(
                    f"{name}/B/{strategy}",
                    lambda s=strategy: self.searched(model, graph, both, s, f"{name}-B-{s}"),
                )
            self.cell(
                f"{name}/B/uniform_w4a4",
                lambda: self.qat(model, Policy.uniform(graph, 4, 4), graph),
            )

            def fitting_8bit() -> dict:
                cfg = model.micromix_config
                best = best_fitting_8bit(
                    name, both, in_channels=cfg["in_channels"], num_classes=cfg["num_classes"]
                )
                small = create_from_config(best["model_config"])
                data = load_dataset("fashion_mnist", resolution=best["model_config"]["resolution"])
                fit(
                    small,
                    data.train,
                    float_recipe(a.float_epochs, seed=a.seed),
                    FitRun(progress=False),
                )
                g = trace(small)
                q = finetune(
                    small,
                    Policy.uniform(g, 8),
                    data.train,
                    a.qat_recipe,
                    FinetuneConfig(epochs=a.finetune_epochs, seed=a.seed, progress=False),
                    graph=g,
                )
                return {
                    "test_acc": evaluate(q, data.test),
                    **best["memory"],
                    "flash": best["memory"]["flash_bytes"],
                    "ram": best["memory"]["ram_bytes"],
                    "model_config": best["model_config"],
                    "float_epochs": a.float_epochs,
                }

            self.cell(f"{name}/B/best_8bit_fit", fitting_8bit)

        if name in a.pareto:
            for ratio in a.pareto_flash:
                b = Budget.parse(f"{ratio}x", f"{a.ram}x", reference=ref)
                for strategy in a.pareto_strategies:
                    eps = a.pareto_episodes if strategy in ("haq", "random") else None
                    self.cell(
                        f"{name}/pareto/{strategy}/{ratio}",
                        lambda s=strategy, b=b, r=ratio, e=eps: self.searched(
                            model, graph, b, s, f"{name}-P-{s}-{r}", e
                        ),
                    )

    def write_tables(self) -> None:
        from bench.bench_tables import write_markdown  # noqa: PLC0415 (matplotlib only here)

        write_markdown(self.raw, self.out, self.args, FLOAT_CMD, RAM_MODEL)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="+", default=["mobilenet_v1", "mobilenet_v2", "mnasnet"])
    p.add_argument("--out", default="results/paper_study")
    p.add_argument("--flash", type=float, default=0.48)
    p.add_argument("--ram", type=float, default=0.42)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--finetune-epochs", type=int, default=2)
    add_qat_recipe_arg(p)
    p.add_argument(
        "--float-epochs", type=int, default=10, help="for the best-fitting 8-bit network"
    )
    p.add_argument("--tables", nargs="*", default=["A", "B"], choices=["A", "B"])
    p.add_argument("--pareto", nargs="*", default=["mobilenet_v1"])
    p.add_argument("--pareto-flash", nargs="*", type=float, default=[0.3, 0.4, 0.48, 0.6, 0.75])
    p.add_argument("--pareto-strategies", nargs="*", default=["haq", "rule", "ilp", "uniform"])
    p.add_argument("--pareto-episodes", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tables-only", action="store_true", help="render the tables from raw.json")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    study = Study(args)
    t0 = time.time()
    if not args.tables_only:
        for name in args.models:
            study.model(name)
    study.raw.setdefault("_meta", {}).update(
        {
            "machine": platform.platform(),
            "cores": torch.get_num_threads(),
            "torch": torch.__version__,
            "micromix": mm.__version__,
            "argv": sys.argv,
            "last_call_seconds": round(time.time() - t0, 1),
        }
    )
    study.raw_path.write_text(json.dumps(study.raw, indent=1))
    study.write_tables()
    return 0


if __name__ == "__main__":
    sys.exit(main())
