"""Round-robin timing, the compile counter, and timed result sections with their ratios."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def stats(runs: list[float]) -> dict:
    runs_sorted = sorted(runs)
    return {
        "median_s": float(np.median(runs_sorted)),
        "min_s": runs_sorted[0],
        "max_s": runs_sorted[-1],
        "runs_s": [round(r, 5) for r in runs],
    }


def time_round_robin(
    contenders: dict[str, Callable[[], Any]], warmup: int, repeats: int
) -> dict[str, dict]:
    """Times each blocking callable `repeats` times, one call of each per round.

    Interleaving makes the ratios between contenders robust to load that comes and goes on a
    shared machine: a slow second slows every contender's run of that round.
    """
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: stats(r) for name, r in runs.items()}


class CompileCounter:
    """Counts XLA backend compilations (jax.monitoring events) while active."""

    def __init__(self):
        import jax

        self.count = 0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, name: str, seconds: float, **kwargs) -> None:
        if self.active and name.endswith("backend_compile_duration"):
            self.count += 1

    @contextlib.contextmanager
    def counting(self):
        self.count, self.active = 0, True
        try:
            yield self
        finally:
            self.active = False


def timed_section(contenders, meta, compile_counter, warmup, repeats, inputs, flops_per_clip) -> dict:
    """Times ``contenders`` round-robin (counting compilations) into a result section."""
    with compile_counter.counting() as counter:
        timings = time_round_robin(contenders, warmup, repeats)
    results = {}
    for name, timing in timings.items():
        entry = meta[name] | timing
        entry["clips_per_s"] = inputs["batch"] / timing["median_s"]
        entry["tflops"] = flops_per_clip * inputs["batch"] / timing["median_s"] / 1e12
        results[name] = entry
    return {
        "input": inputs,
        "flops_per_clip": flops_per_clip,
        "recompilations_during_timing": counter.count,
        "contenders": results,
        "ratios": ratios(results),
    }


def ratios(results: dict) -> dict:
    """Speed of the best rajax contender over the best PyTorch one, per dtype (> 1: rajax faster)."""
    def best(framework, dtype_name):
        candidates = [
            (r["median_s"], n) for n, r in results.items()
            if r["framework"] == framework and r["dtype"] == dtype_name
        ]
        return min(candidates) if candidates else None

    found = {}
    for dtype_name in ("float32", "bfloat16"):
        rajax_best, torch_best = best("rajax", dtype_name), best("torch", dtype_name)
        if rajax_best and torch_best:
            found[dtype_name] = {
                "rajax": rajax_best[1],
                "torch": torch_best[1],
                "speedup_rajax_over_torch": torch_best[0] / rajax_best[0],
            }
    return found
