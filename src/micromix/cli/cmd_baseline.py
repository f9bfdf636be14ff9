"""`micromix baseline`: the paper's baselines (uniform bits, best fitting 8-bit net, k-means)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import distributed as dist
from ..baselines import RESOLUTIONS, UNIFORM, WIDTHS, best_fitting_8bit, uniform_policies
from ..budget import Budget
from ..errors import MicromixError
from ..files import write_json
from ..memory import memory_report
from ..models import create_from_config
from ..policy import Policy
from ..quant.finetune import finetune, save_qat
from ..quant.kmeans import kmeans_flash_bytes, kmeans_quantize
from ..quant.prepare import calibrate, calibration_batches, reestimate_bn
from ..rundir import check_run_dir, open_run_dir
from ..train import FitRun, evaluate, fit, float_recipe, save_model
from .cmd_finetune import (
    add_qat_args,
    add_recipe_args,
    finetune_config_from_args,
    recipe_from_args,
)
from .common import (
    add_budget_args,
    add_common,
    add_data_args,
    add_model_args,
    data_for,
    load_model_for,
    positive_int,
    resolve_device,
    spec_json,
    traced,
)

NAME = "baseline"
HELP = "baselines: uniform policies, the best 8-bit net that fits, k-means weights"
NOT_RESULT = ("run_dir", "resume", "force")  # options that do not change a baseline's result


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    u = sub.add_parser("uniform", help="QAT fine-tune under uniform policies (8/8, 4/4, ...)")
    u.add_argument("--checkpoint", required=True, help="float model.pt from `micromix train`")
    u.add_argument(
        "--configs", default=",".join(UNIFORM), help=f"comma list of {', '.join(UNIFORM)}"
    )
    f = sub.add_parser("fit8", help="largest 8-bit width x resolution that fits the budget")
    f.add_argument("--checkpoint", required=True, help="float model.pt: architecture and reference")
    add_budget_args(f)
    f.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="width grid")
    f.add_argument("--resolutions", default=",".join(map(str, RESOLUTIONS)), help="resolution grid")
    f.add_argument("--train", action="store_true", help="also train it (float, then 8-bit QAT)")
    f.add_argument(
        "--float-epochs", type=positive_int, default=15, help="float epochs with --train"
    )
    k = sub.add_parser("kmeans", help="HAQ-style k-means codebook weights, fine-tuned")
    k.add_argument("--checkpoint", required=True, help="float model.pt from `micromix train`")
    k.add_argument(
        "--wbits", type=positive_int, default=2, help="codebook of 2^wbits centroids per layer"
    )
    k.add_argument("--abits", type=int, default=8, help="activation bits (0: float activations)")
    k.add_argument(
        "--centroid-bytes",
        type=int,
        choices=(2, 4),
        default=4,
        help="4 (float32) or 2 (int16) per centroid",
    )
    for s in (u, f, k):
        add_model_args(s, default=None)
        add_data_args(s)
        add_qat_args(s, weight_range=s is not k)
        add_recipe_args(s)
        add_common(s)


def run(args: argparse.Namespace) -> int:
    from ..stored import write_graph

    device = dist.init_from_env(resolve_device(args.device))
    run_dir = Path(args.run_dir)
    command = f"baseline {args.kind}"
    check_run_dir(run_dir, command, resume=args.resume, force=args.force)
    model = load_model_for(args)
    graph = traced(args, model)
    baseline = BASELINES[args.kind]  # argparse allows only its keys
    recipe_from_args(args)  # a bad recipe setting is refused here
    baseline.check(args, graph)  # user mistakes surface before anything is written
    if dist.is_main():
        settings = {
            k: _plain(v)
            for k, v in vars(args).items()
            if not k.startswith("_") and k not in NOT_RESULT
        }
        settings["model_spec"] = spec_json(model)
        open_run_dir(run_dir, command, settings, resume=args.resume, force=args.force)
        write_graph(run_dir, graph)
    dist.barrier()
    result = baseline.run(args, model, graph, device, run_dir)
    if dist.is_main():
        write_json(run_dir / f"{args.kind}.json", result)
    dist.shutdown()
    return 0


def check_uniform(args: argparse.Namespace, graph) -> None:
    uniform_policies(graph, _names(args.configs))


def check_fit8(args: argparse.Namespace, graph) -> None:
    if not (args.flash or args.ram or args.target):
        raise MicromixError("fit8 needs a budget: give --flash, --ram or --target.")
    _numbers(args.widths, float, "--widths")
    _numbers(args.resolutions, int, "--resolutions")


def check_kmeans(args: argparse.Namespace, graph) -> None:
    if args.wbits not in range(1, 9) or args.abits not in (0, *range(2, 9)):
        raise MicromixError("k-means needs --wbits 1..8 and --abits 0 (float) or 2..8.")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _numbers(text: str, kind, flag: str) -> tuple:
    try:
        vals = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise MicromixError(
            f"{flag} must be a comma-separated list of numbers, got {text!r}."
        ) from None
    if not vals or min(vals) <= 0:
        raise MicromixError(f"{flag} must list positive numbers, got {text!r}.")
    return vals


def _plain(v):
    return v if isinstance(v, (str, int, float, bool, type(None))) else str(v)


def _finetune(args, model, policy: Policy, graph, train, device, checkpoint: Path):
    config = finetune_config_from_args(args, device, checkpoint)
    return finetune(model, policy, train, recipe_from_args(args), config, graph=graph)


def run_uniform(args, model, graph, device, run_dir: Path) -> dict:
    policies = uniform_policies(graph, _names(args.configs))
    data = data_for(args, model)
    rows = {"float": {"test_acc": evaluate(model.to(device), data.test, device=device)}}
    for name, pol in policies.items():
        t0 = time.time()
        sub = run_dir / name.replace("/", "-")
        q = _finetune(args, model, pol, graph, data.train, device, sub / "checkpoint.pt")
        rep = memory_report(graph, pol)
        rows[name] = {
            "test_acc": evaluate(q, data.test, device=device),
            "heldout_acc": evaluate(q, data.heldout, device=device),
            "flash_bytes": rep.flash_bytes,
            "ram_bytes": rep.ram_bytes,
            "seconds": time.time() - t0,
        }
        if dist.is_main():
            save_qat(sub / "qat.pt", q, metrics=rows[name])
            print(
                f"{name:>6}: test {rows[name]['test_acc']:.2f}%, FLASH {rep.flash_bytes:,} B, RAM {rep.ram_bytes:,} B"
            )
    return rows


def run_fit8(args, model, graph, device, run_dir: Path) -> dict:
    ref = memory_report(graph, Policy.uniform(graph, 8))
    budget = Budget.parse(args.flash, args.ram, target=args.target, reference=ref)
    mc = getattr(model, "micromix_config", None)
    if mc is None:
        raise MicromixError(
            "fit8 scales a zoo model's width and resolution; this model is not from the zoo."
        )
    fixed = {k: mc[k] for k in ("in_channels", "num_classes", "dropout")}
    widths = _numbers(args.widths, float, "--widths")
    resolutions = _numbers(args.resolutions, int, "--resolutions")
    best = best_fitting_8bit(mc["name"], budget, widths=widths, resolutions=resolutions, **fixed)
    cfg = best["model_config"]
    print(
        f"best 8-bit {cfg['name']} that fits: width {cfg['width']}, resolution {cfg['resolution']} "
        f"({best['macs']:,} MACs, FLASH {best['memory']['flash_bytes']:,} B, RAM {best['memory']['ram_bytes']:,} B)"
    )
    if not args.train:
        return best
    net = create_from_config(cfg)
    data = data_for(args, cfg)
    fcfg = replace(float_recipe(args.float_epochs, seed=args.seed), max_batches=args.max_batches)
    fit(
        net,
        data.train,
        fcfg,
        FitRun(device=device, checkpoint=run_dir / "float-checkpoint.pt", resume=args.resume),
    )
    best["float_test_acc"] = evaluate(net, data.test, device=device)
    if dist.is_main():
        save_model(run_dir / "float.pt", net.cpu())
    g = traced(args, net)
    q = _finetune(args, net, Policy.uniform(g, 8), g, data.train, device, run_dir / "checkpoint.pt")
    best["test_acc"] = evaluate(q, data.test, device=device)
    best["heldout_acc"] = evaluate(q, data.heldout, device=device)
    if dist.is_main():
        save_qat(run_dir / "qat.pt", q, metrics={"test_acc": best["test_acc"]})
        print(f"8-bit test accuracy {best['test_acc']:.2f}% (float {best['float_test_acc']:.2f}%)")
    return best


def run_kmeans(args, model, graph, device, run_dir: Path) -> dict:
    data = data_for(args, model)
    km = kmeans_quantize(model, args.wbits, graph, act_bits=args.abits or None).to(device)
    if args.abits:
        calibrate(km, data.train, device=device)
    else:
        reestimate_bn(km, calibration_batches(data.train, 4, 128, device))
    fit(
        km,
        data.train,
        finetune_config_from_args(args, device, None).train_config(recipe_from_args(args)),
        FitRun(
            device=device, checkpoint=run_dir / "checkpoint.pt", resume=args.resume, desc="kmeans"
        ),
    )
    flash = kmeans_flash_bytes(graph, args.wbits, args.centroid_bytes)
    uniform = memory_report(
        graph, Policy.uniform(graph, args.wbits if args.wbits in (2, 4, 8) else 8)
    )
    result = {
        "wbits": args.wbits,
        "abits": args.abits or None,
        "test_acc": evaluate(km, data.test, device=device),
        "heldout_acc": evaluate(km, data.heldout, device=device),
        **flash,
        "uniform_flash_bytes_same_bits": uniform.flash_bytes,
    }
    if dist.is_main():
        print(
            f"k-means W{args.wbits}: test {result['test_acc']:.2f}%, FLASH {flash['flash_bytes']:,} B "
            f"(indices {flash['index_bytes']:,} + codebooks {flash['codebook_bytes']:,} + parameters {flash['param_bytes']:,})"
        )
    return result


@dataclass(frozen=True)
class Baseline:
    """One `micromix baseline KIND`: its checks (before anything is written) and its job."""

    check: Callable[[argparse.Namespace, Any], None]
    run: Callable[[argparse.Namespace, Any, Any, Any, Path], dict]


# KIND -> baseline; the sub-commands are its keys.
BASELINES: dict[str, Baseline] = {
    "uniform": Baseline(check_uniform, run_uniform),
    "fit8": Baseline(check_fit8, run_fit8),
    "kmeans": Baseline(check_kmeans, run_kmeans),
}
