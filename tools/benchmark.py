"""Speed and memory of rajax's I3D against an independent PyTorch I3D, in one run, on one input.

    python tools/benchmark.py            # full mode (make bench); minutes to an hour on a CPU
    python tools/benchmark.py --quick    # small inputs, about 2 minutes on 2 CPU cores
    python tools/benchmark.py --help     # sizes, repeats, what to run

What it measures (on whatever backend JAX finds; PyTorch on the matching device):

* forward: I3D features of a batch of clips, in clips/s and achieved TFLOP/s against the
  convolution FLOPs of the network at that input (counted from the architecture,
  rajax.reference.architecture: 2 x 111.15 GMACs per 64 x 224 x 224 clip); rajax float32 and
  bfloat16 with each optimisation option, PyTorch eager (NCTHW and channels_last_3d, float32 and
  bf16 autocast) and, on a GPU, torch.compile (channels_last_3d, bf16 autocast);
* the stage-1 training step as ``rajax train`` runs it (rajax.train.trainer.stage_steps on
  configs/base.py: Mixed_4f, Mixed_5b, Mixed_5c and a new 10-way classifier trained, everything
  below frozen with its BatchNorm moving averages; uint8 frames in), rajax and PyTorch;
* one Breakfast-sized video end to end: 11 regions x 512 frames of a real video decoded, cropped
  and resized by rajax.data, then I3D features of every region: seconds per video;
* peak device memory of a stage-1 step at batch 4 x 512 frames (CPU: XLA's memory analysis of the
  compiled step, which needs no run; GPU: the allocator's peak over real steps);
* recompilations during timed steps (must be 0), and, with --xla-flag-sweep, XLA flags'
  effects on the forward pass (each in its own process: flags are read once).

rajax variants (RAJAX_VARIANTS, TRAIN_VARIANTS): the model's options (fuse_1x1, fold_batch_norm,
remat, bfloat16, buffer donation) and the convolution, InceptionI3d's ``conv_impl``: 'native' (one
XLA 3D convolution per layer) or 'as_2d' (rajax.models.i3d.conv3d_same_as_2d: 2D convolutions over
batch x time, several times faster on XLA:CPU); always explicit, never the model's 'auto'.

Contenders are timed round-robin (one call each, repeated), so load from other processes on a
shared machine hits them alike; medians after warm-up, with min/max. Every rajax contender's
output is compared with PyTorch's (max |diff| / max |torch|) so that no fast variant computes a
different function. Results: a JSON file (--json, default bench_results/) and a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

# Runs as a script: make the checkout importable even where the editable install is stale.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
# On a GPU, JAX and PyTorch share the card: no JAX preallocation of 75% of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads spin-wait between parallel regions by default; on a CPU shared with
# JAX's own thread pool (and, here, with other processes) that spinning starves whichever runs
# next, PyTorch itself included: 2-4x slower and erratic PyTorch timings on 2 loaded cores.
# Passive waiting is the fair setting for the peer. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# torch before anything that imports TensorFlow (rajax.data.regions does).
import torch  # noqa: E402

import numpy as np  # noqa: E402

from rajax.reference.architecture import avg_pool_kernel  # noqa: E402  (imports JAX, not TF)

SHARED = PROJECT_ROOT.parent / "shared"
DEFAULT_VIDEO = SHARED / "data/dancer/dancer.avi"
FINE_TUNED_CLASSES = 10  # Breakfast


# ---------------------------------------------------------------------------------------------
# Timing


def _stats(runs: list[float]) -> dict:
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
    return {name: _stats(r) for name, r in runs.items()}


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


def relative_error(actual, expected) -> float:
    actual = np.asarray(actual, np.float32)
    expected = np.asarray(expected, np.float32)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


# ---------------------------------------------------------------------------------------------
# Machine


def machine_info() -> dict:
    import jax

    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "cpu_cores_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "load_average_at_start": os.getloadavg(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                # The instruction sets that decide float32 / bfloat16 convolution speed.
                flags = set(line.split(":", 1)[1].split())
                info["cpu_flags_of_note"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
                break
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def measured_matmul_peak(dtype_name: str, on_gpu: bool) -> dict:
    """Achievable dense FLOP/s on this device: a large square matmul in JAX and in PyTorch.

    The reference point for the network's achieved TFLOP/s (convolutions cannot beat it by much).
    """
    import jax
    import jax.numpy as jnp

    n = 8192 if on_gpu else 2048
    jdtype = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
    tdtype = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    device = "cuda" if on_gpu else "cpu"
    a = jnp.ones((n, n), jdtype)
    jax_matmul = jax.jit(lambda x: x @ x)
    ta = torch.ones((n, n), dtype=tdtype, device=device)

    def torch_matmul():
        ta @ ta
        if on_gpu:
            torch.cuda.synchronize()

    timings = time_round_robin(
        {"jax": lambda: jax_matmul(a).block_until_ready(), "torch": torch_matmul}, 1, 5
    )
    flops = 2 * n**3
    return {name: flops / t["median_s"] / 1e12 for name, t in timings.items()} | {"n": n}


# ---------------------------------------------------------------------------------------------
# rajax contenders

# name -> InceptionI3d options (conv_impl 'native' unless a variant says otherwise: see
# model_options). The names end up in the JSON.
RAJAX_VARIANTS = {
    "plain": {},
    "fuse_1x1": {"fuse_1x1": True},
    "fold_bn": {"fold_batch_norm": True},
    "fuse_1x1+fold_bn": {"fuse_1x1": True, "fold_batch_norm": True},
    "as_2d": {"conv_impl": "as_2d"},
    "as_2d+fuse_1x1+fold_bn": {"conv_impl": "as_2d", "fuse_1x1": True, "fold_batch_norm": True},
}


def model_options(variant: str) -> dict:
    """InceptionI3d options of a forward variant. The convolution is always explicit: the
    model's default conv_impl='auto' would pick as_2d on a CPU and make 'plain' time as_2d."""
    return {"conv_impl": "native"} | RAJAX_VARIANTS[variant]


