"""The qemu instruction counter of bench/mcu_cost.py: exact on a hand-counted loop, and the
segments it splits at markers add up to everything executed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("gcc", "arm-none-eabi-gcc", "qemu-system-arm")


def need_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        msg = f"needs {', '.join(missing)}"
        if os.environ.get("MICROMIX_STRICT") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def bench():
    spec = importlib.util.spec_from_file_location("mcu_cost", ROOT / "bench" / "mcu_cost.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mcu_cost"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_counter_is_exact_on_a_hand_counted_loop(tmp_path) -> None:
    need_tools()
    mc = bench()
    plugin = mc.build_plugin(tmp_path)
    flags = "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2".split()
    elf = mc.link(tmp_path, "counter_check", [mc.MCU / "counter_check.c"], flags)
    c = mc.count(elf, plugin)
    # counter_check.c's comment derives these by hand: 1 + 1 + 100 * 4 + 1 instructions.
    assert c.segments[1] == (403, 3 + 1 + 100 * 5 + 99 * 2 + 3)
    assert len(c.segments) == 3  # boot, the loop, after the second marker
    assert c.hist["subs"] == 100 and c.hist["bne"] == 100
    assert sum(s[0] for s in c.segments) == sum(c.hist.values())
