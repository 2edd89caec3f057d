"""rajax.progress: plain periodic lines in a log or pipe, a bar on a terminal."""

import fcntl
import io
import os
import select
import struct
import termios

from rajax import progress


class Clock:
    """A clock the test moves by hand, so that the lines do not depend on the machine's speed."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_log_gets_a_start_line_periodic_lines_with_rate_and_time_left_and_an_end_line(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    monkeypatch.setenv("RAJAX_PROGRESS_SECONDS", "5")
    log = io.StringIO()
    with progress.Progress(100, "extract train", "video", stream=log) as bar:
        for _ in range(40):
            clock.now += 0.5  # 2 videos a second
            bar.update()
            if bar.count == 30:
                bar.set_postfix(loss="1.23")
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == [
        "extract train: starting, 0 of 100 videos done",
        "extract train: 10/100 videos (10%), 2 videos/s, 45 s left",
        "extract train: 20/100 videos (20%), 2 videos/s, 40 s left",
        "extract train: 30/100 videos (30%), 2 videos/s, 35 s left",
        "extract train: 40/100 videos (40%), 2 videos/s, 30 s left (loss=1.23)",
        "extract train: done, 40 videos in 20 s (loss=1.23)",
    ]


def test_periodic_lines_come_at_the_interval(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    monkeypatch.setenv("RAJAX_PROGRESS_SECONDS", "10")
    log = io.StringIO()
    with progress.Progress(50, "finetune epoch 1/2", "step", stream=log) as bar:
        for _ in range(50):
            clock.now += 1.0
            bar.update()
    lines = log.getvalue().splitlines()
    # start, after 10, 20, 30, 40 and 50 s, end
    assert len(lines) == 7, lines
    assert lines[1] == "finetune epoch 1/2: 10/50 steps (20%), 1 steps/s, 40 s left"
    assert lines[-2] == "finetune epoch 1/2: 50/50 steps (100%), 1 steps/s, 0 s left"
    assert lines[-1] == "finetune epoch 1/2: done, 50 steps in 50 s"
    slow = io.StringIO()
    with progress.Progress(None, "detect actors", "video", stream=slow) as bar:
        clock.now += 40.0
        bar.update()
    assert slow.getvalue().splitlines()[1] == "detect actors: 1 videos, 40 s per video"


def test_a_terminal_gets_a_bar_and_a_disabled_progress_writes_nothing():
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with os.fdopen(follower, "w") as terminal:
        assert progress.is_terminal(terminal)
        with progress.Progress(3, "heads", "step", stream=terminal) as bar:
            bar.update(3)
        terminal.flush()
        drawn = b""
        while select.select([leader], [], [], 0.5)[0]:  # everything written so far
            drawn += os.read(leader, 65536)
        drawn = drawn.decode()
    os.close(leader)
    assert "\r" in drawn and "heads" in drawn and "3/3" in drawn
    quiet = io.StringIO()
    with progress.Progress(3, "heads", "step", stream=quiet, enabled=False) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
    assert progress.format_seconds(59) == "59 s" and progress.format_seconds(185) == "3 min 05 s"
    assert progress.format_seconds(3720) == "1 h 02 min"
    assert [progress.plural(u) for u in ("video", "batch", "steps", "box")] == ["videos", "batches", "steps", "boxes"]
