"""Section ``flags`` (--xla-flag-sweep): the rajax forward under each XLA flag candidate, each in
its own process (XLA reads its flags once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The entry point the child processes run.
BENCHMARK_SCRIPT = Path(__file__).resolve().parents[1] / "benchmark.py"

XLA_FLAG_CANDIDATES = (
    "",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_experimental_ynn_fusion_type=+INDIVIDUAL_CONVOLUTION",
    "--xla_cpu_enable_fast_math=true",
)


def bench_xla_flags(args) -> dict:
    """Re-runs the rajax forward (float32 and bfloat16) under each XLA flag in a child process."""
    results = {}
    for flags in args.xla_flag_candidates:
        out = Path(args.json).with_suffix(f".flags{len(results)}.json")
        command = [
            sys.executable, str(BENCHMARK_SCRIPT), "--only", "forward", "--no-torch",
            "--dtypes", ",".join(args.dtypes),
            "--variants", ",".join(args.variants), "--bf16-variants", ",".join(args.bf16_variants),
            "--frames", str(args.frames),
            "--size", str(args.size), "--batch", str(args.batch), "--repeats", str(args.repeats),
            "--warmup", str(args.warmup), "--json", str(out), "--quiet",
        ]
        env = dict(os.environ, XLA_FLAGS=flags)
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        entry: dict[str, Any] = {"wall_s": time.perf_counter() - start, "returncode": proc.returncode}
        if proc.returncode == 0 and out.exists():
            forward = json.loads(out.read_text())["forward"]["contenders"]
            entry["median_s"] = {n.removeprefix("rajax "): round(r["median_s"], 4)
                                 for n, r in forward.items()}
            out.unlink()
        else:
            entry["error"] = (proc.stderr or proc.stdout)[-600:]
        results[flags or "(none)"] = entry
        print(f"  XLA_FLAGS={flags or '(none)'}: {entry.get('median_s', entry.get('error'))}", flush=True)
    return results