def rajax_forward(variant: str, dtype_name: str):
    """A jitted features function (variables, clips) -> [B, T', 1024] for one variant."""
    import jax
    import jax.numpy as jnp

    from rajax.models.i3d import InceptionI3d

    dtype = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
    model = InceptionI3d(num_classes=400, dtype=dtype, **model_options(variant))

    def features(variables, clips):
        return model.apply(variables, clips, train=False, output="features")

    return jax.jit(features)


def rajax_variants_available() -> dict[str, dict]:
    """The variants whose options this version of InceptionI3d has."""
    from rajax.models.i3d import InceptionI3d

    fields = set(InceptionI3d.__dataclass_fields__)
    return {
        name: options
        for name, options in RAJAX_VARIANTS.items()
        if set(options) <= fields
    }


# ---------------------------------------------------------------------------------------------
# PyTorch contenders


def torch_forward_contenders(model_f32, clips_ncthw: torch.Tensor, on_gpu: bool, dtypes,
                             compile: bool) -> dict:
    """name -> (dtype, callable returning features [B, T', C] as float32 numpy-able tensor)."""
    import copy

    contenders = {}
    cl_model = copy.deepcopy(model_f32).to(memory_format=torch.channels_last_3d)
    cl_clips = clips_ncthw.contiguous(memory_format=torch.channels_last_3d)

    def run(model, clips, autocast_dtype=None):
        def call():
            with torch.inference_mode(), (
                torch.autocast(clips.device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            ):
                out = model(clips, output="features")
            if on_gpu:
                torch.cuda.synchronize()
            return out

        return call

    if "float32" in dtypes:
        contenders["torch eager"] = ("float32", run(model_f32, clips_ncthw))
        contenders["torch eager channels_last_3d"] = ("float32", run(cl_model, cl_clips))
    if "bfloat16" in dtypes:
        contenders["torch eager channels_last_3d bf16-autocast"] = (
            "bfloat16",
            run(cl_model, cl_clips, torch.bfloat16),
        )
    if compile:
        compiled = torch.compile(cl_model)
        if "float32" in dtypes:
            contenders["torch.compile channels_last_3d"] = ("float32", run(compiled, cl_clips))
        if "bfloat16" in dtypes:
            contenders["torch.compile channels_last_3d bf16-autocast"] = (
                "bfloat16",
                run(compiled, cl_clips, torch.bfloat16),
            )
    return contenders


# ---------------------------------------------------------------------------------------------
# Forward benchmark


def bench_forward(args, variables, torch_model, compile_counter, on_gpu) -> dict:
    import jax
    import jax.numpy as jnp

    from rajax.reference.architecture import forward_macs

    rng = np.random.default_rng(0)
    clips = rng.uniform(-1, 1, (args.batch, args.frames, args.size, args.size, 3)).astype(np.float32)
    flops_per_clip = 2 * forward_macs(args.frames, args.size, args.size)
    device = "cuda" if on_gpu else "cpu"
    clips_torch = torch.from_numpy(np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))).to(device)
    clips_jax = jax.device_put(jnp.asarray(clips))

    contenders: dict[str, Callable] = {}
    meta: dict[str, dict] = {}
    outputs: dict[str, Any] = {}
    available = rajax_variants_available()
    for dtype_name in args.dtypes:
        variants = args.variants if dtype_name == "float32" else args.bf16_variants
        for variant in variants:
            if variant not in available:
                print(f"  (skipping {variant}: this InceptionI3d lacks its options)")
                continue
            name = f"rajax {variant} {dtype_name}"
            fn = rajax_forward(variant, dtype_name)
            start = time.perf_counter()
            outputs[name] = np.asarray(fn(variables, clips_jax))
            compile_s = time.perf_counter() - start
            contenders[name] = lambda fn=fn: fn(variables, clips_jax).block_until_ready()
            meta[name] = {"framework": "rajax", "dtype": dtype_name, "variant": variant,
                          "compile_and_first_run_s": compile_s}
            print(f"  compiled {name} in {compile_s:.1f} s", flush=True)
    if not args.no_torch:
        for name, (dtype_name, fn) in torch_forward_contenders(
            torch_model, clips_torch, on_gpu, args.dtypes, args.torch_compile
        ).items():
            start = time.perf_counter()
            outputs[name] = fn().float().cpu().numpy()
            meta[name] = {"framework": "torch", "dtype": dtype_name,
                          "compile_and_first_run_s": time.perf_counter() - start}
            contenders[name] = fn

    reference = outputs.get("torch eager")
    if reference is not None:
        for name in meta:
            meta[name]["max_rel_diff_vs_torch_f32"] = relative_error(outputs[name], reference)
    return timed_section(contenders, meta, compile_counter, args.warmup, args.repeats,
                         {"batch": args.batch, "frames": args.frames, "size": args.size}, flops_per_clip)


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
        "ratios": _ratios(results),
    }


