"""Progress of long stages: a bar on a terminal, plain periodic lines in a log.

A tqdm bar redraws itself with carriage returns, which is right on a terminal and wrong in a file
or a pipe (a 10-minute run leaves thousands of half-lines in its log). :class:`Progress` draws the
bar only when its stream is a terminal; otherwise it writes one plain line when it starts, one
every ``RAJAX_PROGRESS_SECONDS`` seconds (default 30) and one at the end::

    extract train: 40/107 videos (37%), 1.21 videos/s, 55 s left
    extract train: done, 107 videos in 1 min 28 s

Messages written with :meth:`Progress.write` go above the bar (or are plain lines).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

DEFAULT_SECONDS = 30.0


def line_interval() -> float:
    """Seconds between plain progress lines (``RAJAX_PROGRESS_SECONDS``; at least 0.1)."""
    try:
        return max(0.1, float(os.environ.get("RAJAX_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def plural(unit: str) -> str:
    """``video`` -> ``videos``, ``batch`` -> ``batches``."""
    if unit.endswith("s"):
        return unit
    return f"{unit}es" if unit.endswith(("ch", "sh", "x")) else f"{unit}s"


class Progress:
    """Progress of ``total`` units of work (``None``: unknown) named ``description``."""

    def __init__(self, total: int | None, description: str, unit: str = "it", *, enabled: bool = True,
                 initial: int = 0, stream: TextIO | None = None, bar: bool | None = None):
        self.total, self.description, self.unit = total, description, unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.count = initial
        self._initial = initial
        self._postfix = ""
        self._started = time.perf_counter()
        self._last_line = self._started
        self._interval = line_interval()
        self._bar = None
        use_bar = is_terminal(self.stream) if bar is None else bar
        if enabled and use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=description, unit=unit, file=self.stream,
                             dynamic_ncols=True)
        elif enabled:
            self._line("start")

    # -- reporting

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.perf_counter() - self._last_line >= self._interval:
            self._line()

    def set_description(self, description: str) -> None:
        self.description = description
        if self._bar is not None:
            self._bar.set_description(description)

    def set_postfix(self, **values) -> None:
        self._postfix = ", ".join(f"{key}={value}" for key, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values)

    def write(self, message: str) -> None:
        """A message that does not break the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled:
            self._line("end")
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plain lines

    def _line(self, when: str = "") -> None:
        now = time.perf_counter()
        self._last_line = now
        elapsed = now - self._started
        unit = plural(self.unit)
        if when == "end":
            text = f"{self.description}: done, {self.count} {unit} in {format_seconds(elapsed)}"
        elif when == "start":
            total = f" of {self.total}" if self.total is not None else ""
            text = f"{self.description}: starting, {self.count}{total} {unit} done"
        else:
            done = self.count - self._initial
            rate = done / elapsed if elapsed > 0 else 0.0
            text = f"{self.description}: {self.count}"
            if self.total:
                text += f"/{self.total} {unit} ({100 * self.count / self.total:.0f}%)"
            else:
                text += f" {unit}"
            text += f", {rate:.3g} {unit}/s" if rate >= 0.1 or rate == 0 else f", {1 / rate:.3g} s per {self.unit}"
            if self.total and rate > 0:
                text += f", {format_seconds((self.total - self.count) / rate)} left"
        if self._postfix:
            text += f" ({self._postfix})"
        print(text, file=self.stream, flush=True)
