"""The one core table (micromix.mcu.CORES, re-exported by export/cores.py): every Arm core in it
builds the exported model with its flags and runs it correctly on its qemu board, and the DSP
flag picks the faster kernels."""

from __future__ import annotations

import pytest
from test_mcu_counter import bench, need_tools

from micromix import mcu
from micromix.errors import MicromixError
from micromix.export import cores
from micromix.export.cores import CORES, KERNEL_CORES, core


def test_export_reads_the_same_table_as_the_target_registry() -> None:
    assert cores.CORES is mcu.CORES and cores.core is mcu.core
    assert set(KERNEL_CORES) <= set(CORES)


def one_pointwise_model():
    """A stem, one 8-bit 1x1 layer wide enough for the kernels' blocks, and a linear."""
    import torch
    from torch import nn

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.models import conv_bn
    from micromix.policy import Policy

    torch.manual_seed(0)
    model = nn.Sequential(
        conv_bn(1, 32, 3, 2), conv_bn(32, 32, 1), nn.Flatten(), nn.Linear(32 * 8 * 8, 10)
    ).eval()
    g = trace(model, (1, 1, 16, 16))
    pol = Policy.uniform(g, 8)
    return convert(random_qparams(g, pol, seed=1), g, pol)


def test_every_arm_core_builds_and_the_dsp_cores_run_the_layer_in_fewer_instructions(
    tmp_path,
) -> None:
    """Each Arm core's flags build the exported model and its board runs it to the numpy
    result; a core's `dsp` is what its flags give the compiler, and on the 1x1 layer every core
    with the DSP extension executes fewer instructions than every core without it."""
    import numpy as np

    need_tools()
    mc = bench()
    plugin = mc.build_plugin(tmp_path)
    im = one_pointwise_model()
    image = np.random.default_rng(0).integers(0, 256, im.input_shape, dtype=np.uint8)
    step = [o.op.kind for o in im.ops].index("conv", 1)
    pointwise, built = {}, set()
    for name, c in CORES.items():
        if c.board is None or (c.flags, c.board) in built:  # cortex-m4f builds as cortex-m4
            continue
        built.add((c.flags, c.board))
        flags = [*c.flags.split(), "-O2"]
        macros = mc.run(
            ["arm-none-eabi-gcc", *flags, "-dM", "-E", "-x", "c", "/dev/null"], tmp_path
        )
        assert ("__ARM_FEATURE_DSP 1" in macros) == c.dsp, name  # the kernels' #if sees `dsp`
        elf = mc.micromix_elf(im, image, tmp_path / name, flags, name)
        counts = mc.count(elf, plugin, c.machine)
        assert "bench: ok" in counts.output, (name, counts.output[-300:])
        pointwise[name] = counts.segments[2 + step][0]  # after boot and input copy
    dsp = [pointwise[n] for n in pointwise if CORES[n].dsp]
    portable = [pointwise[n] for n in pointwise if not CORES[n].dsp]
    assert dsp and portable and max(dsp) < min(portable), pointwise


def test_targets_take_flags_and_board_from_the_table() -> None:
    for t in mcu.list_targets():
        c = CORES[t.core]
        assert t.gcc_flags == c.cpu_flags and t.board == c.board
        assert "-mfloat-abi" not in t.gcc_flags  # the export's image is soft-float


def test_unknown_core_is_one_sentence() -> None:
    with pytest.raises(MicromixError, match="cortex-m99") as e:
        core("cortex-m99")
    assert str(e.value).count("\n") == 0
    with pytest.raises(MicromixError, match="no qemu board"):
        _ = core("riscv-gap8").machine
