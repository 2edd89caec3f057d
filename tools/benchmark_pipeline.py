"""Host CPU cost of the input pipeline per training clip and per extraction video, against the
decode floor of the same input, its scaling from 1 to 2 cores, and the accelerator budget.

The host only decodes (``rajax.data.pipeline``): it hands the device each video's sampled frames as
uint8 squares on a fixed canvas plus integer region boxes; cropping, resizing and scaling run in
the compiled step (``rajax.data.crops``). So the host's work per video is decoding, and this
benchmark measures how close the pipeline gets to the cost of decoding alone.

Inputs (each read from its file and from TFDS JPEG frames, a ``video_folder`` build made here):

- ``breakfast``: a Breakfast-format video generated here (MPEG-4, 320x240, 15 fps, 2 minutes =
  1800 frames; moving textured background, moving discs and per-pixel noise, about as hard to
  compress as a real kitchen video), cached in ``--cache-dir``;
- ``video``: ``--video PATH`` (default: the shared dancer video, 1571 frames of 518x496).

Figures, each in a fresh worker process (``os.sched_setaffinity`` before TensorFlow starts):

- pipelines: ``training_dataset`` (one 512-frame clip per video, batches of ``--batch``) and
  ``evaluation_dataset`` (the 11-region extraction element: the same 512 frames, 11 boxes), over
  ``--videos`` videos (distinct symlinks, so every video is probed as in a first epoch; TFDS: the
  example repeated), run to completion with ``as_numpy_iterator`` and no model: host CPU seconds
  (``resource.getrusage(RUSAGE_SELF)`` user + system, all threads of the process, plus the same
  figures of its decoder processes, ``rajax.data.decoders``, which decode the video files) and
  wall seconds per video. Dataset construction (tracing) is outside the timing; the first elements'
  start-up is inside it.
- core scaling: the same pipelines pinned to 1 core and to 2 cores (``--cores``); throughput is
  videos per wall second, the speed-up is the ratio. The host CPU figures are those of the run on
  the most cores.
- decode floors, one thread (pinned to one core, PyAV ``thread_count=1``, ``map_fn`` with
  ``parallel_iterations=1``), of the same sample (T x L uniform frames), host CPU seconds:
  ``pyav_decode`` decodes every frame up to the last sampled one and converts none (a lower bound
  no pipeline reaches: it must hand over pixels); ``pyav_decode_rgb_own_size`` also converts the
  sampled frames to RGB at the video's size and keeps them; ``pyav_decode_rgb_canvas_size``
  instead scales them to the canvas size in the decoder's pixel format (area) and then converts
  (the same as the former when the square fits the canvas, e.g. Breakfast's 240); the FILE FLOOR
  (``pyav_floor``) is the cheaper of these two: what any pipeline must pay to hold the sampled
  frames as RGB at the size it hands over or larger. ``tf_decode_jpeg`` (the TFDS FLOOR) decodes
  the sampled stored JPEG frames with ``tf.io.decode_jpeg``. For the record, not floors:
  ``pyav_decode_rgb_as_rajax`` (scaled while converting to RGB, as ``rajax.data.video`` does),
  ``rajax_loader`` (``load_file_video``: a decoder process's work per video, without tf.data),
  ``probe`` (``video.probe`` of an unseen path) and ``tfds_read`` (reading and parsing one stored
  example: every frame's JPEG bytes).
- accelerator budget: device seconds per training clip and per extraction video on an H100, an
  H200 and a TPU v5e at ``--peak-fraction`` of their published dense peaks, from the FLOP count of
  the network (``rajax.reference.architecture``: ``train_step_macs`` for a stage-1 step, 1.13x
  the forward pass, XLA's cost analysis 1.12x; ``forward_macs`` x 11 regions for extraction) plus
  the device-side crops (float32 matrix products at full precision, counted at the float32 peak),
  and how many host cores at the measured host cost keep each accelerator busy.
- ``training``: ``rajax train`` stage 1 (the real tf.data pipeline and trainer; Kinetics-400 I3D,
  the ``--video`` input read ``--train-videos`` times, one random region per video) for one epoch:
  the share of the time the devices sat idle waiting for the next step (``device_idle_fraction``
  in ``metrics.jsonl``), the share the host waited for a batch, seconds per step.

Every figure is the median over ``--repeats`` rounds (1-core and 2-core workers alternate). Writes
every figure to ``--json``; the top-level keys ``host_cpu_s_per_training_clip``,
``host_cpu_s_per_extraction_video`` and ``decode_floor_cpu_s`` are the ``--video`` input read
from its file.

    .venv/bin/python tools/benchmark_pipeline.py --json benchmark_pipeline.json
    .venv/bin/python tools/benchmark_pipeline.py --quick --json /tmp/quick.json   # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "dancer" / "dancer.avi"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rajax" / "benchmark_pipeline"

# Published dense peaks in TFLOP/s: (bfloat16 matrix units, float32 as the crops run it).
# H100 SXM5 and H200 SXM: 989 TFLOP/s bf16 dense (1979 "with sparsity" on the datasheets), 67
# TFLOP/s FP32 (CUDA cores; the crops ask for full float32, so no TF32). TPU v5e: 197 TFLOP/s
# bf16 per chip; full-precision float32 matrix products run as 6 bf16 passes, so 197 / 6.
ACCELERATORS = {
    "H100 SXM": (989.4, 66.9),
    "H200 SXM": (989.4, 66.9),
    "TPU v5e": (197.0, 197.0 / 6),
}
PIPELINES = ("training from file", "extraction from file", "training from TFDS", "extraction from TFDS")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def usage() -> dict:
    """This process's own usage plus that of its decoder processes (which decode the video files;
    ``getrusage`` of this process does not count them, they report their own)."""
    from rajax.data import decoders

    u, workers = resource.getrusage(resource.RUSAGE_SELF), decoders.shared_usage()
    return {"user_s": u.ru_utime + workers["user_s"], "system_s": u.ru_stime + workers["system_s"],
            "minor_faults": u.ru_minflt + workers["minor_faults"],
            "context_switches": u.ru_nvcsw + u.ru_nivcsw + workers["context_switches"]}


def measure(function):
    """``(result, host CPU s, wall s)`` of one call."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = function()
    return result, cpu_seconds() - cpu, time.perf_counter() - wall


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------------
# Inputs (main process)


