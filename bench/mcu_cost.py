"""Cost on the Cortex-M itself: executed instructions per layer and per inference under qemu.

MobileNetV1-0.25 28x28 (the shipped float model, calibrated per policy without fine-tuning:
instruction counts do not depend on accuracy) is exported for W8/A8, the demo's mixed policy
(rule, 0.48x FLASH / 0.42x RAM), W4/A4 and W2/A2; CMSIS-NN s8 runs the same 29 layer shapes.
Every build uses the same compiler and flags, runs under qemu-system-arm with a TCG plugin
(bench/mcu/count.c) that counts every executed instruction and estimates Cortex-M4 cycles;
the harness calls a marker between layers, so each layer is one segment. The counter is
validated first on a hand-counted loop (bench/mcu/counter_check.c: 403 instructions, 705
cycles). Each micromix image also checks its output against the numpy reference.

    python -m bench.mcu_cost [--cmsis-nn ../shared/third_party/cmsis-nn]

Writes results/mcu_cost.md, results/mcu_cost.json and the per-layer cost table
src/micromix/assets/mcu_cost_table.json (micromix.cost loads it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MCU = HERE / "mcu"
CHECK_EXPECTED = (403, 705)  # counter_check.c, counted by hand (see its comment)
GCC = "arm-none-eabi-gcc"


class BenchError(RuntimeError):
    pass


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise BenchError(
            f"`{' '.join(map(str, cmd))[:300]}` failed:\n{(r.stdout + r.stderr)[-3000:]}"
        )
    return r.stdout + r.stderr


def build_plugin(work: Path) -> Path:
    """libcount.so from count.c against the minimal API-v1 header."""
    work.mkdir(parents=True, exist_ok=True)
    so = work / "libcount.so"
    run(["gcc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra",
         "-o", str(so), str(MCU / "count.c")], work)  # fmt: skip
    return so


@dataclass
class Counts:
    segments: list[tuple[int, int]]  # (instructions, estimated cycles) per segment
    hist: dict[str, int]  # executed instructions per mnemonic
    output: str


def count(elf: Path, plugin: Path, machine: str = "mps2-an386", timeout: float = 600) -> Counts:
    """Run `elf` under qemu with the counting plugin; segments split at `mm_mark` calls."""
    nm = run(["arm-none-eabi-nm", str(elf)], elf.parent)
    m = re.search(r"^([0-9a-f]+) T mm_mark$", nm, re.M)
    if m is None:
        raise BenchError(f"{elf} has no mm_mark function")
    out = elf.with_suffix(".counts")
    cmd = [
        "qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
        "-plugin", f"{plugin},mark=0x{m.group(1)},out={out}",
    ]  # fmt: skip
    text = run(cmd, elf.parent, timeout)
    segs, hist = [], {}
    for line in out.read_text().splitlines():
        p = line.split()
        if p[0] == "seg":
            segs.append((int(p[2]), int(p[3])))
        else:
            hist[p[1]] = int(p[2])
    return Counts(segs, hist, text)


def link(
    work: Path, name: str, sources: list[Path], flags: list[str], extra=(), core="cortex-m4"
) -> Path:
    from micromix.export.cores import core as get_core

    cpu = get_core(core)
    elf = work / f"{name}.elf"
    ld = work / "bench.ld"
    text = (MCU / "bench.ld").read_text()
    ld.write_text(
        text.replace("@FLASH@", f"0x{cpu.flash:08x}").replace("@RAM@", f"0x{cpu.ram:08x}")
    )
    cmd = [GCC, *flags, "-std=c99", "-ffunction-sections", "-nostartfiles", "-T",
           str(ld), "-Wl,--gc-sections", "--specs=nano.specs",
           "--specs=nosys.specs", f"-I{MCU}", "-o", str(elf),
           *map(str, sources), str(MCU / "bench_startup.c"), *extra]  # fmt: skip
    run(cmd, work)
    return elf


def check_counter(work: Path, plugin: Path, flags: list[str], core: str = "cortex-m4") -> None:
    elf = link(work, "counter_check", [MCU / "counter_check.c"], flags, core=core)
    from micromix.export.cores import core as get_core

    got = count(elf, plugin, get_core(core).machine).segments[1]
    if got != CHECK_EXPECTED:
        raise BenchError(f"the counter gives {got} on the hand-counted loop, not {CHECK_EXPECTED}")


# ---- micromix ---------------------------------------------------------------------------


def micromix_elf(imodel, image: np.ndarray, work: Path, flags: list[str], core="cortex-m4") -> Path:
    """The exported model's sources with a marker before every step, linked with bench_main."""
    from micromix.export.cgen import _array_c, library_files

    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    expected = imodel.run(image[None])
    lib = {k: v for k, v in library_files(imodel).items() if k.endswith((".c", ".h"))}
    for name, text in lib.items():
        (src / name).write_text(text)
    model_c = src / "micromix_model.c"
    text = model_c.read_text()
    n = text.count("MM_STEP_BEGIN();")
    assert n == len(imodel.ops), (n, len(imodel.ops))
    text = text.replace("MM_STEP_BEGIN();", "mm_mark();")
    model_c.write_text(
        text.replace('#include "mm_kernels.h"', '#include "mm_kernels.h"\n#include "bench.h"')
    )
    from micromix.export.cgen import hwc, outputs_bytes

    data = (
        _array_c("bench_image", "uint8", hwc(image[None]).reshape(-1))
        + _array_c("bench_expected", "uint8", outputs_bytes(expected).reshape(-1))
    ).replace(" MM_ALIGN1", "")
    (src / "bench_data.c").write_text("#include <stdint.h>\n" + data)
    sources = [src / f for f in sorted(lib) if f.endswith(".c")] + [src / "bench_data.c"]
    return link(
        work,
        "micromix",
        sources,
        [*flags, f"-I{src}", "-Wall", "-Wextra", "-Werror"],
        extra=[MCU / "bench_main.c"],
        core=core,
    )


