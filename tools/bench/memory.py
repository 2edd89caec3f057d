"""Section ``memory``: peak memory of the paper's stage-1 step (batch 4 x 512 frames)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.train import Stage1, on_devices, stage1_batch


def xla_memory_plan(compiled) -> dict:
    """XLA's memory analysis of a compiled program (any backend, without running it): its sizes
    and ``xla_planned_peak_bytes``, everything live at once in the worst case XLA planned for
    (inputs, outputs that do not reuse donated inputs, and the temporaries). {} when XLA has none."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return {}
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "temp_size_in_bytes", "generated_code_size_in_bytes")
    plan = {f: int(getattr(analysis, f)) for f in fields}
    plan["xla_planned_peak_bytes"] = (plan["argument_size_in_bytes"] + plan["output_size_in_bytes"]
                                      - plan["alias_size_in_bytes"] + plan["temp_size_in_bytes"])
    return plan


def bench_memory(args, stage1: Stage1, on_gpu) -> dict:
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
        state, step = stage1.train_step(name)
        start = time.perf_counter()
        compiled = step.lower(state, batch_shapes).compile()
        entry: dict[str, Any] = {"compile_s": time.perf_counter() - start} | xla_memory_plan(compiled)
        if on_gpu:
            device = jax.devices()[0]
            batch = on_devices(stage1_batch(args.memory_batch, args.memory_frames, 224))
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
