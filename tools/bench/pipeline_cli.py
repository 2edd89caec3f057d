"""The command line of tools/benchmark_pipeline.py: options and ``main`` (the measurements are
described in ``bench.pipeline_common``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from bench.pipeline_common import DEFAULT_CACHE, DEFAULT_VIDEO, DESCRIPTION
from bench.pipeline_inputs import breakfast_video, prepare_input
from bench.pipeline_report import report
from bench.pipeline_results import accelerator_budget, aggregate, training
from bench.pipeline_worker import run_worker, worker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--video", help=f"a video to measure besides the Breakfast-format one (default: {DEFAULT_VIDEO}"
                        " when present)")
    parser.add_argument("--json", "--output", dest="json", default="benchmark_pipeline.json",
                        help="JSON file to write every figure to")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: tiny video and sample, 1 repeat, tiny training config")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE),
                        help="generated video, TFDS builds and symlinks (reused across runs)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; every figure is the median")
    parser.add_argument("--floor-repeats", type=int, default=3, help="floor runs per round")
    parser.add_argument("--videos", type=int, default=16, help="videos per pipeline run")
    parser.add_argument("--batch", type=int, default=4, help="training clips per batch (config finetune.batch_size)")
    parser.add_argument("--cores", default="1,2", help="core counts to pin the pipelines to (scaling)")
    parser.add_argument("--breakfast-frames", type=int, default=1800, help="frames of the generated video")
    parser.add_argument("--timesteps", type=int, default=64)
    parser.add_argument("--timestep-length", type=int, default=8)
    parser.add_argument("--frame-side", type=int, default=256, help="the canvas (config data.frame_side)")
    parser.add_argument("--size", type=int, default=224, help="region size on the device (budget, training)")
    parser.add_argument("--peak-fraction", type=float, default=0.4,
                        help="fraction of the published peak the device sustains, for the budget")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--train-config", default="base")
    parser.add_argument("--train-videos", type=int, default=16, help="training: videos in the epoch")
    parser.add_argument("--train-log-every", type=int, default=2,
                        help="training: steps per log record (a log fetches the metrics: a host sync)")
    parser.add_argument("--train-batch", type=int, default=2, help="training: clips per step")
    parser.add_argument("--train-timesteps", type=int, default=8,
                        help="training: timesteps per clip (paper 64; 8 keeps a CPU step short)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        Path(spec["output"]).write_text(json.dumps(worker(spec)))
        return 0
    if args.quick:
        args.repeats, args.floor_repeats, args.videos, args.batch = 1, 1, 4, 2
        args.breakfast_frames, args.timesteps, args.timestep_length = 40, 4, 2
        args.size, args.frame_side = 32, 64
        args.train_config, args.train_videos, args.train_batch, args.train_timesteps = "tiny", 4, 2, 2
        args.train_log_every = 1
    if args.videos % args.batch:
        parser.error("--videos must be a multiple of --batch")

    start = time.perf_counter()
    allowed = sorted(os.sched_getaffinity(0))
    core_counts = sorted({min(int(c), len(allowed)) for c in args.cores.split(",")})
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    video_path = Path(args.video) if args.video else (DEFAULT_VIDEO if DEFAULT_VIDEO.exists() else None)
    if args.quick and not args.video:
        video_path = None
    section_wall = {}
    inputs = [prepare_input("breakfast", breakfast_video(cache, args.breakfast_frames), cache, args)]
    if video_path is not None:
        inputs.append(prepare_input("video", video_path, cache, args))
    section_wall["inputs"] = time.perf_counter() - start
    settings = {"timesteps": args.timesteps, "timestep_length": args.timestep_length,
                "frame_side": args.frame_side, "batch": args.batch}

    runs = []
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        for round_ in range(args.repeats):
            for cores in core_counts:
                print(f"round {round_ + 1}/{args.repeats}: pipelines on {cores} core(s)"
                      + (" + floors" if cores == core_counts[0] else ""), flush=True)
                runs.append(run_worker({
                    "cores": allowed[:cores], "inputs": inputs, "settings": settings,
                    "floors": cores == core_counts[0], "floor_repeats": args.floor_repeats,
                }, Path(workdir)))
    load_after = os.getloadavg()
    section_wall["workers"] = time.perf_counter() - started

    import tensorflow as tf

    measured = aggregate(runs, inputs, core_counts)
    video_name = inputs[-1]["name"]
    file_pipes = measured[video_name]["pipelines"]
    results = {
        "host_cpu_s_per_training_clip": file_pipes["training from file"]["host_cpu_s"],
        "host_cpu_s_per_extraction_video": file_pipes["extraction from file"]["host_cpu_s"],
        "decode_floor_cpu_s": measured[video_name]["floors"]["pyav_floor"]["cpu_s"],
        "training_clip_over_floor": file_pipes["training from file"]["ratio_to_floor"],
        "extraction_video_over_floor": file_pipes["extraction from file"]["ratio_to_floor"],
        "video_input": video_name,
        "machine": {
            "cpus": os.cpu_count(), "cores_allowed": len(allowed), "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "load_average_before": load_before, "load_average_after": load_after,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "json")} | {"cores": core_counts},
        "inputs": measured,
    }
    results["accelerator_budget"] = accelerator_budget(args, measured)
    if not args.skip_training:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as workdir:
            results["training"] = training(inputs[-1]["path"], args, Path(workdir))
        section_wall["training"] = time.perf_counter() - started
    results["wall_s"] = time.perf_counter() - start
    results["section_wall_s"] = section_wall
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"\n{len(allowed)} cores; medians over {args.repeats} rounds; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; {results['wall_s']:.0f} s; JSON: {args.json}")
    return 0