# ---- CMSIS-NN ---------------------------------------------------------------------------

CMSIS_DIRS = ("ConvolutionFunctions", "NNSupportFunctions", "PoolingFunctions",
              "FullyConnectedFunctions")  # fmt: skip


def cmsis_lib(root: Path, work: Path, flags: list[str]) -> Path:
    """libcmsisnn.a from the int8 sources of the folders the 29 layers need."""
    if not (root / "Include" / "arm_nnfunctions.h").exists():
        raise BenchError(
            f"CMSIS-NN sources not found at {root} (expected Include/arm_nnfunctions.h); "
            "pass --cmsis-nn PATH to a CMSIS-NN checkout."
        )
    objdir = work / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    objs = []
    for d in CMSIS_DIRS:
        for c in sorted((root / "Source" / d).glob("*.c")):
            if re.search(r"f16|f32", c.name):
                continue
            o = objdir / (c.stem + ".o")
            if o.exists() and o.stat().st_mtime > c.stat().st_mtime:
                objs.append(str(o))
                continue
            run(
                [
                    GCC,
                    *flags,
                    "-ffunction-sections",
                    f"-I{root / 'Include'}",
                    "-c",
                    "-o",
                    str(o),
                    str(c),
                ],
                work,
            )
            objs.append(str(o))
    lib = work / "libcmsisnn.a"
    lib.unlink(missing_ok=True)
    run(["arm-none-eabi-ar", "rcs", str(lib), *objs], work)
    return lib


def _bytes(name: str, n: int, seed: int) -> str:
    v = np.random.default_rng(seed).integers(-100, 100, n)
    return f"static const int8_t {name}[{n}] = {{{','.join(map(str, v))}}};\n"


