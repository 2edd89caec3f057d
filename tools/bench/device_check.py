"""tools/device_check.py: one command that measures rajax on whatever accelerator JAX and torch see,
within a time budget, and writes ``device_check.json`` and ``device_check.md`` into ``--output``.

Parts, each in its own process with its share of the budget (bench.device_parts): ``info`` (the
``rajax info --json`` command), ``jax`` (I3D forward at the largest batch that fits, float32 and
bfloat16; the stage-1 training step; an 11-region extraction of one Breakfast-format video),
``torch`` (the PyTorch I3D in its fastest modes on the same device and input, and its stage-1
step) and ``pipeline`` (videos per second of the input pipeline with 1, 4 and all decoder
processes). A part is killed when it overruns its share by more than a grace period; whatever it
had measured is kept and the kill is recorded, as is any error or out-of-memory of a measurement.
Then the figures are compared across parts (rajax's features against PyTorch's float32 ones on
the same clip; the pipeline's videos per second against what the device consumes) and written.

The full form uses the paper's clip (64 timesteps x 8 frames at 224) and fits in 8 minutes on
one GPU; ``--smallest`` uses tiny inputs and fits in 2 minutes on 2 CPU cores (the test suite
runs it so that the check keeps working).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import PROJECT_ROOT, relative_error
from bench.pipeline_common import DEFAULT_CACHE
from bench.pipeline_inputs import breakfast_video

ENTRY = PROJECT_ROOT / "tools" / "device_check.py"

# The paper's clip and batch; the Breakfast-format video is 2 minutes at 15 fps.
FULL = {"frames": 512, "size": 224, "max_batch": 64, "train_batch": 4, "train_frames": 512, "train_size": 224,
        "timesteps": 64, "timestep_length": 8, "crop": 224, "frame_side": 256, "warmup": 1, "repeats": 3,
        "pipeline_videos": 32, "pipeline_batch": 4, "breakfast_frames": 1800}
SMALLEST = {"frames": 8, "size": 32, "max_batch": 2, "train_batch": 2, "train_frames": 8, "train_size": 32,
            "timesteps": 2, "timestep_length": 4, "crop": 32, "frame_side": 64, "warmup": 1, "repeats": 2,
            "pipeline_videos": 4, "pipeline_batch": 2, "breakfast_frames": 40}
# Seconds: the whole check, and each part's share of what is left when it starts.
BUDGET_S = {"full": 480, "smallest": 100}
SHARES = {"info": 0.05, "jax": 0.5, "torch": 0.3, "pipeline": 0.15}
# Each part's expected shortest measurement (a measurement is not started with less time left).
MIN_STEP_S = {"full": 20.0, "smallest": 2.0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, type=Path, help="folder for device_check.json and device_check.md")
    p.add_argument("--smallest", action="store_true",
                   help="tiny inputs: the whole check in under 2 minutes on a CPU (what the test runs)")
    p.add_argument("--budget-s", type=float, help="seconds for the whole check (full 480, smallest 100)")
    p.add_argument("--parts", default=",".join(SHARES), help=f"comma list of parts to run: {','.join(SHARES)}")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help="where the generated Breakfast-format video is kept (shared with benchmark_pipeline)")
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_part_process(name: str, spec: dict, limit_s: float, folder: Path) -> dict:
    """Runs one part in its own process, killed after ``limit_s``; its results and how it ended."""
    spec_file = folder / f"part_{name}.spec.json"
    results_file = folder / f"part_{name}.json"
    results_file.unlink(missing_ok=True)
    spec_file.write_text(json.dumps(spec | {"results_file": str(results_file)}))
    env = dict(os.environ)
    if name in ("torch", "pipeline"):  # JAX there only reads the checkpoint or nothing: the device is torch's
        env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, str(ENTRY), "--part", name, "--spec", str(spec_file), "--output", str(folder)]
    start = time.perf_counter()
    with open(folder / f"part_{name}.log", "w") as log:
        try:
            completed = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=limit_s,
                                       check=False)
            ended = "exited" if completed.returncode == 0 else f"failed with exit status {completed.returncode}"
        except subprocess.TimeoutExpired:
            ended = f"killed after {limit_s:.0f} s (over its budget)"
    results: dict[str, Any] = {}
    if results_file.exists():
        try:
            results = json.loads(results_file.read_text())
        except json.JSONDecodeError as error:
            results = {"unreadable_results": str(error)}
    results["process"] = {"ended": ended, "wall_s": time.perf_counter() - start, "limit_s": limit_s,
                          "log": str(folder / f"part_{name}.log")}
    if not ended == "exited":
        results["process"]["log_tail"] = (folder / f"part_{name}.log").read_text(errors="replace")[-3000:]
    return results


def run_info(limit_s: float) -> dict:
    """``rajax info --json``, the command itself (the versions and devices a bug report shows)."""
    start = time.perf_counter()
    try:
        completed = subprocess.run([sys.executable, "-m", "rajax", "info", "--json"], capture_output=True,
                                   text=True, timeout=limit_s, check=False, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"rajax info: no answer within {limit_s:.0f} s"}
    entry: dict[str, Any] = {"wall_s": time.perf_counter() - start}
    try:
        return entry | {"status": "ok" if completed.returncode == 0 else "error"} | json.loads(completed.stdout)
    except json.JSONDecodeError:
        return entry | {"status": "error", "error": (completed.stderr or completed.stdout)[-2000:]}


def compare_features(folder: Path) -> dict:
    """rajax's features of the shared clip against PyTorch's float32 ones, computed on the device
    by the two parts: max |diff| / max |torch|."""
    reference = folder / "torch_float32_features.npy"
    found = {}
    for dtype_name in ("float32", "bfloat16"):
        mine = folder / f"rajax_{dtype_name}_features.npy"
        if reference.exists() and mine.exists():
            found[f"rajax {dtype_name} vs torch float32"] = relative_error(np.load(mine), np.load(reference))
    return found


def consumption(results: dict) -> dict:
    """What the device consumes (stage-1 training clips/s, extraction videos/s: the best rajax
    contender of each) against what the input pipeline delivers with each number of decoders."""
    out: dict[str, Any] = {}
    train = results.get("jax", {}).get("train", {}).get("contenders", {})
    rates = [c["clips_per_s"] for c in train.values() if c.get("status") == "ok"]
    if rates:
        out["training_clips_per_s"] = max(rates)
    extraction = results.get("jax", {}).get("extraction", {})
    if extraction.get("status") == "ok":
        out["extraction_videos_per_s"] = extraction["device_videos_per_s"]
    pipeline = results.get("pipeline", {})
    for key, entry in pipeline.items():
        if not (isinstance(entry, dict) and entry.get("status") == "ok"):
            continue
        kind = key.split()[0]
        device_rate = out.get("training_clips_per_s" if kind == "training" else "extraction_videos_per_s")
        rate = entry.get("steady_videos_per_s") or entry["videos_per_s"]
        if device_rate:
            out[f"{key}: pipeline over device"] = rate / device_rate
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.part:
        from bench.device_parts import run_part

        return run_part(args.part, args.spec)

    mode = "smallest" if args.smallest else "full"
    sizes = SMALLEST if args.smallest else FULL
    total = args.budget_s or BUDGET_S[mode]
    parts = [p for p in SHARES if p in set(args.parts.split(","))]
    folder = args.output
    folder.mkdir(parents=True, exist_ok=True)
    started, start = datetime.datetime.now().astimezone(), time.perf_counter()
    results: dict[str, Any] = {
        "check": {"mode": mode, "started": started.isoformat(timespec="seconds"), "budget_s": total,
                  "sizes": sizes, "parts": parts, "argv": sys.argv[1:]},
    }

    def save():
        tmp = folder / "device_check.json.tmp"
        tmp.write_text(json.dumps(results, indent=1, default=str))
        tmp.replace(folder / "device_check.json")

    print(f"device check ({mode}), {total:.0f} s budget, results in {folder}", flush=True)
    video_start = time.perf_counter()
    video = breakfast_video(Path(args.cache_dir), sizes["breakfast_frames"])
    results["check"]["video"] = {"path": str(video), "frames": sizes["breakfast_frames"],
                                 "prepare_s": time.perf_counter() - video_start}
    spec = {"mode": mode, "smallest": args.smallest, "sizes": sizes, "output_dir": str(folder),
            "video": str(video), "min_step_s": MIN_STEP_S[mode],
            "train_variants_gpu": ["plain f32"] if args.smallest else ["plain f32", "plain bf16"],
            "train_variants_cpu": ["as_2d f32"] if args.smallest else ["as_2d f32", "as_2d bf16"]}
    for index, name in enumerate(parts):
        left = total - (time.perf_counter() - start)
        share = SHARES[name] / sum(SHARES[p] for p in parts[index:])
        budget = max(left * share, 1.0)
        grace = 0.1 * budget + (10 if args.smallest else 20)  # a measurement under way may finish
        print(f"[{name}] {budget:.0f} s", flush=True)
        if name == "info":  # a few seconds; at least 30 however small the budget (imports on a loaded machine)
            results["info"] = run_info(max(budget + grace, 30))
        else:
            part_spec = spec | {"budget_s": budget, "deadline": time.time() + budget}
            if name == "torch":
                part_spec["batch"] = results.get("jax", {}).get("forward", {}).get("largest_batch")
            results[name] = run_part_process(name, part_spec, budget + grace, folder)
        save()
    results["features_max_rel_diff"] = compare_features(folder)
    results["pipeline_against_device"] = consumption(results)
    results["check"]["wall_s"] = time.perf_counter() - start
    results["check"]["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    save()
    from bench.device_report import markdown

    table = markdown(results)
    (folder / "device_check.md").write_text(table)
    print(table, flush=True)
    print(f"\n{folder / 'device_check.json'}, {folder / 'device_check.md'}; {results['check']['wall_s']:.0f} s")
    return 0
