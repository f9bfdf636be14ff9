"""The README's measured blocks are rendered from results/*.json (bench/readme.py): the README
and the result files cannot disagree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_readme_shows_the_figures_of_the_result_files():
    r = _python("-m", "bench.readme", "--check")
    assert r.returncode == 0, r.stdout + r.stderr


def _edit_is_put_back(doc: str, old: str, new: str, count: int) -> None:
    """Replacing `old` with `new` in `doc` changes `count` places, and rendering the document's
    blocks from the result files gives back the committed text."""
    code = (
        "from bench.readme import render\n"
        f"t = open({doc!r}).read()\n"
        f"edited = t.replace({old!r}, {new!r})\n"
        f"assert edited.count({new!r}) == {count}\n"
        f"assert render({doc!r}, edited) == t\n"
    )
    r = _python("-c", code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_edited_figure_is_put_back_from_the_result_files():
    _edit_is_put_back("README.md", "| 92.19 % test |", "| 99.99 % test |", 1)


def test_the_mlperf_tables_are_put_back_from_the_result_files():
    _edit_is_put_back("results/mlperf_tiny.md", "| kws | ", "| kws | 1", 2)


def test_a_goal_verdict_follows_the_figures(monkeypatch):
    """The goals block judges each goal from the result files: a mixed build slower than its
    W8/A8 reads NOT met, and one no slower reads met."""
    monkeypatch.syspath_prepend(str(ROOT))
    from bench import readme

    real = readme._load

    def with_mixed(factor: float):
        def load(name: str):
            d = real(name)
            if name == "mcu_cost.json":
                for net, cores in d["networks"].items():
                    b = cores["cortex-m4"]
                    b[readme.mixed_build(net)]["est_cycles"] = int(
                        b["micromix_w8a8"]["est_cycles"] * factor
                    )
            return d

        return load

    line = "- every mixed policy <= 1.0x its W8/A8: "
    monkeypatch.setattr(readme, "_load", with_mixed(1.01))
    assert f"{line}**NOT met**" in readme.goals_block()
    monkeypatch.setattr(readme, "_load", with_mixed(0.99))
    assert f"{line}met" in readme.goals_block()
