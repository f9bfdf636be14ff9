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


def test_an_edited_figure_is_put_back_from_the_result_files():
    code = (
        "from bench.readme import render_readme\n"
        "t = open('README.md').read()\n"
        "edited = t.replace('| 92.19 % test |', '| 99.99 % test |', 1)\n"
        "assert edited != t\n"
        "assert render_readme(edited) == t\n"
    )
    r = _python("-c", code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_mlperf_tables_are_put_back_from_the_result_files():
    code = (
        "from bench.readme import render\n"
        "t = open('results/mlperf_tiny.md').read()\n"
        "edited = t.replace('| kws | ', '| kws | 1')\n"
        "assert edited.count('| kws | 1') == 2\n"
        "assert render('results/mlperf_tiny.md', edited) == t\n"
    )
    r = _python("-c", code)
    assert r.returncode == 0, r.stdout + r.stderr
