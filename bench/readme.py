"""The measured blocks of the README (the demo run and the results table) and of
results/mlperf_tiny.md (its speed table), rendered from results/*.json: the one place their
figures come from, so the documents and the result files cannot disagree.

    python -m bench.readme            # print the blocks
    python -m bench.readme --write    # replace each block between its document's markers
    python -m bench.readme --check    # exit 1 when a block is not the rendering
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench.common import ROOT, md_table
from micromix.files import write_text

RESULTS = ROOT / "results"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: python -m bench.readme --write -->", f"<!-- /{name} -->"


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _qat() -> tuple[str, str, str]:
    d = _load("qat_accuracy.json")["mobilenet_v1"]
    cells = ", ".join(
        f"{k.upper().replace('_TABLE_B', ' Table B')} {d[k]['new']:.2f} %"
        for k in ("w8a8", "w4a4", "w2a4", "ilp_table_b")
    )
    noise = _load("qat_seed_noise.json")["mobilenet_v1"]["ilp_table_b"]["new"]
    what = "QAT, MobileNetV1-0.25, 3 epochs (`new` recipe)"
    return (
        what,
        f"{cells} (float {d['float']:.2f} %); 5 seeds: stdev {noise['stdev']:.2f}",
        "qat_accuracy.json",
    )


def _search() -> tuple[str, str, str]:
    diffs = []
    for model, cells in _load("search_study.json").items():
        if model.startswith("_"):  # _meta: how it was measured
            continue
        for cell in cells.values():
            if {"haq", "rule", "ilp"} <= set(cell):
                best = max(cell["rule"]["test"], cell["ilp"]["test"])
                diffs.append(round(cell["haq"]["test"] - best, 2))
    within = sum(d >= -0.1 for d in diffs)
    what = "search: haq vs the better of rule / ilp, same final QAT"
    res = f"within 0.1 points in {within} of {len(diffs)} cells, mean {statistics.mean(diffs):+.2f}"
    return what, res, "search_study.json"


def _mcu() -> tuple[str, str, str]:
    d = _load("mcu_cost.json")
    ref = d["cmsis_nn_s8"]["est_cycles"]
    parts = [
        f"{k.removeprefix('micromix_').upper().replace('MIXED', 'mixed')} "
        f"{d[k]['est_cycles'] / ref:.2f}x"
        for k in ("micromix_w8a8", "micromix_mixed", "micromix_w4a4", "micromix_w2a2")
    ]
    what = "Cortex-M4 est. cycles vs CMSIS-NN s8 (demo net, -O2, qemu)"
    return what, ", ".join(parts), "mcu_cost.json"


def _mlperf() -> tuple[str, str, str]:
    d = _load("mlperf_tiny.json")
    parts = []
    for task, r in d.items():
        if task.startswith("_"):
            continue
        w = r["micromix_w8a8"]
        ram = w.get("ram_auto", w["ram"]) / r["tflm"]["arena"]
        stream = w.get("ram_stream", w["ram"]) / r["tflm"]["arena"]
        streamed = f" ({stream:.2f}x streamed)" if f"{stream:.2f}" != f"{ram:.2f}" else ""
        parts.append(
            f"{task.upper()} RAM {ram:.2f}x{streamed}, FLASH {w['flash'] / r['tflm']['flash']:.2f}x"
        )
    what = (
        "MLPerf Tiny W8/A8 vs TFLite Micro (arena, int8 file; micromix's default schedule, "
        "streamed: `--schedule stream`)"
    )
    return what, "; ".join(parts), "mlperf_tiny.json"


def _float_recipe() -> tuple[str, str, str]:
    rows = _load("float_recipe.json")["rows"]
    sq = {r["recipe"]: r["test_acc"] for r in rows if r["model"].startswith("squeezenet")}
    old = next(v for k, v in sq.items() if k.startswith("old default"))
    new = next(v for k, v in sq.items() if "run" in k)
    what = "float training of a BN-free SqueezeNet (3 epochs, 20k images)"
    return what, f"old default {old:.2f} %, `micromix run`'s probe {new:.2f} %", "float_recipe.json"


def _workers() -> tuple[str, str, str]:
    r = _load("search_workers.json")["rows"]["2"]
    what = "search evaluations in parallel (Ray), 2 workers"
    return (
        what,
        f"{r['speedup']:.2f}x the evaluations per hour of 1, same policy",
        "search_workers.json",
    )


ROWS = (_qat, _search, _mcu, _mlperf, _float_recipe, _workers)


def results_table() -> str:
    rows = [(what, res, f"`results/{src}`") for what, res, src in (f() for f in ROWS)]
    return "\n".join(md_table(("what", "measured", "file"), rows, "lll"))


def demo_table() -> str:
    """The last run recorded in results/demo.json (the quick preset): its stages, time and log,
    with the machine; then the haq run it replaced and the study cell that justifies it."""
    d = _load("demo.json")
    run = d["runs"][-1]
    st = run["stages"]
    ex = st.get("export", {})
    export = "checked"
    if "self-test images bit-identical" in ex:
        export = (
            f"{ex['self-test images bit-identical']} images bit-identical; objects hold FLASH "
            f"{ex['const data in the object file (B)']:,} B and RAM "
            f"{ex['arena + scratch in the object file (B)']:,} B = the memory model"
        )
    rows = [
        ("float model (shipped checkpoint)", f"{st['float']['test_acc']:.2f} % test"),
        ("search", f"search score {st['search']['search_score']:.2f} % (held-out)"),
        ("QAT fine-tune, 3 epochs", f"{st['finetune']['test_acc']:.2f} % test"),
        (
            "integer model (numpy)",
            f"{st['integer']['test_acc']:.2f} % test, {st['integer']['agreement']:.2f} % same "
            "predictions as fake-quant",
        ),
        ("C export + checks", export),
    ]
    keys = ("float", "search", "finetune", "integer", "export")
    rows = [(a, b, f"{st[k]['seconds']:,.0f}") for (a, b), k in zip(rows, keys)]
    t = run["time_v"]
    lines = md_table(("stage", "result", "seconds"), rows, "llr")
    lines += [
        "",
        f"Wall {t['wall']}, CPU {t['user_s'] + t['sys_s']:.0f} s, peak RSS "
        f"{t['max_rss_kb'] / 1e6:.2f} GB; a redirected log of {run['log_lines_redirected']} lines. "
        f"Machine: {run.get('machine', d['machine'])}. Command: `{run['command']}` "
        "(`results/demo.json`).",
    ]
    haq = next((r for r in reversed(d["runs"][:-1]) if "idle" in r["name"]), None)
    if haq is not None:
        cell = _load("search_study.json")["mobilenet_v1"]["table_b"]
        study = ", ".join(f"{k} {cell[k]['test']:.2f} %" for k in ("rule", "haq", "ilp"))
        lines += [
            "",
            f"The same demo with `--strategy haq` (16 episodes): wall {haq['time_v']['wall']}, "
            f"{haq['stages']['finetune']['test_acc']:.2f} % test, on the same idle machine. On "
            f"this budget cell the three strategies tie after the same 3-epoch QAT ({study}; "
            "`results/search_study.json`).",
        ]
    return "\n".join(lines)


def mixed_build(net: str) -> str:
    """The name of a network's mixed build in results/mcu_cost.json (the demo's is the rule
    policy, each MLPerf task's its ILP policy file)."""
    return "micromix_mixed" if net == "demo" else f"micromix_{net}_mixed"


