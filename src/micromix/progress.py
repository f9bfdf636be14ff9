"""Progress for people and for machines: a bar on a terminal, plain lines everywhere else.

A bar redraws itself with carriage returns; sent to a file (CI, batch jobs, `nohup`) every
redraw becomes a line, and a demo's log grew to ~20,000 of them. So a bar is drawn only when
its stream is a terminal; otherwise a job reports one line per unit that matters (an epoch, a
search batch, a stage) with the elapsed time and an estimate of the time left.

    p = Progress(40, "haq")                # bar on a TTY, else one line per update
    p.update(4, "best 91.00%")
    p.close()
    p = Progress(n, "qat 1/3", lines=False)  # batches: a bar on a TTY, silent otherwise
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr, where bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`: short, and the same width for similar spans."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def eta(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left if the remaining steps take what the finished ones took on average; None
    before the first step (nothing to extrapolate from)."""
    if done <= 0:
        return None
    return elapsed / done * max(total - done, 0)


class Progress:
    """`total` steps of a job named `desc`.

    On a terminal (`stream`, default stderr) a tqdm bar; elsewhere, when `lines`, one line per
    `update` on `out` (default stdout) with the count, a note, the elapsed time and the time
    left (no estimate when `total` is None: steps of unlike sizes, such as a run's stages).
    `lines=False`: nothing off a terminal (inner loops such as batches). `bar=False`: the lines
    on a terminal too (a per-epoch summary under a batch bar). `initial` steps were done before
    (a resume): the estimate uses only the steps timed here.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        enabled: bool = True,
        lines: bool = True,
        bar: bool = True,
        initial: int = 0,
        stream: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.total, self.desc, self.done = total, desc, initial
        self._start_done, self._t0 = initial, time.monotonic()
        self._out = out
        tty = enabled and is_terminal(stream)
        self._bar = None
        if tty and bar:
            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                file=stream if stream is not None else sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
        self.enabled = enabled
        self._lines = enabled and lines and self._bar is None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def remaining(self) -> float | None:
        """Estimated seconds left (None before the first timed step, or with no total)."""
        if self.total is None:
            return None
        return eta(self.elapsed, self.done - self._start_done, self.total - self._start_done)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if note:
                self._bar.set_postfix_str(note, refresh=False)
        elif self._lines:
            self.write(f"{self.desc} {self.done}/{self.total}" + (f": {note}" if note else ""))

    def write(self, text: str) -> None:
        """One line: `text`, then the elapsed time and the estimate of the time left."""
        if not self.enabled:
            return
        left = self.remaining()
        tail = f"{duration(self.elapsed)} elapsed"
        if left is not None and self.total is not None and self.done < self.total:
            tail += f", ~{duration(left)} left"
        line = f"{text} [{tail}]"
        if self._bar is not None:
            self._bar.write(line, file=self._out or sys.stdout)
        else:
            print(line, file=self._out or sys.stdout, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