def _ratios(results: dict) -> dict:
    """Speed of the best rajax contender over the best PyTorch one, per dtype (> 1: rajax faster)."""
    ratios = {}
    for dtype_name in ("float32", "bfloat16"):
        def best(framework, eager_only=False):
            candidates = [
                (r["median_s"], n) for n, r in results.items()
                if r["framework"] == framework and r["dtype"] == dtype_name
                and not (eager_only and "compile" in n)
            ]
            return min(candidates) if candidates else None

        rajax_best, torch_best = best("rajax"), best("torch")
        if rajax_best and torch_best:
            ratios[dtype_name] = {
                "rajax": rajax_best[1],
                "torch": torch_best[1],
                "speedup_rajax_over_torch": torch_best[0] / rajax_best[0],
            }
    return ratios


# ---------------------------------------------------------------------------------------------
# Stage-1 training step


@functools.cache
def _stage1_model():
    """Stage 1 as rajax trains it (configs/base.py): Kinetics-400 I3D with a fresh 10-way Logits
    layer; the paper's rules train Mixed_4f, Mixed_5b, Mixed_5c and Logits, the rest is frozen."""
    from rajax.train import backbone
    from rajax.train.config import load_config

    config = load_config("base")
    model, variables = backbone.finetune_model(config, FINE_TUNED_CLASSES, seed=1)
    return config, model, variables


def rajax_train_step(dtype_name: str, remat: bool, conv: str, donate: bool, fuse_1x1: bool = False):
    """The step ``rajax train`` runs for stage 1: ``rajax.train.steps.train_step`` pmapped over
    the local devices, built by ``rajax.train.trainer.stage_steps`` from the base config.

    Returns (replicated state, step) with step(state, batch) -> (state, metrics); batches are
    dicts of uint8 ``frames``, ``label`` and ``mask`` split over the devices, as in training.
    """
    from rajax.models.i3d import FINE_TUNED_BLOCKS
    from rajax.train import stages, steps, trainer
    from rajax.train.backbone import compute_dtype

    config, model, variables = _stage1_model()
    model = model.clone(dtype=compute_dtype(dtype_name), conv_impl=conv, fuse_1x1=fuse_1x1,
                        remat_blocks=FINE_TUNED_BLOCKS if remat else ())
    task = trainer.Task(stages.i3d_forward(model), variables["params"], variables["batch_stats"])
    state, train_fn, _, _ = trainer.stage_steps(task, config.finetune, config.seed, total_steps=10_000,
                                                donate=donate)
    return steps.replicate(state), train_fn


def stage1_batch(batch: int, frames: int, size: int, seed: int = 2) -> dict[str, np.ndarray]:
    """A stage-1 batch as the training pipeline sends it: uint8 frames, labels, mask."""
    rng = np.random.default_rng(seed)
    return {
        "frames": rng.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8),
        "label": rng.integers(0, FINE_TUNED_CLASSES, batch).astype(np.int32),
        "mask": np.ones((batch,), np.float32),
    }


