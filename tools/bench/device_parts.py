"""The measurements of tools/device_check.py, each part in its own process (``--part NAME --spec
FILE``), so that a part that runs out of memory, crashes or overruns its time is killed and
recorded without losing the others, and each framework has the device to itself:

* ``jax``: rajax's I3D forward at the largest batch that fits (float32 and bfloat16), the stage-1
  training step, the 11-region extraction of one Breakfast-format video, JAX's peak device memory;
* ``torch``: the PyTorch I3D (rajax.reference.torch_i3d) forward in its fastest modes at the batch
  the jax part found (halved while it runs out of memory), its stage-1 step, its peak memory. JAX
  runs on the CPU in this process (only to read the checkpoint), torch on the device;
* ``pipeline``: the input pipeline's videos per second with 1, 4 and all decoder processes.

Every part writes its results file again after each measurement (atomically), so what it
measured before a kill survives; each measurement first asks the part's budget whether there is
time left for it, and records ``skipped`` when there is not.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import FINE_TUNED_CLASSES, to_torch_ncthw
from bench.memory import xla_memory_plan
from bench.timing import CompileCounter, timed_section


class Budget:
    """A deadline; ``allows(seconds)`` whether a step expected to take that long still fits."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    @classmethod
    def of(cls, spec: dict) -> Budget:
        """A part's budget, counted from when the check launched it (``spec["deadline"]``, in
        time.time()), so that the part's own start-up is inside it."""
        return cls(spec["deadline"] - time.time() if "deadline" in spec else spec["budget_s"])

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float = 0.0) -> bool:
        return self.left() > seconds