def cmsis_source(graph) -> str:
    """A C harness calling CMSIS-NN s8 on every layer of `graph`, a marker before each."""
    decl, calls = [], []
    sizes = [int(np.prod(o.out_shape)) for o in graph.ops] + [int(np.prod(graph.ops[0].in_shape))]
    big = max(sizes)
    for i, o in enumerate(graph.ops):
        c, h, w = o.in_shape
        oc, oh, ow = o.out_shape
        src, dst = ("buf_a", "buf_b") if i % 2 == 0 else ("buf_b", "buf_a")
        calls.append("    mm_mark();")
        dims = (f"cmsis_nn_dims in_d = {{1, {h}, {w}, {c}}}, out_d = {{1, {oh}, {ow}, {oc}}}, "
                f"b_d = {{1, 1, 1, {oc}}};")  # fmt: skip
        if o.kind == "conv":
            (kh, kw), (sh, sw), (ph, pw) = o.kernel, o.stride, o.padding
            decl.append(_bytes(f"w{i}", int(np.prod(o.weight.shape)), i))
            decl.append(f"static int32_t b{i}[{oc}], m{i}[{oc}], s{i}[{oc}];\n")
            common = f"{{{sw}, {sh}}}, {{{pw}, {ph}}}, {{1, 1}}, {{-128, 127}}"
            if o.is_depthwise:
                calls.append(
                    f"    {{ {dims} cmsis_nn_dims f_d = {{1, {kh}, {kw}, {oc}}};\n"
                    f"      cmsis_nn_dw_conv_params p = {{128, -128, 1, {common}}};\n"
                    f"      cmsis_nn_per_channel_quant_params q = {{m{i}, s{i}}};\n"
                    f"      need(arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &in_d, &f_d, &out_d));\n"
                    f"      ok &= arm_depthwise_conv_wrapper_s8(&ctx, &p, &q, &in_d, {src}, &f_d, w{i}, &b_d, b{i}, &out_d, {dst}) == 0; }}"
                )  # fmt: skip
            else:
                calls.append(
                    f"    {{ {dims} cmsis_nn_dims f_d = {{{oc}, {kh}, {kw}, {c}}};\n"
                    f"      cmsis_nn_conv_params p = {{128, -128, {common}}};\n"
                    f"      cmsis_nn_per_channel_quant_params q = {{m{i}, s{i}}};\n"
                    f"      need(arm_convolve_wrapper_s8_get_buffer_size(&p, &in_d, &f_d, &out_d));\n"
                    f"      ok &= arm_convolve_wrapper_s8(&ctx, &p, &q, &in_d, {src}, &f_d, w{i}, &b_d, b{i}, &out_d, {dst}) == 0; }}"
                )  # fmt: skip
            decl.append(f"#define INIT{i} init_q(m{i}, s{i}, b{i}, {oc});\n")
        elif o.kind == "avgpool":
            (kh, kw) = o.kernel
            calls.append(
                f"    {{ {dims} cmsis_nn_dims f_d = {{1, {kh}, {kw}, 1}};\n"
                f"      cmsis_nn_pool_params p = {{{{{kw}, {kh}}}, {{0, 0}}, {{-128, 127}}}};\n"
                f"      need(arm_avgpool_s8_get_buffer_size({ow}, {c}));\n"
                f"      ok &= arm_avgpool_s8(&ctx, &p, &in_d, {src}, &f_d, &out_d, {dst}) == 0; }}"
            )  # fmt: skip
        elif o.kind == "linear":
            n_in = c * h * w
            decl.append(_bytes(f"w{i}", n_in * oc, i))
            decl.append(f"static int32_t b{i}[{oc}];\n")
            calls.append(
                f"    {{ cmsis_nn_dims in_d = {{1, 1, 1, {n_in}}}, f_d = {{{n_in}, 1, 1, {oc}}}, "
                f"b_d = {{1, 1, 1, {oc}}}, out_d = {{1, 1, 1, {oc}}};\n"
                f"      cmsis_nn_fc_params p = {{128, 0, -128, {{-128, 127}}}};\n"
                f"      cmsis_nn_per_tensor_quant_params q = {{1518500250, -8}};\n"
                f"      cmsis_nn_context fc = {{0, 0}};\n"
                f"      ok &= arm_fully_connected_s8(&fc, &p, &q, &in_d, {src}, &f_d, w{i}, &b_d, b{i}, &out_d, {dst}) == 0; }}"
            )  # fmt: skip
        else:
            raise BenchError(f"no CMSIS-NN call for op kind {o.kind}")
    inits = "\n".join(f"    INIT{i}" for i, o in enumerate(graph.ops) if o.kind == "conv")
    return f"""/* Generated by bench/mcu_cost.py: CMSIS-NN s8 on micromix's layer shapes. */
#include <stdint.h>
#include "arm_nnfunctions.h"
#include "bench.h"

static int8_t buf_a[{big}], buf_b[{big}];
static int16_t scratch[8192];
static cmsis_nn_context ctx = {{scratch, sizeof scratch}};
static int ok = 1;
static void need(int32_t n) {{ if (n > (int32_t)sizeof scratch) ok = 0; }}
static void init_q(int32_t *m, int32_t *s, int32_t *b, int n)
{{
    for (int i = 0; i < n; i++) {{ m[i] = 1518500250 + 4096 * i; s[i] = -8; b[i] = 100 * i - 999; }}
}}
{"".join(decl)}
int main(void)
{{
    for (int i = 0; i < {big}; i++) buf_a[i] = (int8_t)(i * 37);
{inits}
{chr(10).join(calls)}
    mm_mark();
    bench_puts(ok ? "bench: ok\\n" : "bench: CMSIS-NN error\\n");
    return !ok;
}}
"""


