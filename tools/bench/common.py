"""Paths, constants and small helpers shared by the sections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED = PROJECT_ROOT.parent / "shared"
DEFAULT_VIDEO = SHARED / "data/dancer/dancer.avi"
FINE_TUNED_CLASSES = 10  # Breakfast


def torch_device(on_gpu: bool) -> str:
    return "cuda" if on_gpu else "cpu"


def jax_dtype(dtype_name: str):
    import jax.numpy as jnp

    return jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32


def to_torch_ncthw(array: np.ndarray, device: str) -> torch.Tensor:
    """[B, T, H, W, C] NumPy -> a contiguous [B, C, T, H, W] tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 4, 1, 2, 3))).to(device)


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|, in float32."""
    actual = np.asarray(actual, np.float32)
    expected = np.asarray(expected, np.float32)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


def csv_list(text: str) -> list[str]:
    """'a,b,' -> ['a', 'b']."""
    return [item for item in text.split(",") if item]
