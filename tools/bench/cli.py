"""The command line of tools/benchmark.py: options, their defaults per mode and backend, and
``main``, which runs the chosen sections, saving the JSON after each, then prints the table."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

import bench
from bench.common import DEFAULT_VIDEO, PROJECT_ROOT, csv_list, torch_device
from bench.forward import RAJAX_VARIANTS, bench_forward
from bench.machine import machine_info, measured_matmul_peak
from bench.memory import bench_memory
from bench.report import report
from bench.timing import CompileCounter
from bench.train import TRAIN_VARIANTS, Stage1, bench_train
from bench.video import bench_video
from bench.xla_flags import XLA_FLAG_CANDIDATES, bench_xla_flags

ALL_SECTIONS = ("peak", "forward", "train", "memory", "video")  # and "flags", on request


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=bench.__doc__.split("\n\n")[0],
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
    return p.parse_args(argv)


def finish_defaults(args, on_gpu: bool) -> argparse.Namespace:
    """Fills the options left unset with the mode's (quick/full) and backend's defaults."""
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
    default("variants", "plain,fuse_1x1+fold_bn,as_2d,as_2d+fuse_1x1+fold_bn",
            "plain,fuse_1x1,fold_bn,fuse_1x1+fold_bn,as_2d,as_2d+fuse_1x1+fold_bn")
    default("train_variants", "plain f32,as_2d f32",
            "plain f32,no-donation f32,remat f32,as_2d f32,as_2d+fuse_1x1 f32,as_2d bf16")
    default("memory_variants", "plain f32,remat f32", "plain f32,remat f32,plain bf16,as_2d f32")
    if args.video_variant is None:  # by backend, in either mode
        args.video_variant = "fuse_1x1+fold_bn" if on_gpu else "as_2d+fuse_1x1+fold_bn"
    for name in ("variants", "bf16_variants", "train_variants", "memory_variants", "dtypes"):
        setattr(args, name, csv_list(getattr(args, name)))
    args.sections = (set(args.only.split(",")) - {""}) or set(ALL_SECTIONS)
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

    # The Kinetics-400 checkpoint, read once: rajax's forward, the PyTorch peer, and stage 1's start.
    _, variables = load_i3d()
    torch_model = model_from_flax(variables).to(torch_device(on_gpu))
    stage1 = Stage1(variables)
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
        ("train", lambda: bench_train(args, stage1, torch_model, counter, on_gpu), "train"),
        ("memory", lambda: bench_memory(args, stage1, on_gpu), "memory"),
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
