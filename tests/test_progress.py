"""progress.py: bars only on a terminal, bounded lines with elapsed time and ETA elsewhere."""

from __future__ import annotations

import io
import re

from hypothesis import given
from hypothesis import strategies as st

from micromix.progress import Progress, duration, eta, is_terminal


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_line_per_update_with_elapsed_and_eta():
    err, out = io.StringIO(), io.StringIO()
    p = Progress(10, "haq", stream=err, out=out)
    for _ in range(4):
        p.update(1, "best 90.00%")
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and err.getvalue() == ""  # no bar, no carriage returns
    assert "\r" not in out.getvalue()
    assert all("elapsed" in line and "left" in line for line in lines)
    assert lines[-1].startswith("haq 4/10: best 90.00%")


def test_the_last_step_has_no_time_left_and_stages_have_no_estimate():
    out = io.StringIO()
    p = Progress(2, "x", stream=io.StringIO(), out=out)
    p.update(2)
    stages = Progress(None, "stages", stream=io.StringIO(), out=out)
    stages.write("stage float done")
    lines = out.getvalue().splitlines()
    assert "left" not in lines[0] and "elapsed" in lines[0]
    assert "left" not in lines[1] and "elapsed" in lines[1]


def test_inner_loops_are_silent_off_a_terminal_and_a_bar_on_one():
    out = io.StringIO()
    quiet = Progress(500, "qat 1/3", lines=False, stream=io.StringIO(), out=out)
    for _ in range(500):
        quiet.update(1, "loss=1.0")
    tty = FakeTTY()
    bar = Progress(500, "qat 1/3", lines=False, stream=tty, out=out)
    for _ in range(500):
        bar.update(1)
    bar.close()
    assert out.getvalue() == ""
    assert "qat 1/3" in tty.getvalue() and "\r" in tty.getvalue()


def test_disabled_writes_nothing_anywhere():
    tty, out = FakeTTY(), io.StringIO()
    p = Progress(3, "x", enabled=False, stream=tty, out=out)
    p.update(3, "done")
    p.write("stage search done")  # --quiet: not even the per-stage lines
    p.close()
    assert tty.getvalue() == "" and out.getvalue() == ""


def test_resumed_steps_do_not_count_towards_the_estimate():
    p = Progress(10, "x", initial=8, stream=io.StringIO(), out=io.StringIO())
    assert p.remaining() is None  # nothing timed yet, even though 8 of 10 are done


def test_is_terminal_of_files_and_closed_streams():
    s = io.StringIO()
    assert not is_terminal(s)
    s.close()
    assert not is_terminal(s)
    assert is_terminal(FakeTTY())


@given(st.floats(0, 1e5), st.integers(1, 1000), st.integers(0, 1000))
def test_eta_is_the_mean_step_time_the_remaining_steps(elapsed, done, extra):
    total = done + extra
    left = eta(elapsed, done, total)
    assert left is not None and left >= 0
    # the finished steps' rate, carried over: elapsed + left = mean step x total
    assert abs((elapsed + left) - elapsed / done * total) <= 1e-6 * max(1.0, elapsed * total)


@given(st.floats(0, 3e5))
def test_duration_parses_back_to_the_rounded_seconds(seconds):
    text = duration(seconds)
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert m and text
    h, mi, s = (int(g or 0) for g in m.groups())
    total = h * 3600 + mi * 60 + s
    exact = round(seconds)
    # hours drop the seconds: within a minute then, exact below an hour
    assert total == exact if exact < 3600 else 0 <= exact - total < 60
