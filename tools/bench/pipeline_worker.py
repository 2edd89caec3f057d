"""One worker process's measurements on a fixed set of cores: the four pipelines over every input,
and (on the fewest cores) the one-thread decode floors; and running such a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.pipeline_common import PIPELINE_SCRIPT, measure, median, usage


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
    completed = subprocess.run([sys.executable, str(PIPELINE_SCRIPT), "--worker", str(spec_file)], env=env,
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not out_file.exists():
        raise SystemExit(f"worker on {len(spec['cores'])} core(s) failed:\n{completed.stderr[-3000:]}")
    return json.loads(out_file.read_text()) | {"process_wall_s": time.perf_counter() - started}