class Results:
    """A part's results, written to ``path`` after every change (a reader never sees half a file)."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {}

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


class Live(dict):
    """A section's contenders, saved into the part's results as each one is set: a part killed
    mid-section keeps the contenders it had measured (under its section's "running" status)."""

    def __init__(self, results: Results, section_name: str):
        super().__init__()
        self.results, self.section_name = results, section_name

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.results.set(self.section_name, {"status": "running", "contenders": dict(self)})


def needed_s(spec: dict, name: str) -> float:
    """The time a contender needs at least: torch.compile compiles for minutes on a GPU."""
    return spec["min_step_s"] * (3 if "compile" in name else 1)


def out_of_memory(error: BaseException) -> bool:
    """JAX's RESOURCE_EXHAUSTED, torch's OutOfMemoryError, and the messages they carry."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:500]}"


def section(results: Results, name: str, budget: Budget, minimum_s: float, run) -> None:
    """Runs one measurement into ``results[name]`` with its status and wall time; an exception is
    recorded (with the end of its traceback), not raised."""
    if not budget.allows(minimum_s):
        results.set(name, {"status": "skipped", "reason": f"{budget.left():.0f} s of the part's budget left, "
                                                          f"{minimum_s:.0f} s needed"})
        return
    start = time.perf_counter()
    results.set(name, {"status": "running"})
    try:
        entry = {"status": "ok"} | run()
    except Exception as error:  # noqa: BLE001 - every failure is a finding, recorded
        entry = {"status": "out of memory" if out_of_memory(error) else "error", "error": error_text(error),
                 "traceback": traceback.format_exc()[-2000:]}
    entry["wall_s"] = time.perf_counter() - start
    results.set(name, entry)


def skip_all(results: Results, budget: Budget, spec: dict, names) -> bool:
    """Records every section of a part as skipped when its budget is already spent (before the
    part loads anything); whether it was."""
    if budget.allows(spec["min_step_s"]):
        return False
    for name in names:
        section(results, name, budget, spec["min_step_s"], None)
    return True


def first_clip(frames: int, size: int) -> np.ndarray:
    """The input every framework sees: one clip of uniform noise in [-1, 1], seed 0."""
    return np.random.default_rng(0).uniform(-1, 1, (1, frames, size, size, 3)).astype(np.float32)


def time_one(name: str, fn, meta: dict, counter, warmup: int, repeats: int, inputs: dict, flops_per_clip: float):
    """One contender timed alone (the device is the part's own): bench.timing's entry for it."""
    section_ = timed_section({name: fn}, {name: meta}, counter, warmup, repeats, inputs, flops_per_clip)
    entry = section_["contenders"][name]
    entry["recompilations_during_timing"] = section_["recompilations_during_timing"]
    entry["batch"] = inputs["batch"]
    return entry


def jax_device_memory() -> dict:
    """The first device's allocator statistics (None on the CPU, which keeps none)."""
    import jax

    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - a backend without statistics
        stats = None
    if not stats:
        return {"peak_bytes_in_use": None, "bytes_limit": None}
    return {"peak_bytes_in_use": stats.get("peak_bytes_in_use"), "bytes_limit": stats.get("bytes_limit"),
            "bytes_in_use": stats.get("bytes_in_use")}


# ------------------------------------------------------------------------------------ jax part


def jax_part(spec: dict, results: Results) -> None:
    import jax
    import jax.numpy as jnp

    from bench.forward import rajax_forward
    from bench.machine import machine_info
    from bench.train import TRAIN_VARIANTS, Stage1, on_devices, stage1_batch
    from rajax import compile_cache
    from rajax import load_i3d
    from rajax.reference.architecture import forward_macs, train_step_macs

    budget, sizes, out = Budget.of(spec), spec["sizes"], Path(spec["output_dir"])
    on_gpu = jax.default_backend() == "gpu"
    if skip_all(results, budget, spec, ("forward", "train", "extraction")):
        return
    # As the rajax commands do: a rerun of the check on the same machine loads its programs.
    results.set("jax_compile_cache", str(compile_cache.enable()))
    results.set("machine", machine_info())
    results.set("jax_default_matmul_precision", str(jax.config.jax_default_matmul_precision))
    _, variables = load_i3d()
    counter = CompileCounter()
    frames, size = sizes["frames"], sizes["size"]
    clip = first_clip(frames, size)
    flops_per_clip = 2 * forward_macs(frames, size, size)
    # Native 3D convolutions on an accelerator; 2D ones over batch x time on a CPU (docs/speed.md).
    variant = "as_2d+fuse_1x1+fold_bn" if jax.default_backend() == "cpu" else "fuse_1x1+fold_bn"

    def compiled_forward(dtype_name: str, batch: int):
        fn = rajax_forward(variant, dtype_name)
        return fn.lower(variables, jax.ShapeDtypeStruct((batch, frames, size, size, 3), jnp.float32)).compile()

    def largest_batch() -> dict:
        """The largest batch of float32 clips whose forward should fit: XLA's memory plan at batch 1
        gives the memory per clip, the device's free memory the estimate (capped at
        ``max_batch``); ``forward`` then halves it for as long as running it runs out of memory.
        The CPU keeps no memory statistics: there the cap is the estimate (no batch-1 program)."""
        memory = jax_device_memory()
        found: dict[str, Any] = {"memory_before": memory, "estimate": sizes["max_batch"]}
        if not memory["bytes_limit"]:
            return found
        start = time.perf_counter()
        one = compiled_forward("float32", 1)
        found["compile_batch_1_s"] = time.perf_counter() - start
        found["plan_batch_1"] = plan = xla_memory_plan(one)
        if plan.get("xla_planned_peak_bytes"):
            free = memory["bytes_limit"] - (memory.get("bytes_in_use") or 0)
            per_clip = plan["xla_planned_peak_bytes"]  # at batch 1 also holds the weights: an overestimate
            found["estimate"] = max(1, min(sizes["max_batch"], int(0.8 * free // per_clip)))
        return found

    def attempt(name: str, dtype_name: str, batch: int) -> dict:
        """One contender at one batch: compiled ahead of time, its first clip's features kept for
        the comparison with PyTorch, then timed. (Its arrays die with this call, also on failure.)"""
        start = time.perf_counter()
        compiled = compiled_forward(dtype_name, batch)
        compile_s = time.perf_counter() - start
        clips = jnp.broadcast_to(jnp.asarray(clip), (batch, *clip.shape[1:])) + 0  # made on the device
        features = np.asarray(compiled(variables, clips)[:1]).astype(np.float32)
        np.save(out / f"rajax_{dtype_name}_features.npy", features)
        return time_one(name, lambda: compiled(variables, clips).block_until_ready(),
                        {"framework": "rajax", "dtype": dtype_name, "variant": variant, "compile_s": compile_s}
                        | xla_memory_plan(compiled), counter, sizes["warmup"], sizes["repeats"],
                        {"batch": batch, "frames": frames, "size": size}, flops_per_clip) | {"status": "ok"}

    def forward() -> dict:
        search = largest_batch()
        batch, attempts, contenders = search["estimate"], [], Live(results, "forward")
        for dtype_name in ("float32", "bfloat16"):
            name = f"rajax {variant} {dtype_name}"
            while True:
                if not budget.allows(spec["min_step_s"]):
                    contenders[name] = {"status": "skipped", "reason": "part budget spent"}
                    break
                try:
                    contenders[name] = attempt(name, dtype_name, batch)
                    break
                except Exception as error:  # noqa: BLE001
                    attempts.append({"contender": name, "batch": batch, "error": error_text(error)})
                    if not out_of_memory(error) or batch == 1:
                        contenders[name] = {"status": "out of memory" if out_of_memory(error) else "error",
                                            "error": error_text(error)}
                        break
                    batch //= 2
        ok = [c["batch"] for c in contenders.values() if c.get("status") == "ok"]
        return {"input": {"frames": frames, "size": size}, "flops_per_clip": flops_per_clip,
                "batch_search": search | {"failed_attempts": attempts},
                "largest_batch": max(ok) if ok else None, "contenders": dict(contenders),
                "device_memory_after": jax_device_memory()}

    section(results, "forward", budget, spec["min_step_s"], forward)

    def train() -> dict:
        stage1 = Stage1(variables)
        batch_size, train_frames, train_size = sizes["train_batch"], sizes["train_frames"], sizes["train_size"]
        batch = on_devices(stage1_batch(batch_size, train_frames, train_size))
        flops = 2 * train_step_macs(train_frames, train_size, train_size, FINE_TUNED_CLASSES)
        variants = spec["train_variants_gpu"] if on_gpu else spec["train_variants_cpu"]
        contenders = Live(results, "train")
        for name in variants:
            if not budget.allows(spec["min_step_s"]):
                contenders[f"rajax {name}"] = {"status": "skipped", "reason": "part budget spent"}
                continue
            try:
                state, step = stage1.train_step(name)
                start = time.perf_counter()
                compiled = step.lower(state, batch).compile()
                compile_s = time.perf_counter() - start
                holder = {"state": state}

                def run(compiled=compiled, holder=holder):
                    holder["state"], metrics = compiled(holder["state"], batch)
                    jax.block_until_ready(metrics)

                contenders[f"rajax {name}"] = time_one(
                    f"rajax {name}", run, {"framework": "rajax", "dtype": TRAIN_VARIANTS[name][0], "compile_s": compile_s}
                    | xla_memory_plan(compiled), counter, sizes["warmup"], sizes["repeats"],
                    {"batch": batch_size, "frames": train_frames, "size": train_size}, flops) | {"status": "ok"}
                del holder, state
            except Exception as error:  # noqa: BLE001
                contenders[f"rajax {name}"] = {"status": "out of memory" if out_of_memory(error) else "error",
                                               "error": error_text(error)}
        return {"input": {"batch": batch_size, "frames": train_frames, "size": train_size},
                "flops_per_clip": flops, "contenders": dict(contenders), "device_memory_after": jax_device_memory()}

    section(results, "train", budget, spec["min_step_s"], train)

    def extraction() -> dict:
        return extract_one_video(spec, budget)

    section(results, "extraction", budget, spec["min_step_s"], extraction)
    results.set("device_memory", jax_device_memory())


def extract_one_video(spec: dict, budget: Budget) -> dict:
    """Stage 2 on one Breakfast-format video as ``rajax extract`` runs it: the video decoded on the
    host into the canvas (``load_video_frames``), then the pmapped extraction step
    (``extraction.region_features_fn`` on the base config, Kinetics-400 I3D) on its 11 regions."""
    import jax

    from rajax.data import pipeline
    from rajax.data.regions import REGION_NAMES
    from rajax.train import backbone, extraction, steps
    from rajax.train.config import apply_overrides, load_config

    sizes = spec["sizes"]
    config = apply_overrides(load_config("base"), {
        "backbone.finetuned": "false", "data.num_timesteps": str(sizes["timesteps"]),
        "data.frames_per_timestep": str(sizes["timestep_length"]), "data.crop_size": str(sizes["crop"]),
        "data.frame_side": str(sizes["frame_side"])})
    model, variables = backbone.load_backbone(config, spec["output_dir"])
    features_fn = extraction.region_features_fn(model, config)
    replicated = steps.replicate(backbone.feature_variables(variables))
    start = time.perf_counter()
    frames, boxes = pipeline.load_video_frames(spec["video"], regions=list(REGION_NAMES),
                                               num_timesteps=sizes["timesteps"],
                                               timestep_length=sizes["timestep_length"],
                                               frame_side=sizes["frame_side"])
    decode_s = time.perf_counter() - start
    video_index, pairs = extraction.region_pairs(boxes[None], jax.local_device_count())
    frames = frames[None]
    start = time.perf_counter()
    compiled = features_fn.lower(replicated, frames, video_index, pairs).compile()
    compile_s = time.perf_counter() - start
    runs = []
    for _ in range(sizes["repeats"] + 1):  # the first run is the warm-up
        if runs and not budget.allows(2 * runs[-1]):
            break
        start = time.perf_counter()
        out = np.asarray(compiled(replicated, frames, video_index, pairs))
        runs.append(time.perf_counter() - start)
    timed = runs[1:] or runs
    device_s = float(np.median(timed))
    return {"video": spec["video"], "regions": len(REGION_NAMES), "frames": int(frames.shape[1]),
            "crop": sizes["crop"], "frame_side": sizes["frame_side"], "conv_impl": model.conv_impl,
            "decode_s": decode_s, "compile_s": compile_s, "features_s_runs": runs, "features_s": device_s,
            "seconds_per_video": decode_s + device_s, "device_videos_per_s": 1 / device_s,
            "feature_shape": list(out.shape)} | xla_memory_plan(compiled) | {
            "device_memory_after": jax_device_memory()}


# ------------------------------------------------------------------------------------ torch part


def torch_part(spec: dict, results: Results) -> None:
    from bench.torch_peers import TorchStage1, torch_forward_contenders
    from rajax import load_i3d
    from rajax.reference.architecture import forward_macs, train_step_macs
    from rajax.reference.torch_i3d import model_from_flax

    budget, sizes, out = Budget.of(spec), spec["sizes"], Path(spec["output_dir"])
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    results.set("torch", {"version": torch.__version__, "device": torch.cuda.get_device_name() if on_gpu else "cpu",
                          "threads": torch.get_num_threads(),
                          "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                          "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32})
    if skip_all(results, budget, spec, ("forward", "train")):
        return
    _, variables = load_i3d()  # on the CPU (JAX_PLATFORMS=cpu in this process)
    model = model_from_flax(variables).to(device).eval()
    counter = CompileCounter()
    frames, size = sizes["frames"], sizes["size"]
    clip = to_torch_ncthw(first_clip(frames, size), device)
    flops_per_clip = 2 * forward_macs(frames, size, size)
    compile_too = on_gpu and not spec["smallest"]

    def peak_memory() -> int | None:
        return torch.cuda.max_memory_allocated() if on_gpu else None

    def forward() -> dict:
        with torch.inference_mode():
            reference = model(clip, output="features").float().cpu().numpy()
        np.save(out / "torch_float32_features.npy", reference)
        names = list(torch_forward_contenders(model, clip, on_gpu, ("float32", "bfloat16"), compile_too))

        def attempt(name: str, batch: int) -> dict:
            if on_gpu:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            clips = clip.expand(batch, -1, -1, -1, -1).contiguous()
            dtype_name, fn = torch_forward_contenders(model, clips, on_gpu, ("float32", "bfloat16"),
                                                      compile_too)[name]
            start = time.perf_counter()
            fn()  # torch.compile compiles here
            first_s = time.perf_counter() - start
            return time_one(name, fn, {"framework": "torch", "dtype": dtype_name, "compile_and_first_run_s": first_s},
                            counter, sizes["warmup"], sizes["repeats"],
                            {"batch": batch, "frames": frames, "size": size}, flops_per_clip) | {
                "status": "ok", "peak_memory_bytes": peak_memory()}

        contenders, attempts = Live(results, "forward"), []
        for name in names:
            batch = spec.get("batch") or 1
            while True:
                if not budget.allows(needed_s(spec, name)):
                    contenders[name] = {"status": "skipped", "reason": "part budget spent"}
                    break
                try:
                    contenders[name] = attempt(name, batch)
                    break
                except Exception as error:  # noqa: BLE001
                    attempts.append({"contender": name, "batch": batch, "error": error_text(error)})
                    if not out_of_memory(error) or batch == 1:
                        contenders[name] = {"status": "out of memory" if out_of_memory(error) else "error",
                                            "error": error_text(error)}
                        break
                    batch //= 2
        return {"input": {"frames": frames, "size": size}, "flops_per_clip": flops_per_clip,
                "contenders": dict(contenders), "failed_attempts": attempts}

    section(results, "forward", budget, spec["min_step_s"], forward)

    def train() -> dict:
        batch_size, train_frames, train_size = sizes["train_batch"], sizes["train_frames"], sizes["train_size"]
        rng = np.random.default_rng(2)
        frames_ = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, train_frames, train_size, train_size),
                                                dtype=np.uint8)).to(device)
        labels = torch.from_numpy(rng.integers(0, FINE_TUNED_CLASSES, batch_size)).long().to(device)
        flops = 2 * train_step_macs(train_frames, train_size, train_size, FINE_TUNED_CLASSES)
        runners = {"torch eager channels_last_3d bf16-autocast": dict(autocast_dtype=torch.bfloat16,
                                                                       channels_last=True)}
        if not spec["smallest"]:
            runners["torch eager channels_last_3d f32"] = dict(channels_last=True)
        if compile_too:
            runners["torch.compile channels_last_3d bf16-autocast"] = dict(autocast_dtype=torch.bfloat16,
                                                                           channels_last=True, compile=True)
        contenders = Live(results, "train")
        for name, options in runners.items():
            if not budget.allows(needed_s(spec, name)):
                contenders[name] = {"status": "skipped", "reason": "part budget spent"}
                continue
            try:
                if on_gpu:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                runner = TorchStage1(model, device, **options)
                start = time.perf_counter()
                runner.step(frames_, labels)  # torch.compile compiles here
                first_s = time.perf_counter() - start
                dtype_name = "bfloat16" if options.get("autocast_dtype") is not None else "float32"
                contenders[name] = time_one(
                    name, lambda r=runner: r.step(frames_, labels),
                    {"framework": "torch", "dtype": dtype_name, "compile_and_first_run_s": first_s},
                    counter, sizes["warmup"], sizes["repeats"],
                    {"batch": batch_size, "frames": train_frames, "size": train_size}, flops) | {
                    "status": "ok", "peak_memory_bytes": peak_memory()}
                del runner
            except Exception as error:  # noqa: BLE001
                contenders[name] = {"status": "out of memory" if out_of_memory(error) else "error",
                                    "error": error_text(error)}
        return {"input": {"batch": batch_size, "frames": train_frames, "size": train_size},
                "flops_per_clip": flops, "contenders": contenders}

    section(results, "train", budget, spec["min_step_s"], train)


# ------------------------------------------------------------------------------------ pipeline part


def pipeline_part(spec: dict, results: Results) -> None:
    """Training and extraction input over ``pipeline_videos`` copies (symlinks) of the
    Breakfast-format video, with 1, 4 and all decoder processes: videos per second after the
    first batch (the rate of a long epoch) and over the whole run."""
    from rajax.data import decoders, pipeline
    from rajax.data.records import VideoRecord

    budget, sizes = Budget.of(spec), spec["sizes"]
    links = Path(spec["output_dir"]) / "pipeline_videos"
    links.mkdir(exist_ok=True)
    records = []
    for i in range(sizes["pipeline_videos"]):
        link = links / f"v{i:03d}{Path(spec['video']).suffix}"
        if not link.is_symlink():
            link.symlink_to(Path(spec["video"]).resolve())
        records.append(VideoRecord(f"v{i}", str(link), 0))
    common = {"num_timesteps": sizes["timesteps"], "timestep_length": sizes["timestep_length"],
              "frame_side": sizes["frame_side"], "shard": None}
    cores = decoders.usable_cores()
    results.set("cores", cores)
    results.set("videos", len(records))
    makers = {
        "training": lambda n: pipeline.training_dataset(records, epoch=0, batch_size=sizes["pipeline_batch"],
                                                        decode_processes=n, **common),
        "extraction": lambda n: pipeline.evaluation_dataset(records, batch_size=1, decode_processes=n, **common),
    }

    def run(kind: str, processes: int) -> dict:
        warm = makers[kind](processes)  # starts the decoder pool and tf.data's threads, untimed
        for _ in warm.take(1).as_numpy_iterator():
            pass
        dataset = makers[kind](processes)
        start, arrivals, decoded = time.perf_counter(), [], 0
        for batch in dataset.as_numpy_iterator():
            decoded += int(batch["mask"].sum())
            arrivals.append((time.perf_counter() - start, decoded))
        wall = time.perf_counter() - start
        if decoded != len(records):
            raise RuntimeError(f"{decoded} of {len(records)} videos decoded")
        (first_s, first_videos), (last_s, _) = arrivals[0], arrivals[-1]
        steady = (decoded - first_videos) / (last_s - first_s) if last_s > first_s else None
        return {"videos_per_s": decoded / wall, "steady_videos_per_s": steady, "first_batch_s": first_s,
                "wall_s": wall}

    for processes in sorted({1, 4, cores}):
        for kind in makers:
            section(results, f"{kind} {processes} processes", budget, 1.0, lambda k=kind, p=processes: run(k, p))


PARTS = {"jax": jax_part, "torch": torch_part, "pipeline": pipeline_part}


def run_part(name: str, spec_file: Path) -> int:
    spec = json.loads(spec_file.read_text())
    results = Results(Path(spec["results_file"]))
    results.set("pid", os.getpid())
    PARTS[name](spec, results)
    results.set("finished", True)
    return 0
