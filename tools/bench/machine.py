"""The machine's description, and its achievable dense FLOP/s (section ``peak``)."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from pathlib import Path

import torch

from bench.common import jax_dtype, torch_device
from bench.timing import time_round_robin


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
    tdtype = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    a = jnp.ones((n, n), jax_dtype(dtype_name))
    jax_matmul = jax.jit(lambda x: x @ x)
    ta = torch.ones((n, n), dtype=tdtype, device=torch_device(on_gpu))

    def torch_matmul():
        ta @ ta
        if on_gpu:
            torch.cuda.synchronize()

    timings = time_round_robin(
        {"jax": lambda: jax_matmul(a).block_until_ready(), "torch": torch_matmul}, 1, 5
    )
    flops = 2 * n**3
    return {name: flops / t["median_s"] / 1e12 for name, t in timings.items()} | {"n": n}
