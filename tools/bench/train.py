"""Section ``train``: the stage-1 training step as ``rajax train`` runs it, rajax and PyTorch."""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from bench.common import FINE_TUNED_CLASSES, to_torch_ncthw, torch_device
from bench.timing import timed_section
from bench.torch_peers import TorchStage1

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


class Stage1:
    """Stage 1 as rajax trains it (configs/base.py): Kinetics-400 I3D with a fresh 10-way Logits
    layer; the paper's rules train Mixed_4f, Mixed_5b, Mixed_5c and Logits, the rest is frozen.

    ``kinetics_variables``: the default Kinetics-400 checkpoint, already loaded (``rajax.load_i3d()``),
    which stands in for the copy ``finetune_model`` would read again. Built on first use.
    """

    def __init__(self, kinetics_variables: dict):
        self.kinetics_variables = kinetics_variables

    @functools.cached_property
    def base(self):
        """(config, model, variables): ``rajax.train.backbone.finetune_model`` on configs/base.py."""
        from unittest import mock

        import jax

        from rajax.train import backbone
        from rajax.train.config import load_config

        config = load_config("base")
        if config.backbone.weights:  # not the default checkpoint: finetune_model reads it itself
            return (config, *backbone.finetune_model(config, FINE_TUNED_CLASSES, seed=1))
        # As backbone.pretrained_variables returns it; _merge_pretrained checks every shape.
        with mock.patch.object(backbone, "pretrained_variables",
                               lambda weights, width: jax.device_get(self.kinetics_variables)):
            model, variables = backbone.finetune_model(config, FINE_TUNED_CLASSES, seed=1)
        return config, model, variables

    def train_step(self, variant: str):
        """The step ``rajax train`` runs for stage 1 in a TRAIN_VARIANTS variant:
        ``rajax.train.steps.train_step`` pmapped over the local devices, built by
        ``rajax.train.trainer.stage_steps`` from the base config.

        Returns (replicated state, step) with step(state, batch) -> (state, metrics); batches are
        dicts of uint8 ``frames``, ``label`` and ``mask`` split over the devices, as in training.
        """
        from rajax.models.i3d import FINE_TUNED_BLOCKS
        from rajax.train import forwards, steps, trainer
        from rajax.train.backbone import compute_dtype

        dtype_name, remat, conv, donate, fuse_1x1 = TRAIN_VARIANTS[variant]
        config, model, variables = self.base
        model = model.clone(dtype=compute_dtype(dtype_name), conv_impl=conv, fuse_1x1=fuse_1x1,
                            remat_blocks=FINE_TUNED_BLOCKS if remat else ())
        task = trainer.Task(forwards.i3d_forward(model), variables["params"], variables["batch_stats"])
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


def on_devices(batch: dict) -> dict:
    """A host batch split over the local devices and placed there once (the timed steps then
    measure computation, as the PyTorch peer's inputs also sit on its device)."""
    import jax

    from rajax.train import steps

    return jax.pmap(lambda tree: tree, axis_name=steps.AXIS)(steps.shard(batch))


def bench_train(args, stage1: Stage1, torch_model, compile_counter, on_gpu) -> dict:
    import jax

    from rajax.reference.architecture import train_step_macs

    host_batch = stage1_batch(args.train_batch, args.train_frames, args.size)
    batch = on_devices(host_batch)
    flops_per_clip = 2 * train_step_macs(args.train_frames, args.size, args.size, FINE_TUNED_CLASSES)

    contenders, meta, states = {}, {}, {}
    for name in args.train_variants:
        dtype_name, remat, conv, donate, fuse = TRAIN_VARIANTS[name]
        if dtype_name not in args.dtypes:
            continue
        state, step = stage1.train_step(name)
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
        device = torch_device(on_gpu)
        tframes = to_torch_ncthw(host_batch["frames"], device)
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