def breakfast_frames(num_frames: int, height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """Synthetic Breakfast-format frames: a scrolling blocky texture, four moving discs and
    per-pixel noise, so that MPEG-4 spends a realistic number of bits on them."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(40, 216, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    texture = texture.repeat(8, 0).repeat(8, 1)[:height, :width].astype(np.int16)
    y, x = np.mgrid[0:height, 0:width]
    colours = np.array([[200, 60, 40], [40, 180, 90], [230, 220, 60], [60, 90, 210]], np.int16)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frame = np.roll(texture, (i // 3, i // 2), axis=(0, 1))
        for k in range(4):
            cx = width / 2 + width / 3 * np.sin(i / 40 + 1.7 * k)
            cy = height / 2 + height / 3 * np.cos(i / 55 + k)
            frame[(x - cx) ** 2 + (y - cy) ** 2 < (18 + 8 * k) ** 2] = colours[k]
        frame = frame + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
        frames[i] = np.clip(frame, 0, 255)
    return frames


def breakfast_video(cache: Path, num_frames: int) -> Path:
    from rajax.data import video

    path = cache / f"breakfast_format_{num_frames}" / "manual" / "clip" / "breakfast_format.avi"
    if not path.exists():
        print(f"writing a Breakfast-format video ({num_frames} frames, 320x240, 15 fps) to {path}", flush=True)
        video.write_video(path, breakfast_frames(num_frames), fps=15)
    return path


def prepare_input(name: str, path: Path, cache: Path, args) -> dict:
    """The input's manual folder, TFDS build (cached by content key) and ``--videos`` symlinks."""
    import tensorflow_datasets as tfds

    from rajax.data import video
    from rajax.datasets.video_folder import VideoFolder

    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha1(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache / f"{name}_{key}"
    manual = folder / "manual"
    if not (manual / "clip" / path.name).exists():
        (manual / "clip").mkdir(parents=True, exist_ok=True)
        (manual / "clip" / path.name).symlink_to(path)
    data_dir = folder / "tfds"
    builder = VideoFolder(data_dir=str(data_dir))
    if not builder.is_prepared():
        print(f"building the TFDS frames of {path.name} in {data_dir}", flush=True)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    links = folder / "links"
    links.mkdir(exist_ok=True)
    paths = []
    for i in range(args.videos):
        link = links / f"v{i:03d}{path.suffix}"
        if not link.is_symlink():
            link.symlink_to(path)
        paths.append(str(link))
    info = video.probe(path)
    return {
        "name": name,
        "path": str(path),
        "bytes": stat.st_size,
        "num_frames": info.num_frames,
        "size": f"{info.width}x{info.height}",
        "fps": info.fps,
        "links": paths,
        "tfds_data_dir": str(data_dir),
        "probe_dir": str(folder / "probe"),
    }


# ---------------------------------------------------------------------------------------------
# Worker process: one set of measurements on a fixed set of cores


def worker(spec: dict) -> dict:
    cores = spec["cores"]
    os.sched_setaffinity(0, cores)  # before TensorFlow sizes its thread pools
    import tensorflow as tf

    from rajax.data import pipeline, sampling, video
    from rajax.data.sources import tfds_videos
    from rajax.data.records import VideoRecord
    from rajax.datasets.video_folder import VideoFolder

    settings = spec["settings"]
    T, L, F, B = settings["timesteps"], settings["timestep_length"], settings["frame_side"], settings["batch"]
    common = {"num_timesteps": T, "timestep_length": L, "frame_side": F, "shard": None}

    def datasets(item, count):
        records = [VideoRecord(f"v{i}", p, 0) for i, p in enumerate(item["links"][:count])]
        builder = VideoFolder(data_dir=item["tfds_data_dir"])

        def tfds_source():
            return tfds_videos(builder.as_dataset(split="train")).repeat(count)

        batch = B if count % B == 0 else 1
        return {
            "training from file": lambda: pipeline.training_dataset(records, epoch=0, batch_size=batch, **common),
            "extraction from file": lambda: pipeline.evaluation_dataset(records, batch_size=1, **common),
            "training from TFDS": lambda: pipeline.training_dataset(
                tfds_source(), epoch=0, batch_size=batch, num_videos=count, **common),
            "extraction from TFDS": lambda: pipeline.evaluation_dataset(
                tfds_source(), batch_size=1, num_videos=count, **common),
        }

    def run(make, count):
        dataset = make()  # built (traced) outside the timing
        before, start = usage(), time.perf_counter()
        iterator = dataset.as_numpy_iterator()
        decoded, arrivals = 0, []  # (seconds since start, videos so far) at each batch
        for batch in iterator:
            decoded += int(batch["mask"].sum())
            arrivals.append((time.perf_counter() - start, decoded))
        wall, after = time.perf_counter() - start, usage()
        del iterator  # its teardown (joining tf.data's threads) happens once per epoch: not timed
        if decoded != count:
            raise SystemExit(f"worker: {decoded} of {count} videos decoded; a failed video would fake the speed")
        (first_s, first_videos), (last_s, _) = arrivals[0], arrivals[-1]
        spent = {key: after[key] - before[key] for key in after}
        return {
            "host_cpu_s_per_video": (spent["user_s"] + spent["system_s"]) / count,
            "system_s_per_video": spent["system_s"] / count,
            "minor_page_faults_per_video": spent["minor_faults"] / count,
            "context_switches_per_video": spent["context_switches"] / count,
            "wall_s_per_video": wall / count,
            "first_batch_s": first_s,
            # After the first batch: the rate of a long epoch, without the start-up.
            "steady_wall_s_per_video": (last_s - first_s) / (count - first_videos) if count > first_videos else None,
            "videos": count,
        }

    items = spec["inputs"]
    # Warm-up: libraries, kernels, thread pools, decoder processes, and the allocations of full
    # batches (the first 4-clip batch of a process costs twice the later ones: not an epoch's rate).
    warm = min(B, len(items[0]["links"]))
    for make in datasets(items[0], warm).values():
        run(make, warm)
    result = {"cores": len(cores), "pipelines": {}, "floors": {}}
    for item in items:
        count = len(item["links"])
        result["pipelines"][item["name"]] = {
            name: run(make, count) for name, make in datasets(item, count).items()
        }
    if spec["floors"]:
        for item in items:
            result["floors"][item["name"]] = floors(item, settings, spec["floor_repeats"], tf, video, sampling,
                                                    pipeline, VideoFolder)
    return result


def floors(item, settings, repeats, tf, video, sampling, pipeline, VideoFolder) -> dict:
    """One-thread decode floors of one input's sample (host CPU s, median of ``repeats``)."""
    import av

    path = item["path"]
    T, L, F = settings["timesteps"], settings["timestep_length"], settings["frame_side"]
    info = video.probe(path)
    indices = sampling.sample_timesteps("uniform", info.num_frames, T, L).reshape(-1)
    wanted, last = set(indices.tolist()), int(indices.max())
    canvas_size = video.scaled_size(info.height, info.width, F)

    def pyav(convert: str | None):
        """Decodes every frame up to the last sampled one; converts the sampled ones (kept, as a
        pipeline must keep them): ``"own"`` to RGB at the video's size, ``"canvas"`` scaled to the
        canvas size in the decoder's pixel format (area) then to RGB, ``"rajax"`` scaled while
        converting to RGB (area), as ``rajax.data.video`` does."""
        scaled = canvas_size != (info.height, info.width)

        def to_rgb(frame):
            if convert == "own" or not scaled:
                return frame.to_ndarray(format="rgb24", threads=1)
            height, width = canvas_size
            if convert == "canvas":
                return frame.reformat(width=width, height=height, interpolation="AREA",
                                      threads=1).to_ndarray(format="rgb24", threads=1)
            return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA", threads=1)

        def decode():
            frames = []
            with av.open(path) as container:
                stream = container.streams.video[0]
                stream.thread_count = 1
                for index, frame in enumerate(container.decode(stream)):
                    if convert and index in wanted:
                        frames.append(to_rgb(frame))
                    if index >= last:
                        break
            return frames
        return decode

    plan = pipeline.LoadPlan(("full",), T, L, "uniform", False, 0, 0, False, F)

    def loader():  # what a decoder process does per video (here into a fresh array, not its shared memory)
        return pipeline.load_file_video(plan, "v", path, None, info.num_frames)

    probe_dir = Path(item["probe_dir"])
    probe_dir.mkdir(parents=True, exist_ok=True)
    probes = []

    def probe():  # an unseen path each time: probe's cache never answers
        link = Path(tempfile.mktemp(dir=probe_dir, suffix=Path(path).suffix))
        link.symlink_to(path)
        probes.append(link)
        return video.probe(link)

    builder = VideoFolder(data_dir=item["tfds_data_dir"])
    (example,) = builder.as_dataset(split="train").take(1)
    unique = np.unique(sampling.sample_timesteps("uniform", int(example["num_frames"]), T, L).reshape(-1))
    sampled = tf.gather(example["frames"], unique)

    @tf.function
    def decode_jpeg(batch):
        return tf.map_fn(lambda data: tf.io.decode_jpeg(data, channels=3), batch, fn_output_signature=tf.uint8,
                         parallel_iterations=1)

    examples = 4
    stored = builder.as_dataset(split="train").take(1).repeat(examples)

    def tfds_read():  # per example: the record read and parsed (every frame's JPEG bytes), no decoding
        for element in stored:
            element["frames"].shape  # noqa: B018 - the parsed tensor, no numpy copy

    contenders = {
        "pyav_decode": pyav(None),
        "pyav_decode_rgb_own_size": pyav("own"),
        "pyav_decode_rgb_canvas_size": pyav("canvas"),
        "pyav_decode_rgb_as_rajax": pyav("rajax"),
        "rajax_loader": loader,
        "probe": probe,
        "tf_decode_jpeg": lambda: decode_jpeg(sampled).shape,
        "tfds_read": tfds_read,
    }
    for function in contenders.values():  # warm-up
        function()
    times = {name: [] for name in contenders}
    for _ in range(repeats):  # round-robin
        for name, function in contenders.items():
            _, cpu, wall = measure(function)
            times[name].append((cpu, wall))
    for link in probes:
        link.unlink()
    per = {name: examples if name == "tfds_read" else 1 for name in times}
    result = {name: {"cpu_s": median(c for c, _ in runs) / per[name], "wall_s": median(w for _, w in runs) / per[name]}
              for name, runs in times.items()}
    result["pyav_floor"] = min((result[key] for key in ("pyav_decode_rgb_own_size", "pyav_decode_rgb_canvas_size")),
                               key=lambda entry: entry["cpu_s"])
    result["sample"] = {"frames": int(len(indices)), "last_index": last, "decoded_frames": last + 1,
                        "canvas_size": f"{canvas_size[1]}x{canvas_size[0]}",
                        "jpeg_frames_decoded": int(len(unique)),
                        "jpeg_bytes_decoded": int(sum(len(b) for b in sampled.numpy()))}
    return result


def run_worker(spec: dict, workdir: Path) -> dict:
    started = time.perf_counter()
    spec_file = Path(tempfile.mktemp(dir=workdir, suffix=".json"))
    out_file = spec_file.with_suffix(".out.json")
    spec_file.write_text(json.dumps(spec | {"output": str(out_file)}))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run([sys.executable, __file__, "--worker", str(spec_file)], env=env,
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not out_file.exists():
        raise SystemExit(f"worker on {len(spec['cores'])} core(s) failed:\n{completed.stderr[-3000:]}")
    return json.loads(out_file.read_text()) | {"process_wall_s": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------------
# Aggregation, budget, training, report (main process)


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


def report(results: dict) -> str:
    cores = results["settings"]["cores"]
    least, most = min(cores), max(cores)
    lines = []
    for name, r in results["inputs"].items():
        f = r["floors"]
        lines += [
            "",
            f"{name}: {r['path']} ({r['num_frames']} frames {r['size']}, {r['bytes'] / 1e6:.2f} MB); "
            f"sample of {f['sample']['frames']} frames, canvas {results['settings']['frame_side']}",
            f"| pipeline | host CPU s/video ({most} cores) | floor (CPU s) | ratio | ratio on 1 core | "
            f"videos/s {least} core | {most} cores | speed-up (whole run) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for pipe, p in r["pipelines"].items():
            speedup, whole = p.get(f"speedup_{least}_to_{most}_cores"), p.get(f"speedup_{least}_to_{most}_cores_whole_run")
            lines.append(
                f"| {pipe} | {p['host_cpu_s']:.3f} | {p['floor']} {p['floor_cpu_s']:.3f} | {p['ratio_to_floor']:.2f}x | "
                f"{p[f'ratio_to_floor_{least}_cores']:.2f}x | "
                f"{p[f'{least}_cores']['steady_videos_per_s'] or 0:.2f} | {p[f'{most}_cores']['steady_videos_per_s'] or 0:.2f} | "
                + (f"{speedup or 0:.2f}x ({whole:.2f}x) |" if whole else "- |")
            )
        lines.append("one-thread CPU s: " + ", ".join(
            f"{key} {value['cpu_s']:.3f}" for key, value in f.items() if key != "sample"))
    budget = results["accelerator_budget"]
    lines += ["", f"Accelerator budget at {100 * budget['peak_fraction']:.0f}% of peak "
              f"({budget['flops']['training_clip'] / 1e12:.2f} TFLOP per training clip, "
              f"{budget['flops']['extraction_video'] / 1e12:.1f} per extraction video):",
              "| accelerator | device ms/training clip | host cores (breakfast file / TFDS) | "
              "device ms/extraction video | host cores (breakfast file / TFDS) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    first = next(iter(results["inputs"]))
    for name, a in budget["accelerators"].items():
        c = a["host_cores_to_keep_busy"][first]
        lines.append(
            f"| {name} | {1e3 * a['device_s_per_training_clip']:.1f} | {c['training from file']:.0f} / "
            f"{c['training from TFDS']:.0f} | {1e3 * a['device_s_per_extraction_video']:.0f} | "
            f"{c['extraction from file']:.1f} / {c['extraction from TFDS']:.1f} |")
    if "training" in results:
        t = results["training"]
        lines += [
            "",
            f"Stage-1 training ({t['config']}), {t['steps']} steps of {t['batch']} clips x {t['frames']} frames "
            f"(medians after the first step): {t['seconds_per_step_median']:.2f} s per step, devices idle "
            f"{100 * t['device_idle_fraction_median']:.1f}% of the time, host waiting for input "
            f"{100 * t['input_wait_fraction_median']:.1f}%",
        ]
    lines.append("")
    lines.append(f"--video from its file: {results['host_cpu_s_per_training_clip']:.3f} host CPU s per training "
                 f"clip, {results['host_cpu_s_per_extraction_video']:.3f} per extraction video, decode floor "
                 f"{results['decode_floor_cpu_s']:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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


if __name__ == "__main__":
    sys.exit(main())