TRAIN_VARIANTS = {
    # name: (dtype, remat, conv, donate, fuse_1x1)
    "plain f32": ("float32", False, "native", True, False),
    "no-donation f32": ("float32", False, "native", False, False),
    "remat f32": ("float32", True, "native", True, False),
    "as_2d f32": ("float32", False, "as_2d", True, False),
    "as_2d+fuse_1x1 f32": ("float32", False, "as_2d", True, True),
    "plain bf16": ("bfloat16", False, "native", True, False),
    "as_2d bf16": ("bfloat16", False, "as_2d", True, False),
}


class TorchStage1:
    """The same stage-1 step in PyTorch: frozen trunk in eval mode under no_grad, trainable
    blocks in train mode (BatchNorm batch statistics), new 10-way classifier, Adam."""

    def __init__(self, model, device: str, autocast_dtype=None, channels_last=False, compile=False):
        import copy

        from rajax.reference.torch_i3d import InceptionI3d as TorchI3d

        self.model: TorchI3d = copy.deepcopy(model).to(device)
        self.model.replace_logits(FINE_TUNED_CLASSES)
        self.model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.trainable = [self.model.Mixed_4f, self.model.Mixed_5b, self.model.Mixed_5c, self.model.logits]
        for p in self.model.parameters():
            p.requires_grad_(False)
        for module in self.trainable:
            for p in module.parameters():
                p.requires_grad_(True)
        # configs/base.py's stage 1: Adam 1e-4 with L2 weight decay 1e-5, dropout 0.5 before Logits.
        self.optimizer = torch.optim.Adam([p for m in self.trainable for p in m.parameters()], lr=1e-4,
                                          weight_decay=1e-5)
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        # torch.compile: the loss (forward, and through AOTAutograd its backward); Adam stays eager.
        self.loss = torch.compile(self._loss) if compile else self._loss

    def _loss(self, frames, labels):
        m = self.model
        autocast = (
            torch.autocast(self.device, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None else contextlib.nullcontext()
        )
        with autocast:
            with torch.no_grad():
                clips = frames.float() / 127.5 - 1.0
                if self.channels_last:
                    clips = clips.contiguous(memory_format=torch.channels_last_3d)
                x = m.trunk(clips, until="Mixed_4e")
            x = m.Mixed_4f(x)
            x = m.MaxPool3d_5a_2x2(x)
            x = m.Mixed_5b(x)
            x = m.Mixed_5c(x)
            x = torch.nn.functional.avg_pool3d(x, avg_pool_kernel(*x.shape[2:]), stride=1)
            x = torch.nn.functional.dropout(x, 0.5, training=True)
            logits = m.logits(x).mean(dim=(2, 3, 4))
            return torch.nn.functional.cross_entropy(logits.float(), labels)

    def step(self, frames, labels):
        """``frames``: uint8 [b, 3, t, h, w], like rajax's step takes them."""
        self.model.eval()
        for module in self.trainable:
            module.train()
        loss = self.loss(frames, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return loss


def _on_devices(batch: dict) -> dict:
    """A host batch split over the local devices and placed there once (the timed steps then
    measure computation, as the PyTorch peer's inputs also sit on its device)."""
    import jax

    from rajax.train import steps

    return jax.pmap(lambda tree: tree, axis_name=steps.AXIS)(steps.shard(batch))


def bench_train(args, torch_model, compile_counter, on_gpu) -> dict:
    import jax

    from rajax.reference.architecture import train_step_macs

    host_batch = stage1_batch(args.train_batch, args.train_frames, args.size)
    batch = _on_devices(host_batch)
    flops_per_clip = 2 * train_step_macs(args.train_frames, args.size, args.size, FINE_TUNED_CLASSES)

    contenders, meta, states = {}, {}, {}
    for name in args.train_variants:
        dtype_name, remat, conv, donate, fuse = TRAIN_VARIANTS[name]
        if dtype_name not in args.dtypes:
            continue
        state, step = rajax_train_step(dtype_name, remat, conv, donate, fuse)
        start = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        compile_s = time.perf_counter() - start
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        states[name] = state
        meta[f"rajax {name}"] = {
            "framework": "rajax", "dtype": dtype_name, "remat": remat, "conv": conv,
            "donate": donate, "fuse_1x1": fuse, "compile_s": compile_s,
            "xla_cost_analysis_flops_per_clip": (cost or {}).get("flops", float("nan")) / args.train_batch,
        }

        # The pmapped step itself, not `compiled`: what training calls, cache hits included.
        def run(name=name, step=step):
            states[name], metrics = step(states[name], batch)
            jax.block_until_ready(metrics)

        contenders[f"rajax {name}"] = run
        print(f"  compiled rajax train step {name} in {compile_s:.1f} s", flush=True)

    if not args.no_torch:
        device = "cuda" if on_gpu else "cpu"
        tframes = torch.from_numpy(np.ascontiguousarray(host_batch["frames"].transpose(0, 4, 1, 2, 3))).to(device)
        tlabels = torch.from_numpy(host_batch["label"]).long().to(device)
        if "float32" in args.dtypes:
            runner = TorchStage1(torch_model, device)
            contenders["torch eager f32"] = lambda r=runner: r.step(tframes, tlabels)
            meta["torch eager f32"] = {"framework": "torch", "dtype": "float32"}
        if "bfloat16" in args.dtypes:
            runner_bf16 = TorchStage1(torch_model, device, torch.bfloat16, channels_last=True)
            contenders["torch eager channels_last_3d bf16-autocast"] = (
                lambda r=runner_bf16: r.step(tframes, tlabels)
            )
            meta["torch eager channels_last_3d bf16-autocast"] = {"framework": "torch", "dtype": "bfloat16"}
            if args.torch_compile:
                compiled = TorchStage1(torch_model, device, torch.bfloat16, channels_last=True, compile=True)
                start = time.perf_counter()
                compiled.step(tframes, tlabels)  # compiles
                name = "torch.compile channels_last_3d bf16-autocast"
                contenders[name] = lambda r=compiled: r.step(tframes, tlabels)
                meta[name] = {"framework": "torch", "dtype": "bfloat16", "compile_s": time.perf_counter() - start}
                print(f"  compiled {name} in {meta[name]['compile_s']:.1f} s", flush=True)

    inputs = {"batch": args.train_batch, "frames": args.train_frames, "size": args.size}
    return timed_section(contenders, meta, compile_counter, args.warmup, args.train_repeats, inputs,
                         flops_per_clip)


# ---------------------------------------------------------------------------------------------
# Peak memory of the paper's stage-1 step (batch 4 x 512 frames)


def bench_memory(args, on_gpu) -> dict:
    import jax

    devices = jax.local_device_count()
    batch_shapes = {
        "frames": jax.ShapeDtypeStruct((devices, args.memory_batch // devices, args.memory_frames, 224, 224, 3),
                                       np.uint8),
        "label": jax.ShapeDtypeStruct((devices, args.memory_batch // devices), np.int32),
        "mask": jax.ShapeDtypeStruct((devices, args.memory_batch // devices), np.float32),
    }
    results = {}
    for name in args.memory_variants:
        dtype_name, remat, conv, donate, fuse = TRAIN_VARIANTS[name]
        state, step = rajax_train_step(dtype_name, remat, conv, donate, fuse)
        start = time.perf_counter()
        compiled = step.lower(state, batch_shapes).compile()
        entry: dict[str, Any] = {"compile_s": time.perf_counter() - start}
        analysis = compiled.memory_analysis()
        if analysis is not None:
            fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
                      "temp_size_in_bytes", "generated_code_size_in_bytes")
            entry |= {f: int(getattr(analysis, f)) for f in fields}
            # Everything live at once in the worst case XLA planned for: inputs, outputs that do
            # not reuse donated inputs, and the temporaries of the step.
            entry["xla_planned_peak_bytes"] = (
                analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes
            )
        if on_gpu:
            device = jax.devices()[0]
            batch = _on_devices(stage1_batch(args.memory_batch, args.memory_frames, 224))
            for _ in range(2):
                state, metrics = step(state, batch)
            jax.block_until_ready(metrics)
            stats = device.memory_stats() or {}
            entry["device_peak_bytes_in_use"] = stats.get("peak_bytes_in_use")
            del batch, state
        results[name] = entry
        print(f"  memory {name}: {entry.get('xla_planned_peak_bytes', 0) / 2**30:.2f} GiB planned",
              flush=True)
    return {"input": {"batch": args.memory_batch, "frames": args.memory_frames, "size": 224},
            "variants": results}


# ---------------------------------------------------------------------------------------------
# One Breakfast-sized video end to end


def bench_video(args, variables, torch_model, on_gpu) -> dict:
    import jax
    import jax.numpy as jnp

    from rajax.data.pipeline import load_video_regions
    from rajax.data.regions import REGION_NAMES
    from rajax.models.i3d import InceptionI3d
    from rajax.reference.architecture import forward_macs

    regions = REGION_NAMES[: args.video_regions]
    start = time.perf_counter()
    pixels = load_video_regions(
        str(args.video), regions=list(regions), num_timesteps=args.video_frames // 8,
        size=args.video_size, output="uint8",
    )  # [R, N, size, size, 3] uint8; without a detection file the actor region is the full square
    decode_s = time.perf_counter() - start

    model = InceptionI3d(num_classes=400, **model_options(args.video_variant))

    def features(variables, region_pixels):
        clips = region_pixels[None].astype(jnp.float32) / 127.5 - 1.0
        return model.apply(variables, clips, train=False, output="features")

    start = time.perf_counter()
    region_shape = jax.ShapeDtypeStruct(pixels.shape[1:], jnp.uint8)
    compiled = jax.jit(features).lower(variables, region_shape).compile()
    compile_s = time.perf_counter() - start
    per_region, outputs = [], []
    start_all = time.perf_counter()
    for region in range(len(regions)):
        start = time.perf_counter()
        outputs.append(np.asarray(compiled(variables, pixels[region])))
        per_region.append(time.perf_counter() - start)
    network_s = time.perf_counter() - start_all
    result = {
        "video": str(args.video),
        "regions": len(regions),
        "frames": args.video_frames,
        "size": args.video_size,
        "variant": args.video_variant,
        "decode_crop_resize_s": decode_s,
        "compile_s": compile_s,
        "features_s": network_s,
        "per_region": _stats(per_region),
        "seconds_per_video": decode_s + network_s,
        "tflops": 2 * forward_macs(args.video_frames, args.video_size, args.video_size)
        * len(regions) / network_s / 1e12,
        "feature_shape": list(np.stack(outputs).shape),
    }
    if args.video_torch and not args.no_torch:
        device = "cuda" if on_gpu else "cpu"
        import copy

        model_t = copy.deepcopy(torch_model).to(memory_format=torch.channels_last_3d)
        times = []
        for region in range(len(regions)):
            start = time.perf_counter()
            x = torch.from_numpy(pixels[region][None]).to(device).permute(0, 4, 1, 2, 3)
            x = (x.float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last_3d)
            with torch.inference_mode():
                out = model_t(x, output="features").cpu().numpy()
            times.append(time.perf_counter() - start)
            if region == 0:
                result["torch_max_rel_diff_region0"] = relative_error(outputs[0], out)
        result["torch_channels_last_3d_features_s"] = sum(times)
        result["torch_per_region"] = _stats(times)
    return result


# ---------------------------------------------------------------------------------------------
# XLA flags (each in its own process)

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
            sys.executable, __file__, "--only", "forward", "--no-torch", "--dtypes", ",".join(args.dtypes),
            "--variants", ",".join(args.variants), "--bf16-variants", ",".join(args.bf16_variants),
            "--frames", str(args.frames),
            "--size", str(args.size), "--batch", str(args.batch), "--repeats", str(args.repeats),
            "--warmup", str(args.warmup), "--json", str(out), "--quiet",
        ]
        env = dict(os.environ, XLA_FLAGS=flags)
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
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


# ---------------------------------------------------------------------------------------------
# Report


def _fmt_table(section: dict, title: str, peaks: dict) -> str:
    """``peaks``: the measured matmul peaks ({dtype: {'jax': TFLOP/s, 'torch': TFLOP/s}}), if run."""
    rows = [f"\n{title}: batch {section['input']['batch']} x {section['input']['frames']} frames x "
            f"{section['input']['size']}^2, {section['flops_per_clip'] / 1e9:.1f} GFLOP/clip, "
            f"recompilations while timing: {section['recompilations_during_timing']}"]
    rows.append(f"{'contender':<52} {'median s':>9} {'min-max s':>15} {'clips/s':>8} {'TFLOP/s':>8} "
                f"{'of peak':>8} {'vs torch':>9}")
    for name, r in sorted(section["contenders"].items(), key=lambda kv: kv[1]["median_s"]):
        diff = r.get("max_rel_diff_vs_torch_f32")
        # The device's peak: the faster framework's matmul in this dtype.
        peak = max((v for k, v in peaks.get(r["dtype"], {}).items() if k in ("jax", "torch")), default=None)
        of_peak = f"{100 * r['tflops'] / peak:.0f}%" if peak else ""
        rows.append(
            f"{name:<52} {r['median_s']:>9.3f} {r['min_s']:>7.3f}-{r['max_s']:<7.3f} "
            f"{r['clips_per_s']:>8.3f} {r['tflops']:>8.4f} {of_peak:>8} {'' if diff is None else f'{diff:.1e}':>9}"
        )
    for dtype_name, ratio in section["ratios"].items():
        rows.append(f"  {dtype_name}: best rajax ({ratio['rajax']}) is "
                    f"{ratio['speedup_rajax_over_torch']:.2f}x the speed of best torch ({ratio['torch']})")
    return "\n".join(rows)


def report(results: dict) -> str:
    lines = [f"I3D benchmark on {results['machine'].get('cpu_model', '')} "
             f"[{results['machine']['backend']}: {results['machine']['device_kind']}], "
             f"{results['machine']['cpu_cores_usable']} cores"]
    if "matmul_peak_tflops" in results:
        lines.append("measured matmul peak (TFLOP/s): " + ", ".join(
            f"{d}: jax {v['jax']:.3f} / torch {v['torch']:.3f}" for d, v in results["matmul_peak_tflops"].items()))
    peaks = results.get("matmul_peak_tflops", {})
    if "forward" in results:
        lines.append(_fmt_table(results["forward"], "Forward (features)", peaks))
    if "train" in results:
        lines.append(_fmt_table(results["train"], "Stage-1 training step", peaks))
    if "memory" in results:
        m = results["memory"]
        lines.append(f"\nStage-1 step at batch {m['input']['batch']} x {m['input']['frames']} frames:")
        for name, entry in m["variants"].items():
            planned = entry.get("xla_planned_peak_bytes")
            peak = entry.get("device_peak_bytes_in_use")
            lines.append(f"  {name:<24} XLA-planned {planned / 2**30 if planned else float('nan'):7.2f} GiB"
                         + (f", device peak {peak / 2**30:.2f} GiB" if peak else ""))
    if "video" in results:
        v = results["video"]
        lines.append(
            f"\nOne video end to end ({v['regions']} regions x {v['frames']} frames at {v['size']}^2, "
            f"{v['variant']}): {v['seconds_per_video']:.1f} s/video "
            f"(decode+crop {v['decode_crop_resize_s']:.1f} s, features {v['features_s']:.1f} s, "
            f"median {v['per_region']['median_s']:.2f} s/region, {v['tflops']:.4f} TFLOP/s; "
            f"compile {v['compile_s']:.1f} s not counted)"
            + (f"; torch {v['torch_channels_last_3d_features_s']:.1f} s features"
               if "torch_channels_last_3d_features_s" in v else "")
        )
    if "xla_flags" in results:
        lines.append("\nXLA flags (rajax forward, median s per variant, each flag in its own process):")
        for flags, entry in results["xla_flags"].items():
            lines.append(f"  {flags:<40} {entry.get('median_s', entry.get('error', '')[:120])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small inputs and few repeats (about 2 minutes on 2 CPU cores)")
    p.add_argument("--only", default="", help="comma list of sections: peak,forward,train,memory,video,flags")
    p.add_argument("--frames", type=int, help="forward: frames per clip (full 64, quick 16)")
    p.add_argument("--size", type=int, help="forward/train: clip side in pixels (full 224, quick 112)")
    p.add_argument("--batch", type=int, help="forward: clips per call (full: 1 on CPU, 8 on GPU)")
    p.add_argument("--train-batch", type=int, help="train: clips per step (full: 2 on CPU, 4 on GPU)")
    p.add_argument("--train-frames", type=int, help="train: frames per clip (full: 64 on CPU, 512 on GPU)")
    p.add_argument("--repeats", type=int, help="timed calls per contender (full 5, quick 3)")
    p.add_argument("--train-repeats", type=int, help="timed steps per train contender (full 3, quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per contender after compiling")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--variants", default=None, help=f"rajax float32 forward variants: {','.join(RAJAX_VARIANTS)}")
    p.add_argument("--bf16-variants", default=None, help="rajax bfloat16 forward variants (full: plain,as_2d)")
    p.add_argument("--train-variants", default=None, help=f"of: {','.join(TRAIN_VARIANTS)}")
    p.add_argument("--memory-variants", default=None)
    p.add_argument("--memory-batch", type=int, default=4)
    p.add_argument("--memory-frames", type=int, default=512)
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="the real video for the end-to-end run")
    p.add_argument("--video-regions", type=int, help="regions (full 11)")
    p.add_argument("--video-frames", type=int, help="frames per region (full 512, quick 64)")
    p.add_argument("--video-size", type=int, help="region side in pixels (full 224, quick 112)")
    p.add_argument("--video-variant", default=None, help="rajax variant for the end-to-end run")
    p.add_argument("--video-torch", action="store_true", help="also time PyTorch on every region")
    p.add_argument("--xla-flag-sweep", action="store_true", help="also run the XLA flag candidates")
    p.add_argument("--threads", type=int, default=None,
                   help="PyTorch intra-op threads (default: the cores JAX sees)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time torch.compile (channels_last_3d) contenders (default: on a GPU only)")
    p.add_argument("--json", default=None, help="result file (default bench_results/benchmark-<backend>-<time>.json)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    return args


def finish_defaults(args, on_gpu: bool) -> argparse.Namespace:
    quick = args.quick

    def default(name, quick_value, cpu_value, gpu_value=None):
        if getattr(args, name) is None:
            setattr(args, name, quick_value if quick else (gpu_value if on_gpu and gpu_value is not None else cpu_value))

    if args.torch_compile is None:
        args.torch_compile = on_gpu
    default("frames", 16, 64)
    default("size", 112, 224)
    default("batch", 1, 1, 8)
    default("train_batch", 2, 2, 4)
    default("train_frames", 16, 64, 512)
    default("repeats", 3, 5)
    default("train_repeats", 2, 3)
    default("video_regions", 11, 11)
    default("video_frames", 64, 512)
    default("video_size", 112, 224)
    default("bf16_variants", "as_2d", "plain,as_2d")
    if args.variants is None:
        args.variants = ("plain,fuse_1x1+fold_bn,as_2d,as_2d+fuse_1x1+fold_bn" if quick
                         else "plain,fuse_1x1,fold_bn,fuse_1x1+fold_bn,as_2d,as_2d+fuse_1x1+fold_bn")
    if args.train_variants is None:
        args.train_variants = ("plain f32,as_2d f32" if quick else
                               "plain f32,no-donation f32,remat f32,as_2d f32,as_2d+fuse_1x1 f32,as_2d bf16")
    if args.memory_variants is None:
        args.memory_variants = "plain f32,remat f32" if quick else "plain f32,remat f32,plain bf16,as_2d f32"
    if args.video_variant is None:
        args.video_variant = "fuse_1x1+fold_bn" if on_gpu else "as_2d+fuse_1x1+fold_bn"
    args.variants = [v for v in args.variants.split(",") if v]
    args.bf16_variants = [v for v in args.bf16_variants.split(",") if v]
    args.train_variants = [v for v in args.train_variants.split(",") if v]
    args.memory_variants = [v for v in args.memory_variants.split(",") if v]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.sections = (set(args.only.split(",")) - {""}) or {"peak", "forward", "train", "memory", "video"}
    if args.xla_flag_sweep:
        args.sections.add("flags")
    args.xla_flag_candidates = XLA_FLAG_CANDIDATES
    if args.json is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        backend = "gpu" if on_gpu else "cpu"
        args.json = str(PROJECT_ROOT / "bench_results" / f"benchmark-{backend}{'-quick' if quick else ''}-{stamp}.json")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    on_gpu = jax.default_backend() == "gpu"
    finish_defaults(args, on_gpu)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    say = (lambda *a, **k: None) if args.quiet else functools.partial(print, flush=True)

    from rajax import load_i3d
    from rajax.reference.torch_i3d import model_from_flax

    _, variables = load_i3d()
    torch_model = model_from_flax(variables).to("cuda" if on_gpu else "cpu")
    counter = CompileCounter()
    results: dict[str, Any] = {"machine": machine_info(), "mode": "quick" if args.quick else "full",
                               "arguments": {k: (str(v) if isinstance(v, Path) else v)
                                             for k, v in vars(args).items() if k != "sections"}}
    say(f"backend {results['machine']['backend']} ({results['machine']['device_kind']}), "
        f"{results['machine']['cpu_cores_usable']} cores, torch threads {torch.get_num_threads()}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, default=str))
        tmp.replace(out)  # atomic: a reader never sees half a file

    sections = [
        ("peak", lambda: {d: measured_matmul_peak(d, on_gpu) for d in args.dtypes}, "matmul_peak_tflops"),
        ("forward", lambda: bench_forward(args, variables, torch_model, counter, on_gpu), "forward"),
        ("train", lambda: bench_train(args, torch_model, counter, on_gpu), "train"),
        ("memory", lambda: bench_memory(args, on_gpu), "memory"),
        ("video", lambda: bench_video(args, variables, torch_model, on_gpu), "video"),
        ("flags", lambda: bench_xla_flags(args), "xla_flags"),
    ]
    for section, run, key in sections:
        if section not in args.sections:
            continue
        say(f"[{section}]")
        start = time.perf_counter()
        results[key] = run()
        results.setdefault("section_wall_s", {})[section] = time.perf_counter() - start
        save()
    say(report(results))
    say(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