def cmsis_elf(graph, root: Path, work: Path, flags: list[str], core="cortex-m4") -> Path:
    work.mkdir(parents=True, exist_ok=True)
    lib = cmsis_lib(root, work, flags)
    (work / "cmsis_net.c").write_text(cmsis_source(graph))
    return link(
        work,
        "cmsis_nn",
        [work / "cmsis_net.c"],
        [*flags, f"-I{root / 'Include'}"],
        extra=[str(lib)],
        core=core,
    )


# ---- networks and report ------------------------------------------------------------------


def layer_type(op, index: int) -> str:
    from micromix.cost import layer_type as lt

    return lt(op, first=index == 0)


def per_layer(graph, counts: Counts, first: int) -> list[dict]:
    """Layer k is segment first + k; the last layer's segment also holds the output copy."""
    rows = []
    for k, o in enumerate(graph.ops):
        ins, cyc = counts.segments[first + k]
        rows.append({"layer": o.name, "type": layer_type(o, k), "macs": int(o.macs),
                     "instructions": ins, "est_cycles": cyc})  # fmt: skip
    return rows


def total(rows: list[dict], counts: Counts, extra: tuple[int, ...]) -> dict:
    ins = sum(r["instructions"] for r in rows) + sum(counts.segments[i][0] for i in extra)
    cyc = sum(r["est_cycles"] for r in rows) + sum(counts.segments[i][1] for i in extra)
    return {"instructions": ins, "est_cycles": cyc, "macs": sum(r["macs"] for r in rows)}


def policies(graph):
    from micromix.budget import Budget
    from micromix.memory import memory_report
    from micromix.policy import Policy
    from micromix.strategies import rule_policy

    ref = memory_report(graph, Policy.uniform(graph, 8))
    return {
        "micromix_w8a8": Policy.uniform(graph, 8),
        "micromix_mixed": rule_policy(graph, Budget.parse("0.48x", "0.42x", reference=ref)),
        "micromix_w4a4": Policy.uniform(graph, 4),
        "micromix_w2a2": Policy.uniform(graph, 2),
    }


def integer_model(model, graph, policy, data):
    """Post-training calibration only: the counts do not depend on accuracy."""
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams

    if data is None:
        return convert(random_qparams(graph, policy, seed=0), graph, policy)
    from micromix.quant import calibrate, prepare

    q = prepare(model, policy, graph)
    calibrate(q, data.train, batches=2)
    return convert(q)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--cmsis-nn", default="../shared/third_party/cmsis-nn", help="CMSIS-NN checkout"
    )
    ap.add_argument("--checkpoint", default="src/micromix/assets/mobilenet_v1_w025_fmnist28.pt")
    ap.add_argument("--opt", default="-O2", help="optimisation flag for every build")
    ap.add_argument("--core", default="cortex-m4")
    ap.add_argument(
        "--builds", default="cmsis_nn_s8,micromix_w8a8,micromix_mixed,micromix_w4a4,micromix_w2a2"
    )
    ap.add_argument("--work", default="runs/bench-mcu")
    ap.add_argument("--md", default="results/mcu_cost.md")
    ap.add_argument("--json", default="results/mcu_cost.json")
    ap.add_argument("--table", default="src/micromix/assets/mcu_cost_table.json")
    args = ap.parse_args(argv)
    import torch

    from micromix.export.cores import core
    from micromix.graph import trace
    from micromix.train import load_model

    for tool in (GCC, "qemu-system-arm", "gcc"):
        if shutil.which(tool) is None:
            print(f"mcu_cost: `{tool}` is not installed.", file=sys.stderr)
            return 2
    builds = args.builds.split(",")
    cmsis_root = Path(args.cmsis_nn).resolve()
    if "cmsis_nn_s8" in builds and not (cmsis_root / "Include" / "arm_nnfunctions.h").exists():
        print(
            f"mcu_cost: no CMSIS-NN sources at {cmsis_root}; pass --cmsis-nn PATH.", file=sys.stderr
        )
        return 2
    cpu = core(args.core)
    flags = [*cpu.flags.split(), args.opt]
    work = Path(args.work).resolve()
    plugin = build_plugin(work)
    check_counter(work, plugin, flags, args.core)
    torch.manual_seed(0)
    model = load_model(args.checkpoint)[0].eval()
    graph = trace(model)
    try:
        from micromix.data import load_dataset

        data = load_dataset("fashion_mnist")
        image = data.test.take(range(1)).images.numpy()[0]
    except Exception:  # noqa: BLE001 - no dataset: random parameters, a random image
        data, image = None, np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    results, layers, hists, text = {}, {}, {}, {}
    pols = policies(graph)
    for name in builds:
        if name == "cmsis_nn_s8":
            elf = cmsis_elf(graph, cmsis_root, work / name, flags, args.core)
            c = count(elf, plugin, cpu.machine)
            rows = per_layer(graph, c, 1)
            extra = ()
        else:
            im = integer_model(model, graph, pols[name], data)
            elf = micromix_elf(im, image, work / name, flags, args.core)
            c = count(elf, plugin, cpu.machine)
            # segments: 1 = input copy, 2.. = steps, the last step's holds the output copy
            rows = per_layer(graph, c, 2)
            for r, o in zip(rows, graph.ops):
                r["bits"] = [im.ops[[x.op.name for x in im.ops].index(o.name)].in_bits[0],
                             pols[name].weights.get(o.name), pols[name].activations[o.output]]  # fmt: skip
            extra = (1,)
            text[name] = kernel_text(elf)
        if "bench: ok" not in c.output:
            raise BenchError(f"{name}: the image did not finish correctly: {c.output[-300:]}")
        results[name] = total(rows, c, extra)
        layers[name] = rows
        hists[name] = c.hist
        print(name, results[name], flush=True)
    text["all"] = kernel_text_all(work, flags)
    write(args, flags, results, layers, hists, text)
    return 0