def speed_table() -> str:
    """results/mlperf_tiny.md's speed table: each MLPerf Tiny task's (and the demo's) estimated
    Cortex-M4 cycles from results/mcu_cost.json, beside CMSIS-NN s8 and the published times."""
    d = _load("mcu_cost.json")
    mhz, published = d["clock_mhz"]["cortex-m4"], d["published_m4_ms"]
    rows = []
    for net in (*published, "demo"):
        builds = d["networks"][net]["cortex-m4"]
        w8, ref = builds["micromix_w8a8"], builds["cmsis_nn_s8"]["est_cycles"]
        mixed = builds[mixed_build(net)]
        pub = " / ".join(f"{v:g}" for v in published[net]) if net in published else "-"
        rows.append((
            net, f"{w8['est_cycles']:,}", f"{ref:,}", f"{w8['est_cycles'] / ref:.3f}",
            f"{w8['est_cycles'] / (mhz * 1e3):.1f}", pub, f"{mixed['est_cycles']:,}",
            f"{mixed['est_cycles'] / w8['est_cycles']:.3f}",
            f"{w8['kernel_text']:,} / {mixed['kernel_text']:,}",
        ))  # fmt: skip
    head = (
        "task", "micromix W8/A8", "CMSIS-NN s8", "ratio", "est. ms", "published best / TFLM ms",
        "mixed (qemu)", "mixed / W8/A8", "kernel .text W8/A8 / mixed B",
    )  # fmt: skip
    return "\n".join(md_table(head, rows, "lrrrrrrrr"))


