"""Section ``forward``: I3D features of a batch of clips, every rajax variant against PyTorch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import jax_dtype, relative_error, to_torch_ncthw, torch_device
from bench.timing import timed_section
from bench.torch_peers import torch_forward_contenders

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

    from rajax.models.i3d import InceptionI3d

    model = InceptionI3d(num_classes=400, dtype=jax_dtype(dtype_name), **model_options(variant))

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


def bench_forward(args, variables, torch_model, compile_counter, on_gpu) -> dict:
    import jax
    import jax.numpy as jnp

    from rajax.reference.architecture import forward_macs

    rng = np.random.default_rng(0)
    clips = rng.uniform(-1, 1, (args.batch, args.frames, args.size, args.size, 3)).astype(np.float32)
    flops_per_clip = 2 * forward_macs(args.frames, args.size, args.size)
    clips_torch = to_torch_ncthw(clips, torch_device(on_gpu))
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
        for name, entry in meta.items():
            entry["max_rel_diff_vs_torch_f32"] = relative_error(outputs[name], reference)
    return timed_section(contenders, meta, compile_counter, args.warmup, args.repeats,
                         {"batch": args.batch, "frames": args.frames, "size": args.size}, flops_per_clip)