def kernel_text_all(work: Path, flags: list[str]) -> int:
    """.text bytes of every kernel source compiled whole (all bit combinations)."""
    from micromix.export.cgen import kernel_sources

    d = work / "ktext"
    d.mkdir(parents=True, exist_ok=True)
    files = kernel_sources()
    for f, text in files.items():
        (d / f).write_text(text)
    size = 0
    for f in sorted(files):
        if f.endswith(".c"):
            run([GCC, *flags, "-std=c99", "-c", "-o", f"{f}.o", f], d)
            out = run(["arm-none-eabi-size", "-A", f"{f}.o"], d)
            size += sum(int(p[1]) for p in (ln.split() for ln in out.splitlines())
                        if len(p) >= 2 and p[0].startswith(".text"))  # fmt: skip
    return size


def kernel_text(elf: Path) -> int:
    """Bytes of .text of the kernels' functions (mm_*, not the model or the bench)."""
    out = run(["arm-none-eabi-nm", "-S", str(elf)], elf.parent)
    size = 0
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tT" and p[3].startswith("mm_") and p[3] != "mm_mark":
            size += int(p[1], 16)
    return size


def cost_table(layers: dict[str, list[dict]]) -> dict:
    """Per (layer type, input, weight, output bits): instructions and cycles per MAC, pooled
    over every micromix layer of that kind that the benchmark ran."""
    from micromix.cost import cost_key

    sums: dict[str, list[int]] = {}
    for name, rows in layers.items():
        if not name.startswith("micromix"):
            continue
        for r in rows:
            k = cost_key(r["type"], *r["bits"])
            t = sums.setdefault(k, [0, 0, 0])
            t[0] += r["instructions"]
            t[1] += r["est_cycles"]
            t[2] += r["macs"]
    return {
        k: {"instructions_per_mac": i / m, "cycles_per_mac": c / m, "macs": m}
        for k, (i, c, m) in sorted(sums.items())
    }


