"""The Cortex-M cores the kernels are built, measured and tested for.

The table itself lives in `micromix.mcu` (one table: the target registry, the export, the
kernel benchmark and the qemu kernel tests read the same flags, board and DSP flag); this
module re-exports it under the names bench/mcu_cost.py and the kernel tests use.
"""

from __future__ import annotations

from ..mcu import CORES, Core, core

__all__ = ["CORES", "Core", "KERNEL_CORES", "core"]

# The cores the kernels are checked bit-exact on under qemu (one per qemu Cortex-M board;
# cortex-m0plus and cortex-m4f build the same code as cortex-m3 and cortex-m4).
KERNEL_CORES = ("cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33")
