"""Spatial regions: the central square of each frame, and square crops of that square.

Geometry comes first, as pure functions of the square's side (pixel boxes ``(x0, y0, side)`` in
square-frame coordinates, origin at the square's top-left corner); cropping and resizing come
after, in TensorFlow so the tf.data pipeline runs them in parallel outside the GIL.

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

from collections.abc import Sequence

import numpy as np

GRID_NAMES = tuple(f"grid_{row}_{col}" for row in range(3) for col in range(3))
REGION_NAMES = ("full", *GRID_NAMES, "actor")
REGIONS_WITHOUT_ACTOR = REGION_NAMES[:-1]

GRID_SIDE_FRACTION = 5 / 8
GRID_OFFSET_FRACTIONS = (0.0, 3 / 16, 3 / 8)

DEFAULT_SIZE = 224


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

    The same box as ``rajax.detection.geometry.central_square``: an odd margin leaves its extra
    pixel on the right (bottom).
    """
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


def to_unit_range(frames):
    """Pixel values in [0, 255] -> [-1, 1] (the I3D input range); NumPy or TF, float32."""
    return frames / 127.5 - 1.0


def resize_square_tf(frames, size: int = DEFAULT_SIZE):
    """TF graph op: square frames ``[..., s, s, 3]`` (any dtype) -> float32 ``[..., size, size, 3]``
    in [0, 255], bilinear with antialiasing. Leading dimensions are kept."""
    import tensorflow as tf

    frames = tf.convert_to_tensor(frames)
    shape = tf.shape(frames)
    flat = tf.cast(tf.reshape(frames, tf.concat([[-1], shape[-3:]], axis=0)), tf.float32)

    def resize(antialias):
        return lambda: tf.image.resize(flat, (size, size), method="bilinear", antialias=antialias)

    # Enlarging, the antialiased filter is plain bilinear (same weights, to 1e-4) but 7x slower:
    # only pay for it when shrinking.
    resized = tf.cond(shape[-2] > size, resize(True), resize(False))
    resized = tf.clip_by_value(resized, 0.0, 255.0)  # antialiasing filters can overshoot slightly
    return tf.reshape(resized, tf.concat([shape[:-3], [size, size, shape[-1]]], axis=0))


def crop_regions_tf(square_frames, boxes, size: int = DEFAULT_SIZE, output: str = "raw"):
    """TF graph op: ``square_frames [N, s, s, 3]``, ``boxes int32 [R, 3]`` (x0, y0, side) ->
    ``[R, N, size, size, 3]``. ``R`` must be static (it is: the region names).

    ``output``: ``"raw"`` float32 in [0, 255]; ``"float32"``/``"bfloat16"`` in [-1, 1];
    ``"uint8"`` rounded half up. Each region is converted before the next is resized, so the peak
    memory is one float32 region, not R of them (11 x 512 frames at 224 would be 3.4 GB).
    """
    import tensorflow as tf

    boxes = tf.convert_to_tensor(boxes, tf.int32)
    crops = []
    for r in range(boxes.shape[0]):
        x0, y0, side = boxes[r, 0], boxes[r, 1], boxes[r, 2]
        crop = resize_square_tf(square_frames[:, y0 : y0 + side, x0 : x0 + side, :], size)
        if output == "uint8":
            crop = tf.cast(tf.floor(crop + 0.5), tf.uint8)
        elif output in ("float32", "bfloat16"):
            crop = tf.cast(to_unit_range(crop), output)
        elif output != "raw":
            raise ValueError(f"output must be 'raw', 'float32', 'bfloat16' or 'uint8', got {output!r}")
        crops.append(crop)
    return tf.stack(crops)


def _finish(frames_0_255, output: str):
    if output == "float32":
        return to_unit_range(np.asarray(frames_0_255, np.float32)).astype(np.float32)
    if output == "uint8":
        return np.floor(np.asarray(frames_0_255) + 0.5).clip(0, 255).astype(np.uint8)
    raise ValueError(f"output must be 'float32' or 'uint8', got {output!r}")


def resize_square(frames: np.ndarray, size: int = DEFAULT_SIZE, output: str = "float32") -> np.ndarray:
    """Square frames ``uint8 [..., s, s, 3]`` -> ``[..., size, size, 3]``, antialiased bilinear.

    ``output="float32"``: values in [-1, 1] (the I3D input); ``output="uint8"``: rounded pixels.
    Uses TensorFlow (imported here), the same op the tf.data pipeline uses, so classification of a
    single video sees exactly the pixels training saw. Not for the detection process.
    """
    frames = np.asarray(frames)
    if frames.ndim < 3 or frames.shape[-3] != frames.shape[-2]:
        raise ValueError(f"expected square frames [..., s, s, C], got shape {frames.shape}")
    return _finish(resize_square_tf(frames, size).numpy(), output)


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
    boxes = region_boxes(square_frames.shape[1], regions, actor_square)
    if output not in ("float32", "uint8"):
        raise ValueError(f"output must be 'float32' or 'uint8', got {output!r}")
    return crop_regions_tf(square_frames, boxes, size, output=output).numpy()