def memory_table() -> str:
    """results/mlperf_tiny.md's memory table: TFLM's arena and FLASH beside micromix's exact
    RAM and FLASH for each task, from results/mlperf_tiny.json."""
    rows = []
    for task, r in _load("mlperf_tiny.json").items():
        if task.startswith("_"):
            continue
        tflm, w8, mx = r["tflm"], r["micromix_w8a8"], r["micromix_mixed"]
        rows.append((
            task, f"{tflm['arena']:,}", f"{tflm['flash']:,}", f"{w8['ram']:,}",
            f"{w8['ram_auto']:,} ({w8['ram_auto'] / tflm['arena']:.2f}x)",
            f"{int(0.7 * tflm['arena']):,}", f"{w8['flash']:,}",
            f"{mx['ram']:,} / {mx['ram_auto']:,}", f"{mx['flash']:,}",
            f"{r['import_max_rel_error']:.1e}",
        ))  # fmt: skip
    head = (
        "task", "TFLM arena", "TFLM flash", "W8/A8 RAM layer", "W8/A8 RAM auto (/ TFLM)",
        "0.7x arena", "W8/A8 FLASH", "mixed RAM layer / auto", "mixed FLASH", "import rel. err",
    )  # fmt: skip
    return "\n".join(md_table(head, rows))


TEXT_LIMIT = 24 * 1024  # issue 24's kernel .text goal per build


def _ok(met: bool) -> str:
    return "met" if met else "**NOT met**"


def _speed_goals(d: dict[str, Any]) -> list[str]:
    """The speed goals, judged from results/mcu_cost.json (Cortex-M4 estimated cycles)."""
    mhz, published = d["clock_mhz"]["cortex-m4"], d["published_m4_ms"]
    ratio, mixed, text = {}, {}, {}
    for net in (*published, "demo"):
        b = d["networks"][net]["cortex-m4"]
        w8, mx = b["micromix_w8a8"], b[mixed_build(net)]
        ratio[net] = w8["est_cycles"] / b["cmsis_nn_s8"]["est_cycles"]
        mixed[net] = mx["est_cycles"] / w8["est_cycles"]
        text[net] = max(w8["kernel_text"], mx["kernel_text"])
    errs = {k: v["rel_error"] for k, v in d["cost_model_check"].items()}

    def cells(vals: dict[str, float], fmt: str) -> str:
        return ", ".join(f"{k} {format(v, fmt)}" for k, v in vals.items())

    best = {n: d["networks"][n]["cortex-m4"]["micromix_w8a8"]["est_cycles"] / (mhz * 1e3)
            for n in ("kws", "vww", "ic")}  # fmt: skip
    return [
        f"- W8/A8 <= 0.6x CMSIS-NN s8: {_ok(max(ratio.values()) <= 0.6)} ({cells(ratio, '.3f')})",
        f"- every mixed policy <= 1.0x its W8/A8: {_ok(max(mixed.values()) <= 1.0)} "
        f"({cells(mixed, '.3f')})",
        f"- kernel .text <= 24 KB per build: {_ok(max(text.values()) <= TEXT_LIMIT)} "
        f"(largest build of each: {cells(text, ',')} B)",
        "- est. ms at 120 MHz below the best published (kws / vww / ic "
        f"{' / '.join(f'{published[n][0]:g}' for n in best)} ms): "
        + "; ".join(f"{n} {_ok(v < published[n][0])} ({v:.2f})" for n, v in best.items()),
        f"- cost model within 5 % of each measured network and build: "
        f"{_ok(max(map(abs, errs.values())) <= 0.05)} "
        f"({min(errs.values()):+.1%} .. {max(errs.values()):+.1%})",
    ]