def write(args, flags, results, layers, hists, text) -> None:
    # Imported here: the qemu kernel tests load this file alone, outside the bench package.
    from bench.common import md_table

    if args.table and any(n.startswith("micromix") for n in layers):
        Path(args.table).write_text(
            json.dumps(
                {"source": "bench/mcu_cost.py", "flags": " ".join(flags), "core": args.core,
                 "layers": cost_table(layers)}, indent=1) + "\n"
        )  # fmt: skip
    Path(args.json).write_text(json.dumps(
        {"command": "python -m bench.mcu_cost " + " ".join(sys.argv[1:]), "flags": " ".join(flags),
         **results, "layers": layers}, indent=1) + "\n")  # fmt: skip
    gcc = run([GCC, "--version"], Path.cwd()).splitlines()[0]
    base = results.get("cmsis_nn_s8")
    md = [
        "# Cost on the Cortex-M: executed instructions under qemu",
        "",
        f"Command: `python -m bench.mcu_cost {' '.join(sys.argv[1:])}`",
        "",
        f"Compiler: {gcc}, flags `{' '.join(flags)}` for every build (micromix and CMSIS-NN).",
        "MobileNetV1-0.25 28x28 (shipped float model, post-training calibrated per policy; the",
        "counts do not depend on accuracy). One inference, every executed guest instruction counted",
        "by a TCG plugin (bench/mcu/count.c) in qemu-system-arm; the counter reproduces a",
        f"hand-counted loop exactly ({CHECK_EXPECTED[0]} instructions, {CHECK_EXPECTED[1]} cycles).",
        "",
        "Estimated cycles: Cortex-M4 TRM timings per instruction class: 1 for data processing and",
        "every multiply (MUL, MLA, SMLAD, SMULL, SMLAL), 2 for a single load/store (1 when it",
        "follows another single load/store), 3 for LDRD/STRD, 1+N for LDM/STM/PUSH/POP, 1 for a",
        "branch not taken and 1+P (P = 2) taken, TBB/TBH 2+P, SDIV/UDIV 7. Limits: no wait states,",
        "no bus contention or write-buffer stalls, P fixed at 2 (TRM: 1 to 3); ratios between",
        "builds are what matters.",
        "",
        "## Per network",
        "",
    ]
    cells = []
    for name, r in results.items():
        ri = f"{r['instructions'] / base['instructions']:.2f}" if base else "-"
        rc = f"{r['est_cycles'] / base['est_cycles']:.2f}" if base else "-"
        cells.append(
            [name, f"{r['instructions']:,}", f"{r['est_cycles']:,}", f"{r['macs']:,}",
             f"{r['instructions'] / r['macs']:.2f}", f"{r['est_cycles'] / r['macs']:.2f}", ri, rc,
             text.get(name, "-")]
        )  # fmt: skip
    header = ("build", "instructions", "est. cycles", "MACs", "instr/MAC", "cycles/MAC",
              "vs CMSIS-NN (instr)", "vs CMSIS-NN (cycles)", "kernel .text B")  # fmt: skip
    md += md_table(header, cells, "l" + "r" * 8)
    base_file = Path(args.json).with_name("mcu_cost_baseline.json")
    if base_file.exists() and args.opt == "-O2" and args.core == "cortex-m4":
        old = json.loads(base_file.read_text())
        md += [
            "",
            "Before the DSP kernels (results/mcu_cost_baseline.json: the same benchmark on the",
            "kernels of commit 036497a, -O2):",
            "",
            *md_table(
                ("build", "instructions before", "now", "est. cycles before", "now"),
                [
                    [name, f"{old[name]['instructions']:,}", f"{r['instructions']:,}",
                     f"{old[name]['est_cycles']:,}", f"{r['est_cycles']:,}"]
                    for name, r in results.items()
                    if name in old
                ],
                "lrrrr",
            ),
        ]  # fmt: skip
    md += [
        "",
        f"Kernel code for all bit combinations (every kernel source compiled whole): "
        f"{text['all']:,} B .text. The last column is the kernels linked into that network.",
        "",
        "## Per layer type (instructions / MAC, est. cycles / MAC)",
        "",
    ]
    types = sorted({r["type"] for rows in layers.values() for r in rows})
    per_type = []
    for name, rows in layers.items():
        cells = [name]
        for t in types:
            sel = [r for r in rows if r["type"] == t]
            m = sum(r["macs"] for r in sel)
            cells.append(f"{sum(r['instructions'] for r in sel) / m:.2f} / "
                         f"{sum(r['est_cycles'] for r in sel) / m:.2f}")  # fmt: skip
        per_type.append(cells)
    md += md_table(["build", *types], per_type, "l" + "r" * len(types))
    md += ["", "## Per layer (instructions)", ""]
    names = list(layers)
    per_layer = [
        [r["layer"], r["type"], f"{r['macs']:,}",
         *(f"{layers[n][k]['instructions']:,}" for n in names)]
        for k, r in enumerate(layers[names[0]])
    ]  # fmt: skip
    md += md_table(["layer", "type", "MACs", *names], per_layer, "llr" + "r" * len(names))
    md += ["", "## Most executed instructions", ""]
    for name, h in hists.items():
        top = sorted(h.items(), key=lambda kv: -kv[1])[:12]
        md.append(f"- {name}: " + ", ".join(f"{k} {v:,}" for k, v in top))
    Path(args.md).write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
