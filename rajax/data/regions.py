"""Spatial regions: the central square of each frame, and square crops of that square.

Geometry comes first, as pure functions of the square's side (pixel boxes ``(x0, y0, side)`` in
square-frame coordinates, origin at the square's top-left corner). Cropping and resizing run in
JAX (``rajax.data.crops``): inside the compiled steps for training, extraction and prediction, and
through :func:`crop_regions` for pictures on the host. One implementation everywhere.

The regions, in the fixed order the features are stored in (``REGION_NAMES``):

- ``full``: the whole square;
- ``grid_<row>_<col>``: a 3x3 grid of overlapping squares of side 5/8 of the square, starting at
  0, 3/16 and 3/8 of the side along each axis (row = vertical, col = horizontal);
- ``actor``: the actor square found by ``rajax detect-actors``, or the full square when the video
  has none (no person detected, or no detections supplied).

Every crop is resized to ``size`` x ``size`` (224 for I3D) with an antialiased bilinear filter, so
downscaling large frames does not alias.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from rajax.data.region_names import GRID_NAMES, REGION_NAMES, REGIONS_WITHOUT_ACTOR  # noqa: F401 - theirs too

GRID_SIDE_FRACTION = 5 / 8
GRID_OFFSET_FRACTIONS = (0.0, 3 / 16, 3 / 8)

DEFAULT_SIZE = 224
# The canvas the host hands the device (config.data.frame_side): squares larger than this are
# shrunk while decoding, smaller ones padded. 256 keeps the paper's Breakfast squares (240) and
# Kinetics' (240-256) as they are; a 5/8 grid cell then has 160 pixels, enlarged to 224.
DEFAULT_FRAME_SIDE = 256


# ---------------------------------------------------------------------------------------------
# Geometry


def resolve_regions(regions: int | str | Sequence[str] | None = None) -> tuple[str, ...]:
    """Region names in the fixed order, from a config value.

    ``None``/``"all"``/``11`` -> all 11; ``10``/``"no_actor"`` -> all but ``actor``; ``1`` ->
    ``("full",)``; a comma-separated string or a sequence of names -> that subset, reordered to the
    fixed order (so features always line up region by region).
    """
    if regions is None or regions == "all" or regions == len(REGION_NAMES):
        return REGION_NAMES
    if regions == "no_actor" or regions == len(REGIONS_WITHOUT_ACTOR):
        return REGIONS_WITHOUT_ACTOR
    if regions == 1:
        return ("full",)
    if isinstance(regions, int):
        raise ValueError(f"regions as a number must be 1, 10 or 11, got {regions}")
    names = [name.strip() for name in regions.split(",")] if isinstance(regions, str) else list(regions)
    unknown = [name for name in names if name not in REGION_NAMES]
    if unknown:
        raise ValueError(f"unknown region name(s) {unknown}; known: {', '.join(REGION_NAMES)}")
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"regions must be distinct and non-empty, got {names}")
    return tuple(name for name in REGION_NAMES if name in names)


def central_square_box(height: int, width: int) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the central square of a ``height`` x ``width`` frame.

    When the margins differ by one pixel the extra one goes to the right (bottom) margin, as with
    ``frame[(h - s) // 2 : ..., (w - s) // 2 : ...]``. Actor Focus (``rajax.detection.geometry``)
    places the actor square in this same box.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


def grid_box(side: int, row: int, col: int) -> tuple[int, int, int]:
    """``(x0, y0, crop_side)`` of grid cell (row, col) in a square of ``side`` pixels."""
    crop = max(1, int(np.floor(GRID_SIDE_FRACTION * side + 0.5)))
    # Rounding may push the last cell one pixel past the edge on odd sides: keep it inside.
    offsets = [min(int(np.floor(f * side + 0.5)), side - crop) for f in GRID_OFFSET_FRACTIONS]
    return offsets[col], offsets[row], crop


def actor_box(side: int, actor_square: Sequence[float] | None) -> tuple[int, int, int]:
    """The actor square ``[x0, y0, side]`` (square-frame pixels) as an integer box inside the square.

    ``None`` (no detection) gives the full square. A box that sticks out is shifted inside, and
    clipped to the square if it is larger.
    """
    if actor_square is None:
        return 0, 0, side
    x0, y0, actor_side = (float(v) for v in actor_square)
    if not np.isfinite([x0, y0, actor_side]).all() or actor_side <= 0:
        return 0, 0, side
    crop = int(min(max(np.floor(actor_side + 0.5), 1), side))
    x = int(np.clip(np.floor(x0 + 0.5), 0, side - crop))
    y = int(np.clip(np.floor(y0 + 0.5), 0, side - crop))
    return x, y, crop


def region_box(name: str, side: int, actor_square: Sequence[float] | None = None) -> tuple[int, int, int]:
    """``(x0, y0, crop_side)`` of the named region in a square of ``side`` pixels."""
    if name == "full":
        return 0, 0, side
    if name == "actor":
        return actor_box(side, actor_square)
    if name in GRID_NAMES:
        _, row, col = name.split("_")
        return grid_box(side, int(row), int(col))
    raise ValueError(f"unknown region {name!r}; known: {', '.join(REGION_NAMES)}")


def region_boxes(
    side: int,
    regions: Sequence[str] = REGION_NAMES,
    actor_square: Sequence[float] | None = None,
) -> np.ndarray:
    """``int32 [R, 3]`` boxes ``(x0, y0, crop_side)`` of ``regions`` in a square of ``side`` pixels."""
    return np.array([region_box(name, side, actor_square) for name in regions], dtype=np.int32).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------
# Cropping and resizing


def central_square_crop(frames: np.ndarray) -> np.ndarray:
    """The central square of a frame ``[H, W, C]`` or of frames ``[..., H, W, C]`` (a view, no copy)."""
    frames = np.asarray(frames)
    if frames.ndim < 3:
        raise ValueError(f"expected frames [..., H, W, C], got shape {frames.shape}")
    left, top, side = central_square_box(frames.shape[-3], frames.shape[-2])
    return frames[..., top : top + side, left : left + side, :]


def resize_square_tf(frames, size: int = DEFAULT_SIZE):
    """TF graph op: square frames ``[..., s, s, 3]`` (any dtype) -> float32 ``[..., size, size, 3]``
    in [0, 255], bilinear with antialiasing. For TFDS builders, which store shrunk squares."""
    import tensorflow as tf

    frames = tf.convert_to_tensor(frames)
    shape = tf.shape(frames)
    flat = tf.cast(tf.reshape(frames, tf.concat([[-1], shape[-3:]], axis=0)), tf.float32)
    resized = tf.image.resize(flat, (size, size), method="bilinear", antialias=True)
    resized = tf.clip_by_value(resized, 0.0, 255.0)  # antialiasing filters can overshoot slightly
    return tf.reshape(resized, tf.concat([shape[:-3], [size, size, shape[-1]]], axis=0))


def _finish(pixels, output: str) -> np.ndarray:
    pixels = np.asarray(pixels, np.float32)
    if output == "float32":
        return pixels / 127.5 - 1.0
    if output == "uint8":
        return np.floor(pixels + 0.5).clip(0, 255).astype(np.uint8)
    raise ValueError(f"output must be 'float32' or 'uint8', got {output!r}")


def crop_boxes(square_frames: np.ndarray, boxes: np.ndarray, size: int = DEFAULT_SIZE,
               output: str = "float32") -> np.ndarray:
    """Square frames ``uint8 [N, s, s, 3]`` and boxes ``[R, 3]`` -> ``[R, N, size, size, 3]``.

    ``output="float32"``: values in [-1, 1] (the I3D input); ``"uint8"``: rounded pixels (pictures).
    The same JAX computation the compiled steps run (``rajax.data.crops``).
    """
    if output not in ("float32", "uint8"):
        raise ValueError(f"output must be 'float32' or 'uint8', got {output!r}")
    pixels = _compiled_crops(size)(np.asarray(square_frames), np.asarray(boxes, np.int32))
    return _finish(np.clip(np.asarray(pixels), 0.0, 255.0), output)


@functools.lru_cache(maxsize=8)
def _compiled_crops(size: int):
    import jax

    from rajax.data import crops

    return jax.jit(jax.vmap(lambda frames, box: crops.crop_resize(frames, box, size), in_axes=(None, 0)))


def crop_regions(
    square_frames: np.ndarray,
    regions: Sequence[str] = REGION_NAMES,
    actor_square: Sequence[float] | None = None,
    size: int = DEFAULT_SIZE,
    output: str = "float32",
) -> np.ndarray:
    """Square frames ``uint8 [N, s, s, 3]`` -> every region ``[R, N, size, size, 3]``, in order."""
    square_frames = np.asarray(square_frames)
    if square_frames.ndim != 4 or square_frames.shape[1] != square_frames.shape[2]:
        raise ValueError(f"expected square frames [N, s, s, C], got shape {square_frames.shape}")
    return crop_boxes(square_frames, region_boxes(square_frames.shape[1], regions, actor_square), size, output)


def resize_square(frames: np.ndarray, size: int = DEFAULT_SIZE, output: str = "float32") -> np.ndarray:
    """Square frames ``uint8 [..., s, s, 3]`` -> ``[..., size, size, 3]``, antialiased bilinear."""
    frames = np.asarray(frames)
    if frames.ndim < 3 or frames.shape[-3] != frames.shape[-2]:
        raise ValueError(f"expected square frames [..., s, s, C], got shape {frames.shape}")
    side = frames.shape[-2]
    flat = frames.reshape((-1, side, side, frames.shape[-1]))
    resized = crop_boxes(flat, [[0, 0, side]], size, output)[0]
    return resized.reshape(frames.shape[:-3] + resized.shape[1:])