def goals_block() -> str:
    """results/mlperf_tiny.md's goals: each of issue 24's goals judged from the result files,
    so the verdicts cannot go stale when the figures move."""
    lines, tasks = [], _load("mlperf_tiny.json")
    for task, r in tasks.items():
        if task.startswith("_"):
            continue
        w, t = r["micromix_w8a8"], r["tflm"]
        ram, stream = w["ram_auto"] / t["arena"], w["ram_stream"] / t["arena"]
        lines.append(
            f"- {task}: import rel. error {r['import_max_rel_error']:.1e} "
            f"({_ok(r['import_max_rel_error'] <= 1e-4)}, <= 1e-4); RAM {ram:.2f}x TFLM's arena "
            f"({_ok(ram <= 0.7)}, <= 0.7x; streamed {stream:.2f}x); FLASH {w['flash']:,} B vs "
            f"{t['flash']:,} B ({_ok(w['flash'] <= t['flash'])}); arg-max agreement with TFLM "
            f"int8 {w['argmax_agreement_tflm_int8']:.2f}, largest logit difference to the float "
            f"import {w['max_logit_diff_vs_float_import']:.2f} (TFLM int8: "
            f"{w['tflm_int8_max_logit_diff_vs_float_import']:.2f}; for information)"
        )
    quarter = []
    for task in ("vww", "ic"):
        r = tasks[task]
        best = min(r["micromix_w8a8"]["ram_auto"], r["micromix_w8a8"]["ram_stream"])
        quarter.append(
            f"{task} {_ok(best <= 0.25 * r['tflm']['arena'])} ({best / r['tflm']['arena']:.2f}x)"
        )
    lines.append(
        f"- RAM <= 0.25x TFLM's arena with a schedule (auto or stream): {'; '.join(quarter)}"
    )
    return "\n".join(lines + _speed_goals(_load("mcu_cost.json")))


# Each document's blocks, by marker name.
BLOCKS = {
    "README.md": {"demo": demo_table, "results": results_table},
    "results/mlperf_tiny.md": {"memory": memory_table, "speed": speed_table, "goals": goals_block},
}


def _replace(text: str, doc: str, name: str, block: str) -> str:
    begin, end = _markers(name)
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no {begin} ... {end} block.")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{block}\n{end}{rest.split(end, 1)[1]}"


def render(doc: str, text: str) -> str:
    """`text` (the document `doc`) with each of its blocks replaced by its rendering."""
    for name, fn in BLOCKS[doc].items():
        text = _replace(text, doc, name, fn())
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update README.md in place")
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = ap.parse_args(argv)
    stale = []
    for doc in BLOCKS:
        path = ROOT / doc
        text = path.read_text()
        new = render(doc, text)
        if args.write and new != text:
            write_text(path, new)
        stale += [doc] if new != text else []
    if args.check and stale:
        print(f"{', '.join(stale)}: measured blocks are stale: run python -m bench.readme --write")
        return 1
    if not (args.check or args.write):
        print("\n\n".join(fn() for blocks in BLOCKS.values() for fn in blocks.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
