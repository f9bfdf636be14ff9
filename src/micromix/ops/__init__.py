"""The op registry: one module per op kind, from its trace handler to its C statement.

    from micromix import ops
    ops.list_ops()              # ('add', 'avgpool', 'cat', 'conv', ...)
    ops.get("conv").params(op)  # the OpDef of a kind (see ops.registry.OpDef)
    ops.of(op).run(iop, x)      # the OpDef of an op of a Graph

Every module of this package that defines an op calls `register` when imported; this package
imports all of them, so adding an op is one new file here (plus its test) and no dispatcher to
edit. Helper modules (registry, tracing, common) register nothing.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import CallSite, OpDef, all_defs, get, list_ops, of, register

_HELPERS = {"registry", "tracing", "common"}

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name not in _HELPERS:
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["CallSite", "OpDef", "all_defs", "get", "list_ops", "of", "register"]
