"""Input pipeline throughput: decoded frames/s and region clips/s, with and without the cropping.

Measured on one real video (default: the shared dancer video, 1571 frames of 518x496, 63 s), sampled
as the paper does (T=64 timesteps of L=8 frames, 512 frames per clip, regions resized to 224):

- ``decode``: ``read_frames`` of the 512 sampled frames (FFmpeg decodes all frames up to the last
  one sampled and converts the 512 to RGB). Reported as sampled frames per second.
- ``decode + 1 region``: decode, central square, crop one region, antialiased resize to 224, float
  in [-1, 1]: one training clip. Reported as region clips/s and frames/s.
- ``decode + 11 regions``: the same for every region (one extraction/evaluation element, uint8).
- ``tf.data training`` / ``tf.data evaluation``: the real pipelines (AUTOTUNE parallelism) over
  the video repeated ``--videos`` times, timed over the whole epoch.
- ``storage``: the trade behind the TFDS builders, on a Breakfast-like clip (the video scaled to
  320x240, 1800 frames at 15 fps, MPEG-4): the bytes of the encoded video and of its frames as
  JPEG (240x240 central squares, as the TFDS builders store them), one-thread decoding cost of a
  512-frame sample from each, and the training pipeline's rate from the file vs from TFDS.
- ``training``: ``rajax train`` stage 1 (Kinetics-400 I3D, the real tf.data pipeline reading the
  video ``--train-videos`` times, one random region per video) for one epoch: the share of the
  time the devices sat idle waiting for the next step (``device_idle_fraction`` in
  ``metrics.jsonl``, see ``rajax.train.idle``), the share of the time the host waited for a batch,
  and seconds per step. On a CPU the "device" shares the cores with the pipeline.

Every figure is the median over ``--repeats`` runs. Prints a short table and writes JSON.

    .venv/bin/python tools/benchmark_pipeline.py --output benchmark_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "dancer" / "dancer.avi"


def median_time(function, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def single_video(path: str, args) -> dict:
    from rajax.data import regions, sampling, video

    info = video.probe(path)
    indices = sampling.uniform_timesteps(info.num_frames, args.timesteps, args.timestep_length).reshape(-1)
    n = len(indices)
    region_names = regions.REGION_NAMES

    def decode():
        video.read_frames(path, indices)

    def one_region():
        square = regions.central_square_crop(video.read_frames(path, indices))
        regions.crop_regions(square, ("grid_1_1",), size=args.size, output="float32")

    def all_regions():
        square = regions.central_square_crop(video.read_frames(path, indices))
        regions.crop_regions(square, region_names, (64, 105, 376), size=args.size, output="uint8")

    one_region()  # warm-up: TensorFlow's first op
    results = {}
    for name, function, clips in (
        ("decode", decode, 0),
        ("decode + 1 region", one_region, 1),
        ("decode + 11 regions", all_regions, len(region_names)),
    ):
        seconds, times = median_time(function, args.repeats)
        results[name] = {
            "seconds": seconds,
            "times": times,
            "sampled_frames_per_s": n / seconds,
            "region_clips_per_s": clips / seconds if clips else None,
            "region_frames_per_s": clips * n / seconds if clips else None,
        }
    results["video"] = {
        "path": str(path),
        "num_frames": info.num_frames,
        "size": f"{info.width}x{info.height}",
        "frames_per_clip": n,
    }
    return results


def tf_data_rate(make, clips_per_element: int, args) -> dict:
    """Rate of a pipeline over a whole epoch (start-up included, so use enough videos), median of runs.

    Not "after a warm-up element": the parallel map decodes ahead while the first element is being
    waited for, which would make a short epoch look far faster than it is.
    """

    def once():
        dataset = make()
        start = time.perf_counter()
        count = sum(1 for _ in dataset)
        return (time.perf_counter() - start) / count

    per_element = statistics.median(once() for _ in range(args.repeats))
    frames = args.timesteps * args.timestep_length
    return {
        "seconds_per_element": per_element,
        "region_clips_per_s": clips_per_element / per_element,
        "region_frames_per_s": clips_per_element * frames / per_element,
    }


def tf_data(path: str, args) -> dict:
    from rajax.data import pipeline
    from rajax.data.records import VideoRecord

    records = [VideoRecord(f"v{i}", str(path), 0, (64, 105, 376)) for i in range(args.videos)]
    common = {"num_timesteps": args.timesteps, "timestep_length": args.timestep_length, "size": args.size, "shard": None}
    return {
        "tf.data training (1 region, float32)": tf_data_rate(
            lambda: pipeline.training_dataset(records, epoch=0, batch_size=1, **common), 1, args
        ),
        "tf.data evaluation (11 regions, uint8)": tf_data_rate(
            lambda: pipeline.evaluation_dataset(records, batch_size=1, dtype="uint8", **common), 11, args
        ),
    }


def storage(path: str, args, workdir: Path) -> dict:
    """Encoded video vs JPEG frames (the TFDS storage), on a Breakfast-like 320x240 MPEG-4 clip."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    from PIL import Image

    from rajax.data import pipeline, sampling, video
    from rajax.data.records import VideoRecord
    from rajax.datasets.video_folder import VideoFolder

    source = video.read_frames(path, np.arange(0, min(video.probe(path).num_frames, 900)))
    qvga = np.stack([np.asarray(Image.fromarray(f).resize((320, 240), Image.BILINEAR)) for f in source])
    frames = np.concatenate([qvga, qvga[::-1]])[:1800]  # 2 minutes at 15 fps, Breakfast's average
    del source, qvga
    manual = workdir / "manual"
    clip = video.write_video(manual / "dancing" / "breakfast_like.avi", frames, fps=15)
    del frames
    builder = VideoFolder(data_dir=str(workdir / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    (example,) = builder.as_dataset(split="train").take(1).as_numpy_iterator()
    jpegs = list(example["frames"])
    indices = sampling.uniform_timesteps(len(jpegs), args.timesteps, args.timestep_length).reshape(-1)
    sampled = tf.constant([jpegs[i] for i in indices])

    @tf.function
    def decode_one_thread(batch):
        return tf.map_fn(tf.io.decode_jpeg, batch, fn_output_signature=tf.uint8, parallel_iterations=1)

    decode_one_thread(sampled)
    video_s, _ = median_time(lambda: video.read_frames(clip, indices), args.repeats)
    jpeg_s, _ = median_time(lambda: decode_one_thread(sampled), args.repeats)

    common = {"num_timesteps": args.timesteps, "timestep_length": args.timestep_length, "size": args.size,
              "shard": None, "batch_size": 1, "epoch": 0}
    records = [VideoRecord(f"v{i}", str(clip), 0) for i in range(args.videos)]
    tfds_videos = pipeline.tfds_videos(builder.as_dataset(split="train")).repeat(args.videos)
    from_files = tf_data_rate(lambda: pipeline.training_dataset(records, **common), 1, args)
    from_jpeg = tf_data_rate(
        lambda: pipeline.training_dataset(tfds_videos, num_videos=args.videos, **common), 1, args
    )
    return {
        "clip": f"{len(jpegs)} frames 320x240 MPEG-4 at 15 fps",
        "frames_per_sample": len(indices),
        "encoded_video": {"bytes": clip.stat().st_size, "seconds_per_sample_one_thread": video_s},
        "jpeg_frames_240": {
            "bytes_all_frames": int(sum(len(j) for j in jpegs)),
            "bytes_512_presampled": int(sum(len(jpegs[i]) for i in indices)),
            "seconds_per_sample_one_thread": jpeg_s,
        },
        "tf.data training from video files": from_files,
        "tf.data training from TFDS (JPEG frames)": from_jpeg,
    }


def training(path: str, args, workdir: Path) -> dict:
    """One epoch of stage-1 fine-tuning through the real trainer; idle figures from its log."""
    from rajax.train import metrics, stages
    from rajax.train.config import apply_overrides, load_config

    rows = ["path,label,split"]
    config = load_config("base")
    for i in range(args.train_videos):
        link = workdir / f"video_{i:03d}{Path(path).suffix}"
        link.symlink_to(Path(path).resolve())
        rows.append(f"{link.name},{config.classes[i % len(config.classes)]},train")
    (workdir / "videos.csv").write_text("\n".join(rows) + "\n")
    config = apply_overrides(config, {
        "data.csv": str(workdir / "videos.csv"), "data.validation_split": "", "data.test_split": "",
        "data.num_timesteps": str(args.train_timesteps), "data.frames_per_timestep": str(args.timestep_length),
        "data.crop_size": str(args.size), "finetune.batch_size": str(args.train_batch),
        "finetune.num_epochs": "1", "log_every_steps": str(args.train_log_every),
        "checkpoint.every_steps": "100000",
    })
    start = time.perf_counter()
    stages.train(config, workdir / "run", "finetune", progress=False)
    wall = time.perf_counter() - start
    records = [r for r in metrics.read_metrics(workdir / "run" / "finetune") if r["split"] == "train"]
    timed = records[1:]  # the first record holds the compiling step
    if not timed:
        raise SystemExit("training: too few steps to time; raise --train-videos")
    return {
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


def table(results: dict) -> str:
    lines = ["| measurement | s per clip/element | region clips/s | frames/s |", "| --- | --- | --- | --- |"]
    for name, r in results["single_video"].items():
        if name == "video":
            continue
        clips = f"{r['region_clips_per_s']:.2f}" if r["region_clips_per_s"] else "-"
        frames = r["region_frames_per_s"] or r["sampled_frames_per_s"]
        lines.append(f"| {name} | {r['seconds']:.3f} | {clips} | {frames:.0f} |")
    for name, r in results.get("tf_data", {}).items():
        lines.append(
            f"| {name} | {r['seconds_per_element']:.3f} | {r['region_clips_per_s']:.2f} | {r['region_frames_per_s']:.0f} |"
        )
    if "storage" in results:
        s = results["storage"]
        video_info, jpeg = s["encoded_video"], s["jpeg_frames_240"]
        lines += [
            "",
            f"Storage on a Breakfast-like clip ({s['clip']}), one {s['frames_per_sample']}-frame sample:",
            f"- encoded video: {video_info['bytes'] / 1e6:.2f} MB; PyAV decode, one thread: "
            f"{video_info['seconds_per_sample_one_thread']:.3f} s",
            f"- JPEG frames (240x240 square): {jpeg['bytes_all_frames'] / 1e6:.2f} MB all frames "
            f"({jpeg['bytes_512_presampled'] / 1e6:.2f} MB if pre-sampled); TF decode, one thread: "
            f"{jpeg['seconds_per_sample_one_thread']:.3f} s",
        ]
        for name in ("tf.data training from video files", "tf.data training from TFDS (JPEG frames)"):
            lines.append(
                f"- {name}: {s[name]['seconds_per_element']:.3f} s per clip, "
                f"{s[name]['region_clips_per_s']:.2f} clips/s"
            )
    if "training" in results:
        t = results["training"]
        lines += [
            "",
            f"Stage-1 training, {t['steps']} steps of {t['batch']} clips x {t['frames']} frames "
            f"(medians after the first step): {t['seconds_per_step_median']:.2f} s per step, devices idle "
            f"{100 * t['device_idle_fraction_median']:.1f}% of the time, host waiting for input "
            f"{100 * t['input_wait_fraction_median']:.1f}%",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO), help="video to measure (default: the dancer video)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--videos", type=int, default=8, help="videos per tf.data epoch (the video repeated)")
    parser.add_argument("--timesteps", type=int, default=64)
    parser.add_argument("--timestep-length", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--skip-tf-data", action="store_true")
    parser.add_argument("--skip-storage", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--train-videos", type=int, default=16, help="training: videos in the epoch")
    parser.add_argument("--train-log-every", type=int, default=2,
                        help="training: steps per log record (a log fetches the metrics: a host sync)")
    parser.add_argument("--train-batch", type=int, default=2, help="training: clips per step")
    parser.add_argument("--train-timesteps", type=int, default=8,
                        help="training: timesteps per clip (paper 64; 8 keeps a CPU step short)")
    parser.add_argument("--output", default="benchmark_pipeline.json", help="JSON file to write")
    args = parser.parse_args(argv)

    import tensorflow as tf

    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
    }
    results["single_video"] = single_video(args.video, args)
    if not args.skip_tf_data:
        results["tf_data"] = tf_data(args.video, args)
    if not args.skip_storage:
        with tempfile.TemporaryDirectory() as workdir:
            results["storage"] = storage(args.video, args, Path(workdir))
    if not args.skip_training:
        with tempfile.TemporaryDirectory() as workdir:
            results["training"] = training(args.video, args, Path(workdir))
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\n{os.cpu_count()} CPUs; medians over {args.repeats} repeats; JSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
