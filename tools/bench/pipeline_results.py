"""The workers' runs aggregated per input and pipeline, the accelerator budget, and the training
section (stage 1 through the real trainer)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.pipeline_common import PIPELINES, median


# Published dense peaks in TFLOP/s: (bfloat16 matrix units, float32 as the crops run it).
# H100 SXM5 and H200 SXM: 989 TFLOP/s bf16 dense (1979 "with sparsity" on the datasheets), 67
# TFLOP/s FP32 (CUDA cores; the crops ask for full float32, so no TF32). TPU v5e: 197 TFLOP/s
# bf16 per chip; full-precision float32 matrix products run as 6 bf16 passes, so 197 / 6.
ACCELERATORS = {
    "H100 SXM": (989.4, 66.9),
    "H200 SXM": (989.4, 66.9),
    "TPU v5e": (197.0, 197.0 / 6),
}


def aggregate(runs: list[dict], inputs: list[dict], core_counts: list[int]) -> dict:
    most = max(core_counts)
    results = {}
    for item in inputs:
        name = item["name"]
        floor_runs = [r["floors"][name] for r in runs if name in r["floors"]]
        floor = {key: {"cpu_s": median(f[key]["cpu_s"] for f in floor_runs),
                       "wall_s": median(f[key]["wall_s"] for f in floor_runs)}
                 for key in floor_runs[0] if key != "sample"}
        floor["sample"] = floor_runs[0]["sample"]
        pipelines = {}
        for pipe in PIPELINES:
            entry = {}
            for cores in core_counts:
                mine = [r["pipelines"][name][pipe] for r in runs if r["cores"] == cores]
                entry[f"{cores}_cores"] = {key: median(m[key] for m in mine) for key in mine[0] if key != "videos"}
                entry[f"{cores}_cores"] |= {
                    "videos_per_s": 1 / entry[f"{cores}_cores"]["wall_s_per_video"],
                    "steady_videos_per_s": 1 / entry[f"{cores}_cores"]["steady_wall_s_per_video"]
                    if entry[f"{cores}_cores"]["steady_wall_s_per_video"] else None,
                    "runs_wall_s_per_video": [m["wall_s_per_video"] for m in mine],
                    "runs_steady_wall_s_per_video": [m["steady_wall_s_per_video"] for m in mine],
                }
            floor_key = "tf_decode_jpeg" if "TFDS" in pipe else "pyav_floor"
            entry["host_cpu_s"] = entry[f"{most}_cores"]["host_cpu_s_per_video"]
            entry["floor"] = floor_key
            entry["floor_cpu_s"] = floor[floor_key]["cpu_s"]
            entry["ratio_to_floor"] = entry["host_cpu_s"] / entry["floor_cpu_s"]
            for cores in core_counts:
                entry[f"ratio_to_floor_{cores}_cores"] = (
                    entry[f"{cores}_cores"]["host_cpu_s_per_video"] / entry["floor_cpu_s"])
            if len(core_counts) > 1:
                least, low, high = min(core_counts), entry[f"{min(core_counts)}_cores"], entry[f"{most}_cores"]
                # Throughput ratio: of a long epoch (after the first batch), and of the whole short run.
                entry[f"speedup_{least}_to_{most}_cores"] = (
                    low["steady_wall_s_per_video"] / high["steady_wall_s_per_video"]
                    if low["steady_wall_s_per_video"] and high["steady_wall_s_per_video"] else None)
                entry[f"speedup_{least}_to_{most}_cores_whole_run"] = low["wall_s_per_video"] / high["wall_s_per_video"]
            pipelines[pipe] = entry
        results[name] = {key: item[key] for key in ("path", "bytes", "num_frames", "size", "fps")}
        results[name] |= {"floors": floor, "pipelines": pipelines}
    return results


def accelerator_budget(args, inputs: dict) -> dict:
    from rajax.data.regions import REGION_NAMES
    from rajax.reference.architecture import forward_macs, train_step_macs

    frames, size, side = args.timesteps * args.timestep_length, args.size, args.frame_side
    forward = 2 * forward_macs(frames, size, size)
    step = 2 * train_step_macs(frames, size, size)
    # rajax.data.crops.crop_resize: [N, F, F, 3] x [size, F] along the width, then [size, F] along
    # the height, dense over the whole canvas: N * 3 * size * F * (F + size) multiply-accumulates.
    crop = 2 * frames * 3 * size * side * (side + size)
    regions = len(REGION_NAMES)
    out = {
        "peak_fraction": args.peak_fraction,
        "flops": {"forward_per_region": forward, "stage1_step_per_clip": step,
                  "stage1_step_over_forward": step / forward, "crop_per_region": crop,
                  "training_clip": step + crop, "extraction_video": regions * (forward + crop)},
        "accelerators": {},
    }
    for name, (bf16, fp32) in ACCELERATORS.items():
        network = lambda flops: flops / (bf16 * 1e12 * args.peak_fraction)  # noqa: E731
        cropping = lambda flops: flops / (fp32 * 1e12 * args.peak_fraction)  # noqa: E731
        train_s = network(step) + cropping(crop)
        extract_s = regions * (network(forward) + cropping(crop))
        entry = {
            "peak_tflops_bf16": bf16, "peak_tflops_fp32": fp32,
            "device_s_per_training_clip": train_s, "device_s_per_extraction_video": extract_s,
            "crop_share_training": cropping(crop) / train_s, "crop_share_extraction": cropping(crop) * regions / extract_s,
            "host_cores_to_keep_busy": {},
        }
        for input_name, result in inputs.items():
            cores = {}
            for pipe, p in result["pipelines"].items():
                device_s = train_s if pipe.startswith("training") else extract_s
                cores[pipe] = p["host_cpu_s"] / device_s
            entry["host_cores_to_keep_busy"][input_name] = cores
        out["accelerators"][name] = entry
    return out


def training(path: str, args, workdir: Path) -> dict:
    """One epoch of stage-1 fine-tuning through the real trainer; idle figures from its log."""
    from rajax.train import metrics, stages
    from rajax.train.config import apply_overrides, load_config

    rows = ["path,label,split"]
    config = load_config(args.train_config)
    for i in range(args.train_videos):
        link = workdir / f"video_{i:03d}{Path(path).suffix}"
        link.symlink_to(Path(path).resolve())
        rows.append(f"{link.name},{config.classes[i % len(config.classes)]},train")
    (workdir / "videos.csv").write_text("\n".join(rows) + "\n")
    config = apply_overrides(config, {
        "data.csv": str(workdir / "videos.csv"), "data.validation_split": "", "data.test_split": "",
        "data.num_timesteps": str(args.train_timesteps), "data.frames_per_timestep": str(args.timestep_length),
        "data.crop_size": str(args.size), "data.frame_side": str(args.frame_side),
        "finetune.batch_size": str(args.train_batch), "finetune.num_epochs": "1",
        "log_every_steps": str(args.train_log_every), "checkpoint.every_steps": "100000",
    })
    start = time.perf_counter()
    stages.train(config, workdir / "run", "finetune", progress=False)
    wall = time.perf_counter() - start
    records = [r for r in metrics.read_metrics(workdir / "run" / "finetune") if r["split"] == "train"]
    timed = records[1:]  # the first record holds the compiling step
    if not timed:
        raise SystemExit("training: too few steps to time; raise --train-videos")
    return {
        "config": args.train_config,
        "steps": records[-1]["step"],
        "batch": args.train_batch,
        "frames": args.train_timesteps * args.timestep_length,
        "device_idle_fraction_median": statistics.median(r["device_idle_fraction"] for r in timed),
        "input_wait_fraction_median": statistics.median(r["input_wait_fraction"] for r in timed),
        "seconds_per_step_median": statistics.median(1 / r["steps_per_second"] for r in timed),
        "per_step": [{key: r[key] for key in ("step", "device_idle_fraction", "input_wait_fraction",
                                               "steps_per_second")} for r in records],
        "wall_s_including_compile_and_export": wall,
    }
