"""The package's structure: no import cycles (imports inside functions and under
TYPE_CHECKING count: they only hide a cycle), no library module imports the CLI or bench, no
function over 100 lines, and no public function with more than 8 parameters (settings travel
as config objects: TrainConfig, FitRun, FinetuneConfig, SearchConfig, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

import micromix

SRC = Path(micromix.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = ["micromix", *p.relative_to(SRC).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def _imports(name: str, path: Path, is_pkg: bool, mods: dict) -> set[str]:
    """Every micromix module `name` imports, anywhere in the file; importing a submodule also
    runs its packages' __init__."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    out = set()
    for m in found:
        parts = m.split(".")
        for i in range(2, len(parts) + 1):
            target = ".".join(parts[:i])
            if target in mods and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, pkg, mods) for m, (p, pkg) in mods.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_library_imports_neither_the_cli_nor_bench():
    for mod, deps in _graph().items():
        if mod.startswith("micromix.cli") or mod == "micromix.__main__":
            continue
        assert not {d for d in deps if d.startswith("micromix.cli")}, mod
    for p in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n == "bench" or n.startswith("bench.") for n in names), p


MAX_LINES, MAX_PARAMS = 100, 8


def _oversized(source: str) -> list[str]:
    """Functions of `source` over MAX_LINES lines, and public ones (no leading underscore)
    with more than MAX_PARAMS parameters (positional and keyword-only; not self, cls, *args
    or **kwargs)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = node.args
        params = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
        n = len([p for p in params if p not in ("self", "cls")])
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_LINES:
            found.append(f"{node.name}: {lines} lines")
        if n > MAX_PARAMS and not node.name.startswith("_"):
            found.append(f"{node.name}: {n} parameters")
    return found


def test_the_size_scan_finds_long_functions_and_long_parameter_lists():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    wide = ", ".join(f"a{i}" for i in range(MAX_PARAMS))
    src = (
        f"def long():\n{body}\n"
        f"def wide(self, {wide}, *, k=1, **kw): pass\n"
        f"def ok(self, {wide}, *args, **kw): pass\n"
        f"def _private({wide}, b): pass\n"
    )
    assert _oversized(src) == [f"long: {MAX_LINES + 1} lines", f"wide: {MAX_PARAMS + 1} parameters"]


def test_no_function_is_too_long_and_no_public_one_takes_too_many_parameters():
    found = [
        f"{p.relative_to(SRC)}: {f}"
        for p in sorted(SRC.rglob("*.py"))
        for f in _oversized(p.read_text())
    ]
    assert found == []
