"""`rajax classify` on one clip: a cold call (empty cache) against a warm one (the second on a machine).

    .venv/bin/python tools/benchmark_classify.py                     # the Kinetics clip, 32 frames
    .venv/bin/python tools/benchmark_classify.py VIDEO --frames 64 --runs 5 --json out.json

Each call is a fresh `rajax classify` process, as a user types it. Cold: every call gets its own
empty cache folder (XDG_CACHE_HOME), so JAX traces and compiles. Warm: one folder shared by all
calls, filled by an untimed first call. Wall time and the process's CPU time (getrusage of the
children: steadier than wall time on a shared machine) are medians over --runs calls, alternating
cold and warm so that a burst of load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = CHECKOUT.parent / "shared" / "data" / "kinetics_clips" / "arm_wrestling.mp4"


def timed_call(command: list[str], cache_home: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``rajax classify`` process with its cache in ``cache_home``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**_environment(), "XDG_CACHE_HOME": cache_home})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _environment() -> dict:
    """This process's environment, the compilation cache switched on whatever the caller set."""
    switches = ("RAJAX_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")
    return {key: value for key, value in os.environ.items() if key not in switches}


def measure(video: Path, frames: int, runs: int) -> dict:
    rajax = Path(sys.executable).with_name("rajax")
    command = [str(rajax), "classify", str(video), "--frames", str(frames), "--json"]
    with tempfile.TemporaryDirectory(prefix="rajax-classify-bench-") as scratch:
        warm_home = f"{scratch}/warm"
        timed_call(command, warm_home)  # fills the warm cache
        cold, warm = [], []
        for run in range(runs):
            cold.append(timed_call(command, f"{scratch}/cold{run}"))
            warm.append(timed_call(command, warm_home))
    median = lambda values, i: statistics.median(v[i] for v in values)  # noqa: E731
    result = {"video": str(video), "frames": frames, "runs": runs,
              "cold_wall_s": median(cold, 0), "cold_cpu_s": median(cold, 1),
              "warm_wall_s": median(warm, 0), "warm_cpu_s": median(warm, 1)}
    result["warm_over_cold_wall"] = result["warm_wall_s"] / result["cold_wall_s"]
    result["warm_over_cold_cpu"] = result["warm_cpu_s"] / result["cold_cpu_s"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        parser.error(f"{args.video}: no such video")
    result = measure(args.video, args.frames, args.runs)
    print(f"{args.video.name}, {args.frames} frames, medians of {args.runs} calls: "
          f"cold {result['cold_wall_s']:.1f} s wall ({result['cold_cpu_s']:.1f} s CPU), "
          f"warm {result['warm_wall_s']:.1f} s wall ({result['warm_cpu_s']:.1f} s CPU): "
          f"warm/cold {result['warm_over_cold_wall']:.2f} wall, {result['warm_over_cold_cpu']:.2f} CPU")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
