"""Cost on the Cortex-M itself: executed instructions per layer and per inference under qemu.

Any network (the demo's MobileNetV1-0.25 28x28 checkpoint `demo`, an MLPerf Tiny task kws |
vww | ic | ad imported from its float reference file, a zoo name, or a .py / .onnx / .tflite
file) is exported under a policy (w8a8, w4a4, w2a2, `mixed` = the rule strategy at 0.48x
FLASH / 0.42x RAM, or a policy JSON file) with random but well-scaled quantization parameters
(instruction counts do not depend on accuracy), and CMSIS-NN s8 runs the same layer shapes
with the functions TFLite Micro calls (arm_convolve_wrapper_s8, arm_depthwise_conv_wrapper_s8,
arm_fully_connected_s8, arm_avgpool_s8, arm_max_pool_s8, arm_elementwise_add_s8). Every build
uses the same compiler and flags, runs under qemu-system-arm (mps2-an386 = Cortex-M4,
mps2-an500 = Cortex-M7) with a TCG plugin (bench/mcu/count.c) that counts every executed
instruction and estimates cycles with the Cortex-M4 timings (no memory wait states; on the M7
the same table, which ignores its dual issue); the harness calls a marker between layers, so
each layer is one segment. The counter is validated first on a hand-counted loop
(bench/mcu/counter_check.c: 403 instructions, 705 cycles). Each micromix image also checks
its output against the numpy reference.

Probe chains (every conv kernel at every (input, weight, output) bit triple of {2, 4, 8}, and
the pooling and add functions at every (input, output) pair) are measured on the M4 too; with
the networks' micromix layers they fit the cost model's table (micromix.cost), whose network
totals are then checked against the measured counts.

    python -m bench.mcu_cost [--models demo,kws,vww,ic,ad] [--cores cortex-m4,cortex-m7]

Writes results/mcu_cost.md, results/mcu_cost.json, the cost table
src/micromix/assets/mcu_cost_table.json and the cycle fields of results/mlperf_tiny.json.
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


def symbol_address(elf: Path, name: str) -> int:
    """The address of the function `name` in `elf` (its Thumb bit cleared)."""
    nm = run(["arm-none-eabi-nm", str(elf)], elf.parent)
    m = re.search(rf"^([0-9a-f]+) T {re.escape(name)}$", nm, re.M)
    if m is None:
        raise BenchError(f"{elf} has no {name} function")
    return int(m.group(1), 16) & ~1


def count(elf: Path, plugin: Path, machine: str = "mps2-an386", timeout: float = 600) -> Counts:
    """Run `elf` under qemu with the counting plugin; segments split at `mm_mark` calls."""
    mark = symbol_address(elf, "mm_mark")
    out = elf.with_suffix(".counts")
    cmd = [
        "qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
        "-plugin", f"{plugin},mark=0x{mark:x},out={out}",
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


def micromix_elf(imodel, image: np.ndarray, work: Path, flags: list[str], core="cortex-m4",
                 every_path: bool = False) -> Path:  # fmt: skip
    """The exported model's sources with a marker before every step, linked with bench_main;
    the kernel paths its layers take (mm_paths.h), or with `every_path` all of them (the
    library without a model: kernel .text as before paths were compiled per model)."""
    from micromix.export.cgen import _array_c, library_files, paths_header

    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    expected = imodel.run(image[None])
    lib = {k: v for k, v in library_files(imodel).items() if k.endswith((".c", ".h"))}
    if every_path:
        lib["mm_paths.h"] = paths_header(None)
    for name, text in lib.items():
        (src / name).write_text(text)
    model_c = src / "micromix_model.c"
    text = model_c.read_text()
    n = text.count("MM_STEP_BEGIN();")
    sched = imodel.report.schedule  # a patch stage has several steps per op
    assert n == len(imodel.ops) or getattr(sched, "split", None) is not None, n
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
              "FullyConnectedFunctions", "BasicMathFunctions")  # fmt: skip


def cmsis_lib(root: Path, work: Path, flags: list[str]) -> Path:
    """libcmsisnn.a from the int8 sources of the folders the layers need."""
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
            if not (o.exists() and o.stat().st_mtime > c.stat().st_mtime):
                run([GCC, *flags, "-ffunction-sections", f"-I{root / 'Include'}", "-c",
                     "-o", str(o), str(c)], work)  # fmt: skip
            objs.append(str(o))
    lib = work / "libcmsisnn.a"
    lib.unlink(missing_ok=True)
    run(["arm-none-eabi-ar", "rcs", str(lib), *objs], work)
    return lib


def _bytes(name: str, n: int, seed: int) -> str:
    v = np.random.default_rng(seed).integers(-100, 100, n)
    return f"static const int8_t {name}[{n}] = {{{','.join(map(str, v))}}};\n"


def _dims(o) -> str:
    (c, h, w), (oc, oh, ow) = o.in_shape, o.out_shape
    return (f"cmsis_nn_dims in_d = {{1, {h}, {w}, {c}}}, out_d = {{1, {oh}, {ow}, {oc}}}, "
            f"b_d = {{1, 1, 1, {oc}}};")  # fmt: skip


def _conv_call(i: int, o, src: str, dst: str, decl: list[str]) -> str:
    """arm_convolve_wrapper_s8 or arm_depthwise_conv_wrapper_s8 (per-channel requantization)."""
    c, oc = o.in_shape[0], o.out_shape[0]
    (kh, kw), (sh, sw), (ph, pw) = o.kernel, o.stride, o.padding
    decl.append(_bytes(f"w{i}", int(np.prod(o.weight.shape)), i))
    decl.append(f"static int32_t b{i}[{oc}], m{i}[{oc}], s{i}[{oc}];\n")
    common = f"{{{sw}, {sh}}}, {{{pw}, {ph}}}, {{1, 1}}, {{-128, 127}}"
    q = f"cmsis_nn_per_channel_quant_params q = {{m{i}, s{i}}};"
    decl.append(f"#define INIT{i} init_q(m{i}, s{i}, b{i}, {oc});\n")
    if o.is_depthwise:
        return (
            f"    {{ {_dims(o)} cmsis_nn_dims f_d = {{1, {kh}, {kw}, {oc}}};\n"
            f"      cmsis_nn_dw_conv_params p = {{128, -128, {oc // c}, {common}}}; {q}\n"
            f"      need(arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &in_d, &f_d, &out_d));\n"
            f"      mm_mark();\n"
            f"      ok &= arm_depthwise_conv_wrapper_s8(&ctx, &p, &q, &in_d, {src}, &f_d, w{i}, &b_d, b{i}, &out_d, {dst}) == 0; }}"
        )  # fmt: skip
    return (
        f"    {{ {_dims(o)} cmsis_nn_dims f_d = {{{oc}, {kh}, {kw}, {c // o.groups}}};\n"
        f"      cmsis_nn_conv_params p = {{128, -128, {common}}}; {q}\n"
        f"      need(arm_convolve_wrapper_s8_get_buffer_size(&p, &in_d, &f_d, &out_d));\n"
        f"      mm_mark();\n"
        f"      ok &= arm_convolve_wrapper_s8(&ctx, &p, &q, &in_d, {src}, &f_d, w{i}, &b_d, b{i}, &out_d, {dst}) == 0; }}"
    )  # fmt: skip


def _fc_call(i: int, o, src: str, dst: str, decl: list[str]) -> str:
    """arm_fully_connected_s8 (per-tensor requantization, as TFLM's int8 files have)."""
    n_in, oc = int(np.prod(o.in_shape)), o.out_shape[0]
    decl.append(_bytes(f"w{i}", n_in * oc, i))
    decl.append(f"static int32_t b{i}[{oc}];\n")
    return (
        f"    {{ cmsis_nn_dims in_d = {{1, 1, 1, {n_in}}}, f_d = {{{n_in}, 1, 1, {oc}}}, "
        f"b_d = {{1, 1, 1, {oc}}}, out_d = {{1, 1, 1, {oc}}};\n"
        f"      cmsis_nn_fc_params p = {{128, 0, -128, {{-128, 127}}}};\n"
        f"      cmsis_nn_per_tensor_quant_params q = {{1518500250, -8}};\n"
        f"      cmsis_nn_context fc = {{0, 0}};\n"
        f"      mm_mark();\n"
        f"      ok &= arm_fully_connected_s8(&fc, &p, &q, &in_d, {src}, &f_d, w{i}, &b_d, b{i}, &out_d, {dst}) == 0; }}"
    )  # fmt: skip


def _pool_call(fn: str, i: int, o, src: str, dst: str, decl: list[str]) -> str:
    (kh, kw), (sh, sw), (ph, pw) = o.kernel, o.stride, o.padding
    buf = f"need(arm_avgpool_s8_get_buffer_size({o.out_shape[2]}, {o.in_shape[0]}));\n      "
    return (
        f"    {{ {_dims(o)} cmsis_nn_dims f_d = {{1, {kh}, {kw}, 1}};\n"
        f"      cmsis_nn_pool_params p = {{{{{sw}, {sh}}}, {{{pw}, {ph}}}, {{-128, 127}}}};\n"
        f"      {buf if fn == 'arm_avgpool_s8' else ''}mm_mark();\n"
        f"      ok &= {fn}(&ctx, &p, &in_d, {src}, &f_d, &out_d, {dst}) == 0; }}"
    )  # fmt: skip


def _add_call(i: int, o, src: str, dst: str, decl: list[str]) -> str:
    """arm_elementwise_add_s8 with TFLM's parameters (left shift 20, both inputs rescaled)."""
    n = int(np.prod(o.out_shape))
    return (
        f"    mm_mark();\n"
        f"    ok &= arm_elementwise_add_s8({src}, {src}, 128, 1073741824, -1, 128, 1518500250, -1, "
        f"20, {dst}, -128, 1518500250, -19, -128, 127, {n}) == 0;"
    )


# The CMSIS-NN function TFLite Micro calls for an op without weights, keyed on the name the
# memory report records for it (the weight layers are told apart by their weight's shape).
CMSIS_OTHER = {
    "mm_avgpool": lambda *a: _pool_call("arm_avgpool_s8", *a),
    "mm_avgpool_pad": lambda *a: _pool_call("arm_avgpool_s8", *a),
    "mm_maxpool": lambda *a: _pool_call("arm_max_pool_s8", *a),
    "mm_add": _add_call,
}


def cmsis_source(graph, kernels: list[str]) -> str:
    """A C harness calling CMSIS-NN s8 on every layer of `graph`, a marker before each call
    (its parameters are set up before the marker). `kernels`: micromix's C function per op."""
    decl, calls = [], []
    sizes = [int(np.prod(o.out_shape)) for o in graph.ops] + [int(np.prod(graph.ops[0].in_shape))]
    for i, (o, k) in enumerate(zip(graph.ops, kernels, strict=True)):
        src, dst = ("buf_a", "buf_b") if i % 2 == 0 else ("buf_b", "buf_a")
        if o.weight is not None:
            call = _fc_call if len(o.weight.shape) == 2 else _conv_call
        elif k in CMSIS_OTHER:
            call = CMSIS_OTHER[k]
        else:
            raise BenchError(f"no CMSIS-NN call for {k} (layer {o.name})")
        calls.append(call(i, o, src, dst, decl))
    inits = "\n".join(f"    {d.split()[1]}" for d in decl if d.startswith("#define INIT"))
    return f"""/* Generated by bench/mcu_cost.py: CMSIS-NN s8 on micromix's layer shapes. */
#include <stdint.h>
#include "arm_nnfunctions.h"
#include "bench.h"

static int8_t buf_a[{max(sizes)}], buf_b[{max(sizes)}];
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
    for (int i = 0; i < {max(sizes)}; i++) buf_a[i] = (int8_t)(i * 37);
{inits}
{chr(10).join(calls)}
    mm_mark();
    bench_puts(ok ? "bench: ok\\n" : "bench: CMSIS-NN error\\n");
    return !ok;
}}
"""


def cmsis_elf(graph, kernels, root: Path, work: Path, flags: list[str], core="cortex-m4") -> Path:
    work.mkdir(parents=True, exist_ok=True)
    lib = cmsis_lib(root, work, flags)
    (work / "cmsis_net.c").write_text(cmsis_source(graph, kernels))
    return link(work, "cmsis_nn", [work / "cmsis_net.c"], [*flags, f"-I{root / 'Include'}"],
                extra=[str(lib)], core=core)  # fmt: skip


# ---- networks, policies, probes -----------------------------------------------------------

MLPERF = ("kws", "vww", "ic", "ad")  # the tasks of bench/mlperf_tiny.py (FILES: float, int8)
# Published MLPerf Tiny v1.x latencies on a Cortex-M4 at 120 MHz (NUCLEO-L4R5ZI), ms: the best
# result and the TFLM reference submission (issue 24).
PUBLISHED_M4_MS = {"kws": (43.2, 181.9), "vww": (88.9, 600.6), "ic": (165.1, 704.2),
                   "ad": (4.05, 10.05)}  # fmt: skip
CLOCK_MHZ = {"cortex-m4": 120, "cortex-m7": 280}
MLPERF_DIR = HERE.parents[1] / "shared" / "third_party" / "mlperf-tiny"


def load_network(ref: str, mlperf_dir: Path, checkpoint: str):
    """(float model in eval mode, its Graph) for `demo`, an MLPerf task (its dense layers' weight
    scales as its int8 file's: bench.mlperf_tiny.weight_scales), a zoo name or a file."""
    import torch

    from bench.mlperf_tiny import FILES, weight_scales
    from micromix.graph import trace
    from micromix.models.spec import attached_spec, build, spec_from_ref
    from micromix.train import load_model

    torch.manual_seed(0)
    if ref == "demo":
        model = load_model(checkpoint)[0].eval()
        return model, trace(model)
    spec = spec_from_ref(str(mlperf_dir / FILES[ref][0]) if ref in MLPERF else ref)
    model = build(spec).eval()
    scales = weight_scales(ref, mlperf_dir) if ref in MLPERF else None
    return model, trace(model, input_shape=(1, *attached_spec(model).input_shape), scales=scales)


def policy_for(name: str, graph):
    """w8a8 / w4a4 / w2a2, `mixed` (rule strategy, 0.48x FLASH and 0.42x RAM) or a JSON file."""
    from micromix.budget import Budget
    from micromix.memory import memory_report
    from micromix.policy import Policy
    from micromix.strategies import rule_policy

    m = re.fullmatch(r"w([248])a([248])", name)
    if m:
        return Policy.uniform(graph, int(m.group(1)), int(m.group(2)))
    if name == "mixed":
        ref = memory_report(graph, Policy.uniform(graph, 8))
        return rule_policy(graph, Budget.parse("0.48x", "0.42x", reference=ref))
    return Policy.from_json(json.loads(Path(name).read_text()), source=name)


# Activation bits along a chain that crosses every (input, output) pair of {2, 4, 8} once,
# from the 8-bit network input back to the 8-bit logits.
BIT_WALK = (8, 8, 4, 4, 2, 2, 8, 2, 4, 8)


def probe_nets() -> dict[str, tuple]:
    """name -> (model, input CHW, weight layers?): chains whose layers keep their input shape,
    so one chain runs a layer at every bit triple (three passes of BIT_WALK for the weight
    bits 8, 4, 2). Two shapes per conv kernel (different MACs per output) fit both terms."""
    from torch import nn

    from micromix.models import conv_bn

    def chain(make, n):
        return nn.Sequential(*(make() for _ in range(n))).eval()

    class Residual(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.body = conv_bn(c, c, 1)

        def forward(self, x):
            return x + self.body(x)

    n = 3 * (len(BIT_WALK) - 1)
    return {
        "pw64": (chain(lambda: conv_bn(64, 64, 1), n), (64, 4, 4), True),
        "pw32": (chain(lambda: conv_bn(32, 32, 1), n), (32, 6, 6), True),
        "pw16": (chain(lambda: conv_bn(16, 16, 1), n), (16, 8, 8), True),
        "pw8": (chain(lambda: conv_bn(8, 8, 1), n), (8, 8, 8), True),
        "dw3": (chain(lambda: conv_bn(16, 16, 3, groups=16), n), (16, 8, 8), True),
        "dw5": (chain(lambda: conv_bn(16, 16, 5, groups=16), n), (16, 8, 8), True),
        "conv3x3_16": (chain(lambda: conv_bn(16, 16, 3), n), (16, 6, 6), True),
        "conv3x3_8": (chain(lambda: conv_bn(8, 8, 3), n), (8, 8, 8), True),
        "conv3x3_32": (chain(lambda: conv_bn(32, 32, 3), n), (32, 4, 4), True),
        "add": (chain(lambda: Residual(16), len(BIT_WALK) - 1), (16, 8, 8), False),
    }


PAIRS = tuple(zip(BIT_WALK, BIT_WALK[1:], strict=False))  # every (input, output) pair once


def pool_net(cls):
    """1x1 layer, a 2x2 pool of stride 2, 1x1 layer, a global pool, the classifier: a pool
    that reads each input once at two window sizes (pool_policy sets one bit pair on both)."""
    from torch import nn

    from micromix.models import conv_bn

    return nn.Sequential(conv_bn(16, 16, 1), cls(2, 2), conv_bn(16, 16, 1), cls(4, 4),
                         nn.Flatten(), nn.Linear(16, 10)).eval()  # fmt: skip


def pool_policy(graph, pair: tuple[int, int]):
    """Both pools of pool_net read `pair[0]` bits and write `pair[1]`."""
    from micromix.policy import Policy

    p = Policy.uniform(graph, 8)
    acts = dict(p.activations)
    for op in graph.ops[:-1]:
        acts[op.output] = pair[op.weight is None]
    return Policy(p.weights, acts)


STEM_BITS = tuple((w, a) for w in (8, 4, 2) for a in (8, 4, 2))


def stem_net():
    """A first layer (one 8-bit channel in, 3x3, 8 out: mm_conv_small, the only kernel whose
    8-bit-input rows are this short) at every (weight, output) bits, each followed by a 1x1
    layer back to one 8-bit channel; stem_policy sets the bits."""
    from torch import nn

    from micromix.models import conv_bn

    return nn.Sequential(*(m for _ in STEM_BITS for m in (conv_bn(1, 8, 3), conv_bn(8, 1, 1))))


def dense_net(c: int):
    """A chain of c -> c linears with per-tensor weight scales (mm_dense_pt), as many as
    probe_policy's walk (three passes of BIT_WALK) takes."""
    from torch import nn

    n = 3 * (len(BIT_WALK) - 1)
    return nn.Sequential(nn.Flatten(), *(nn.Sequential(nn.Linear(c, c), nn.ReLU())
                                         for _ in range(n))).eval()  # fmt: skip


def stem_policy(graph):
    from micromix.policy import Policy

    p = Policy.uniform(graph, 8)
    acts, wts = dict(p.activations), dict(p.weights)
    for (w, a), op in zip(STEM_BITS, graph.ops[::2], strict=True):
        acts[op.output], wts[op.name] = a, w
    return Policy(wts, acts)


def probe_policy(graph, weights: bool):
    """The walk's bits on `graph`: op i outputs BIT_WALK[i + 1] (weight layers: three passes,
    weights 8, 4, 2); in the add chain both operands of each add carry the block input's bits."""
    from micromix.policy import Policy

    p = Policy.uniform(graph, 8)
    acts, wts = dict(p.activations), dict(p.weights)
    walk = list(BIT_WALK[1:])
    if weights:
        for i, op in enumerate(graph.ops):
            acts[op.output], wts[op.name] = walk[i % len(walk)], (8, 4, 2)[i // len(walk)]
        return Policy(wts, acts)
    ops = [op for op in graph.ops if op.weight is None]
    for i, op in enumerate(ops):
        acts[op.output] = walk[i]
    for op in graph.ops:
        if op.weight is not None:  # the residual branch: the bits of its input
            acts[op.output] = acts[op.inputs[0]]
    return Policy(wts, acts)


# ---- measuring --------------------------------------------------------------------------


@dataclass
class Bench:
    """What every build of one run shares."""

    work: Path
    plugin: Path
    cmsis_root: Path
    opt: str

    def flags(self, core: str) -> list[str]:
        from micromix.export.cores import core as get_core

        return [*get_core(core).flags.split(), self.opt]


def layer_rows(graph, policy) -> list[dict]:
    """Per op: name, kernel, bits, MACs and outputs (micromix.cost's view of the layer)."""
    from micromix.cost import cost_rows

    return [
        {k: r[k] for k in ("layer", "kernel", "bits", "macs", "outputs", "pixels", "patch")}
        for r in cost_rows(graph, policy, table={})
    ]


def measured(rows: list[dict], counts: Counts, first: int, extra: tuple[int, ...]) -> dict:
    """Layer k is segment first + k; `extra` segments (the input copy) join the network total."""
    for k, r in enumerate(rows):
        r["instructions"], r["est_cycles"] = counts.segments[first + k]
    tot = {m: sum(r[m] for r in rows) + sum(counts.segments[i][j] for i in extra)
           for j, m in enumerate(("instructions", "est_cycles"))}  # fmt: skip
    return {**tot, "macs": sum(r["macs"] for r in rows), "layers": rows}


def run_micromix(b: Bench, name: str, graph, policy, core: str) -> dict:
    from micromix.export.cores import core as get_core
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams

    im = convert(random_qparams(graph, policy, seed=0), graph, policy)
    image = np.random.default_rng(0).integers(0, 256, im.input_shape, dtype=np.uint8)
    elf = micromix_elf(im, image, b.work / core / name, b.flags(core), core)
    c = count(elf, b.plugin, get_core(core).machine)
    if "bench: ok" not in c.output:
        raise BenchError(f"{name} on {core}: the image did not finish correctly: {c.output[-300:]}")
    # segments: 0 boot, 1 input copy, 2.. steps (the last step's holds the output copy)
    return {**measured(layer_rows(graph, policy), c, 2, (1,)), "kernel_text": kernel_text(elf),
            "hist": top(c.hist)}  # fmt: skip


def run_cmsis(b: Bench, name: str, graph, core: str) -> dict:
    from micromix.export.cores import core as get_core
    from micromix.policy import Policy

    rows = layer_rows(graph, Policy.uniform(graph, 8))
    elf = cmsis_elf(graph, [r["kernel"] for r in rows], b.cmsis_root, b.work / core / name,
                    b.flags(core), core)  # fmt: skip
    c = count(elf, b.plugin, get_core(core).machine)
    if "bench: ok" not in c.output:
        raise BenchError(f"{name} on {core}: CMSIS-NN failed: {c.output[-300:]}")
    return {**measured(rows, c, 1, ()), "hist": top(c.hist)}


def top(hist: dict[str, int], n: int = 10) -> dict[str, int]:
    return dict(sorted(hist.items(), key=lambda kv: -kv[1])[:n])


def run_probes(b: Bench) -> dict[str, dict]:
    from torch import nn

    from micromix.graph import WeightScales, trace

    out = {}
    for name, (model, shape, weights) in probe_nets().items():
        g = trace(model, input_shape=(1, *shape))
        out[name] = run_micromix(b, f"probe_{name}", g, probe_policy(g, weights), "cortex-m4")
        print(f"probe {name}: {out[name]['instructions']:,} instructions", flush=True)
    g = trace(stem_net().eval(), input_shape=(1, 1, 12, 12))
    out["stem"] = run_micromix(b, "probe_stem", g, stem_policy(g), "cortex-m4")
    for c in (64, 32):  # mm_dense_pt at every bit triple, two shapes
        g = trace(dense_net(c), input_shape=(1, c, 1, 1), scales=WeightScales(dense="tensor"))
        out[f"dense_pt{c}"] = run_micromix(b, f"probe_dense_pt{c}", g, probe_policy(g, True),
                                           "cortex-m4")  # fmt: skip
    for cls in (nn.AvgPool2d, nn.MaxPool2d):
        g = trace(pool_net(cls), input_shape=(1, 16, 8, 8))
        for pair in PAIRS:
            name = f"{cls.__name__}_{pair[0]}_{pair[1]}"
            out[name] = run_micromix(b, f"probe_{name}", g, pool_policy(g, pair), "cortex-m4")
        print(f"probe {cls.__name__}: {len(PAIRS)} bit pairs", flush=True)
    return out


def check_model(networks: dict, table: dict) -> dict[str, dict]:
    """Each measured micromix network on the M4 against the cost model's total for it."""
    from micromix.cost import layer_cost, row_key

    out = {}
    for net, cores in networks.items():
        for build, r in cores.get("cortex-m4", {}).items():
            if not build.startswith("micromix"):
                continue
            pred = [layer_cost(row_key(table, x), x["macs"], x["outputs"], table, x.get("pixels"))
                    for x in r["layers"]]  # fmt: skip
            if any(p is None for p in pred):
                raise BenchError(f"{net} {build}: a layer has no row in the fitted table")
            p = sum(x.est_cycles for x in pred)
            out[f"{net} {build}"] = {"measured_est_cycles": r["est_cycles"], "model": p,
                                     "rel_error": p / r["est_cycles"] - 1}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="demo,kws,vww,ic,ad",
                    help="demo, kws|vww|ic|ad, a zoo name, or a .py:NAME/.onnx/.tflite file")  # fmt: skip
    ap.add_argument("--policies", default="w8a8", help="per network: w8a8|w4a4|w2a2|mixed|FILE")
    ap.add_argument("--demo-policies", default="w8a8,mixed,w4a4,w2a2")
    ap.add_argument("--cores", default="cortex-m4,cortex-m7")
    ap.add_argument("--no-probes", action="store_true", help="keep the shipped cost table")
    ap.add_argument("--cmsis-nn", default=str(HERE.parents[1] / "shared/third_party/cmsis-nn"))
    ap.add_argument("--mlperf-dir", default=str(MLPERF_DIR))
    ap.add_argument("--checkpoint", default="src/micromix/assets/mobilenet_v1_w025_fmnist28.pt")
    ap.add_argument("--opt", default="-O2", help="optimisation flag for every build")
    ap.add_argument("--work", default="runs/bench-mcu")
    ap.add_argument("--md", default="results/mcu_cost.md")
    ap.add_argument("--json", default="results/mcu_cost.json")
    ap.add_argument("--table", default="src/micromix/assets/mcu_cost_table.json")
    ap.add_argument("--mlperf-json", default="results/mlperf_tiny.json")
    ap.add_argument("--md-only", action="store_true", help="rewrite --md from --json, no runs")
    args = ap.parse_args(argv)
    if args.md_only:
        write_md(args.md, json.loads(Path(args.json).read_text()))
        return 0
    for tool in (GCC, "qemu-system-arm", "gcc"):
        if shutil.which(tool) is None:
            print(f"mcu_cost: `{tool}` is not installed.", file=sys.stderr)
            return 2
    b = Bench(Path(args.work).resolve(), Path(), Path(args.cmsis_nn).resolve(), args.opt)
    if not (b.cmsis_root / "Include" / "arm_nnfunctions.h").exists():
        print(f"mcu_cost: no CMSIS-NN sources at {b.cmsis_root}; pass --cmsis-nn PATH.",
              file=sys.stderr)  # fmt: skip
        return 2
    b.plugin = build_plugin(b.work)
    check_counter(b.work, b.plugin, b.flags("cortex-m4"))
    networks: dict[str, dict] = {}
    for ref in args.models.split(","):
        model, graph = load_network(ref, Path(args.mlperf_dir), args.checkpoint)
        pols = (args.demo_policies if ref == "demo" else args.policies).split(",")
        per_core = networks.setdefault(ref, {})
        for core in args.cores.split(","):
            res = per_core.setdefault(core, {"cmsis_nn_s8": run_cmsis(b, ref, graph, core)})
            for p in (q.replace("{net}", ref) for q in pols):  # {net}: a policy file per net
                res[f"micromix_{Path(p).stem}"] = run_micromix(b, f"{ref}_{Path(p).stem}", graph,
                                                               policy_for(p, graph), core)  # fmt: skip
            print(ref, core, {k: v["est_cycles"] for k, v in res.items()}, flush=True)
    from micromix.cost import fit_cost_table

    probes = {} if args.no_probes else run_probes(b)
    if probes:
        layers = [x for r in probes.values() for x in r["layers"]]
        layers += [x for cores in networks.values() for k, r in cores.get("cortex-m4", {}).items()
                   if k.startswith("micromix") for x in r["layers"]]  # fmt: skip
        from micromix import files

        table = fit_cost_table(layers)
        files.write_json(args.table, {"source": "bench/mcu_cost.py", "flags": " ".join(b.flags("cortex-m4")),
                                "core": "cortex-m4", "model": MODEL,
                                "rows": table})  # fmt: skip
    from micromix.cost import load_cost_table

    load_cost_table.cache_clear()  # the check needs a fitted table: this run's (probes)
    check = check_model(networks, load_cost_table(args.table)) if probes else {}
    report(args, b, networks, probes, check)
    return 0


MODEL = "per_mac * MACs + per_output * outputs + per_pixel * pixels + per_channel * channels"


def kernel_text(elf: Path) -> int:
    """Bytes of .text of the kernels' functions (mm_*, not the model or the bench)."""
    out = run(["arm-none-eabi-nm", "-S", str(elf)], elf.parent)
    size = 0
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tT" and p[3].startswith("mm_") and p[3] != "mm_mark":
            size += int(p[1], 16)
    return size


# ---- report -----------------------------------------------------------------------------


def ms(cycles: int, core: str) -> str:
    return f"{cycles / CLOCK_MHZ[core] / 1000:.2f}" if core in CLOCK_MHZ else "-"


def report(args, b: Bench, networks: dict, probes: dict, check: dict) -> None:
    # Imported here: the qemu kernel tests load this file alone, outside the bench package.
    from micromix import files

    command = "python -m bench.mcu_cost " + " ".join(sys.argv[1:])
    flags = {c: " ".join(b.flags(c)) for cs in networks.values() for c in cs}
    strip = lambda r: {k: v for k, v in r.items() if k != "layers"}  # noqa: E731
    demo = networks.get("demo", {}).get("cortex-m4", {})
    out = {"command": command, "flags": flags, "clock_mhz": CLOCK_MHZ,
           "published_m4_ms": PUBLISHED_M4_MS,
           **{k: strip(v) for k, v in demo.items()},  # the demo on the M4, as before
           "layers": {k: v["layers"] for k, v in demo.items()},
           "networks": networks, "probes": {k: strip(v) for k, v in probes.items()},
           "cost_model_check": check}  # fmt: skip
    files.write_json(args.json, out)
    update_mlperf(args.mlperf_json, networks)
    write_md(args.md, out)


def write_md(path: str, out: dict) -> None:
    """results/mcu_cost.md from the JSON the run wrote (`--md-only` rewrites it alone)."""
    from bench.common import md_table
    from micromix import files

    command, flags, networks = out["command"], out["flags"], out["networks"]
    probes, check = out["probes"], out["cost_model_check"]
    gcc = run([GCC, "--version"], Path.cwd()).splitlines()[0]
    md = [
        "# Cost on the Cortex-M: executed instructions under qemu",
        "",
        f"Command: `{command}` (on the shared 2-core machine; counts do not depend on load).",
        "",
        f"Compiler: {gcc}; the same flags for micromix and CMSIS-NN on each core: "
        + "; ".join(f"`{f}`" for f in flags.values())
        + ".",
        "Networks: `demo` = MobileNetV1-0.25 28x28 (shipped checkpoint); kws / vww / ic / ad =",
        "MLPerf Tiny's float reference files imported (DS-CNN, MobileNetV1-0.25 96x96, ResNet-8,",
        "FC autoencoder). Random but well-scaled quantization parameters (counts do not depend on",
        "accuracy). CMSIS-NN s8 runs the same layer shapes through the functions TFLM calls.",
        "One inference, every executed guest instruction counted by a TCG plugin",
        "(bench/mcu/count.c) in qemu-system-arm (mps2-an386 = M4, mps2-an500 = M7); the counter",
        f"reproduces a hand-counted loop exactly ({CHECK_EXPECTED[0]} instructions, "
        f"{CHECK_EXPECTED[1]} cycles), and the same loop placed across a 1 KB page (where qemu",
        "ends its blocks) exactly as well: a count does not depend on where the code lies",
        "(tests/test_mcu_counter.py).",
        "",
        "Estimated cycles: Cortex-M4 TRM timings per instruction class: 1 for data processing and",
        "every multiply (MUL, MLA, SMLAD, SMULL, SMLAL), 2 for a single load/store (1 when it",
        "follows another single load/store), 3 for LDRD/STRD, 1+N for LDM/STM/PUSH/POP, 1 for a",
        "branch not taken and 1+P (P = 2) taken, TBB/TBH 2+P, SDIV/UDIV 7. **No memory wait",
        "states**, no bus contention or write-buffer stalls; on the M7 the same table (its dual",
        "issue is not modelled, so M7 cycles are an upper estimate). Milliseconds = estimated",
        "cycles at 120 MHz (M4) and 280 MHz (M7).",
        "",
        "## Per network",
        "",
    ]
    md += network_table(networks, md_table)
    md += ["", "## Per layer type (est. cycles / MAC; type = micromix's C function at W8/A8)", ""]
    md += type_table(networks, md_table)
    md += ["", "## Cost model (micromix.cost) against the measured counts (Cortex-M4)", "",
           "The table's rows (per kernel and bits: coefficients per MAC, output, output pixel and output channel) are fitted",
           f"to the {len(probes)} probe chains (every kernel at every bit triple) and to the",
           "networks' micromix layers; its network total against the measured one:", ""]  # fmt: skip
    md += md_table(("network, build", "measured est. cycles", "model", "error"),
                   [[k, f"{v['measured_est_cycles']:,}", f"{v['model']:,}",
                     f"{100 * v['rel_error']:+.1f} %"] for k, v in check.items()], "lrrr")  # fmt: skip
    before = Path(path).with_name("mcu_cost_before_speed.json")
    if before.exists():
        md += ["", "## Before the speed work (results/mcu_cost_before_speed.json, same benchmark)",
               ""]  # fmt: skip
        md += before_table(json.loads(before.read_text())["networks"], networks, md_table)
    md += ["", "## Most executed instructions (Cortex-M4)", ""]
    for net, cores in networks.items():
        for build, r in cores.get("cortex-m4", {}).items():
            md.append(f"- {net} {build}: " + ", ".join(f"{k} {v:,}" for k, v in r["hist"].items()))
    files.write_text(path, "\n".join(md) + "\n")


def before_table(old: dict, networks: dict, md_table) -> list[str]:
    cells = []
    for net, cores in networks.items():
        for core, builds in cores.items():
            for build, r in builds.items():
                o = old.get(net, {}).get(core, {}).get(build)
                if o is not None and build != "cmsis_nn_s8":
                    cells.append([net, core.removeprefix("cortex-"), build, f"{o['est_cycles']:,}",
                                  f"{r['est_cycles']:,}", f"{r['est_cycles'] / o['est_cycles']:.2f}"])  # fmt: skip
    return md_table(("net", "core", "build", "est. cycles before", "now", "now / before"), cells,
                    "lllrrr")  # fmt: skip


def network_table(networks: dict, md_table) -> list[str]:
    cells = []
    for net, cores in networks.items():
        for core, builds in cores.items():
            base = builds["cmsis_nn_s8"]["est_cycles"]
            pub = PUBLISHED_M4_MS.get(net) if core == "cortex-m4" else None
            for build, r in builds.items():
                cells.append([net, core.removeprefix("cortex-"), build, f"{r['macs']:,}",
                              f"{r['instructions']:,}", f"{r['est_cycles']:,}",
                              f"{r['est_cycles'] / r['macs']:.2f}", f"{r['est_cycles'] / base:.2f}",
                              ms(r["est_cycles"], core), f"{r.get('kernel_text', '-')}",
                              f"{pub[0]} / {pub[1]}" if pub else "-"])  # fmt: skip
    head = ("net", "core", "build", "MACs", "instructions", "est. cycles", "cycles/MAC",
            "vs CMSIS-NN", "est. ms", "kernel .text B", "published ms best / TFLM")  # fmt: skip
    return md_table(head, cells, "lll" + "r" * 8)


def type_table(networks: dict, md_table) -> list[str]:
    cells = []
    for net, cores in networks.items():
        builds = cores.get("cortex-m4", {})
        types = sorted({x["kernel"] for x in builds["cmsis_nn_s8"]["layers"]})
        for t in types:
            row = [net, t]
            for build in ("cmsis_nn_s8", "micromix_w8a8"):
                ls = [x for x in builds.get(build, {"layers": []})["layers"]]
                ref = [x for x in builds["cmsis_nn_s8"]["layers"] if x["kernel"] == t]
                sel = [x for x, r in zip(ls, builds["cmsis_nn_s8"]["layers"]) if r["kernel"] == t]
                m = sum(x["macs"] for x in ref)
                row.append(f"{sum(x['est_cycles'] for x in sel) / m:.2f}" if sel else "-")
            row.append(f"{sum(x['macs'] for x in ref):,}")
            cells.append(row)
    return md_table(("net", "layer type", "CMSIS-NN s8", "micromix W8/A8", "MACs"), cells, "llrrr")


def update_mlperf(path: str, networks: dict) -> None:
    """The measured M4 estimated cycles of micromix W8/A8, CMSIS-NN and the task's mixed policy
    (its policy file results/mlperf_tiny_policies/<task>_mixed.json, `--policies {net}`) into
    mlperf_tiny.json."""
    from micromix import files

    p = Path(path)
    if not p.exists():
        return
    d = json.loads(p.read_text())
    for task in d:
        r = networks.get(task, {}).get("cortex-m4", {})
        if "micromix_w8a8" in r and "micromix_w8a8" in d[task]:
            d[task]["micromix_w8a8"]["est_cycles_m4"] = r["micromix_w8a8"]["est_cycles"]
            d[task]["micromix_w8a8"]["cmsis_nn_est_cycles_m4"] = r["cmsis_nn_s8"]["est_cycles"]
        if f"micromix_{task}_mixed" in r and "micromix_mixed" in d[task]:
            measured = r[f"micromix_{task}_mixed"]["est_cycles"]
            d[task]["micromix_mixed"]["est_cycles_m4_measured"] = measured
    files.write_json(p, d)


if __name__ == "__main__":
    sys.exit(main())
