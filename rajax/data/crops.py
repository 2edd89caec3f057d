"""Region crops on the accelerator: crop, antialiased resize and scaling to [-1, 1] inside jit.

The host hands the device each video's sampled frames once, as uint8 squares on a fixed canvas
(``frames [N, F, F, 3]``, the real square in its top-left corner, zero padding elsewhere: see
``rajax.data.pipeline``), plus integer region boxes ``(x0, y0, side)`` in square pixels
(``rajax.data.regions.region_boxes``). Everything per region happens here, in the compiled step:
stage-1 training cuts the one region drawn for each video, extraction and evaluation cut all R
regions from one frame tensor, ``rajax predict`` and ``rajax classify`` their regions.

The resize is TensorFlow's antialiased bilinear one (``tf.image.resize(..., antialias=True)``), the
filter the host pipeline used before, written as two small matrix products so that any box can be
cut from a frame of fixed shape without dynamic shapes: output pixel ``i`` of a crop of ``side``
pixels starting at ``start``, resized to ``size``, samples the input at
``c = start + (i + 0.5) * side / size - 0.5`` with a triangle kernel of radius
``max(side / size, 1)`` input pixels (wider when shrinking: antialiasing), restricted to the
box's own pixels and normalised to sum 1, so nothing outside the box (neighbouring image or canvas
padding) ever leaks in. Enlarging, this is plain bilinear interpolation with edge pixels repeated.
The products run at full float32 precision (``Precision.HIGHEST``), so a TPU or an Ampere GPU does
not round the pixels to bfloat16 or TF32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def resize_matrix(start: jax.Array, side: jax.Array, in_size: int, out_size: int) -> jax.Array:
    """``[out_size, in_size]`` float32 weights taking pixels ``[start, start + side)`` of an axis of
    ``in_size`` pixels to ``out_size`` pixels (antialiased bilinear); ``start``, ``side`` may be traced."""
    start = jnp.asarray(start, jnp.float32)
    side = jnp.asarray(side, jnp.float32)
    scale = out_size / side  # output pixels per input pixel
    radius = jnp.maximum(1.0 / scale, 1.0)  # the triangle widens when shrinking: antialiasing
    centres = start + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) / scale - 0.5
    pixels = jnp.arange(in_size, dtype=jnp.float32)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(pixels[None, :] - centres[:, None]) / radius)
    inside = (pixels >= start) & (pixels < start + side)
    weights = weights * inside[None, :]
    return weights / jnp.sum(weights, axis=1, keepdims=True)


def crop_resize(frames: jax.Array, box: jax.Array, size: int) -> jax.Array:
    """``frames [N, H, W, C]`` (any dtype, pixel values) and ``box`` int ``[3]`` ``(x0, y0, side)``
    -> the box's square resized to ``[N, size, size, C]``, float32 pixel values (same range)."""
    x0, y0, side = box[0], box[1], box[2]
    rows = resize_matrix(y0, side, frames.shape[1], size)  # [size, H]
    cols = resize_matrix(x0, side, frames.shape[2], size)  # [size, W]
    frames = frames.astype(jnp.float32)
    narrowed = jnp.einsum("nhwc,jw->nhjc", frames, cols, precision=_HIGHEST)
    resized = jnp.einsum("ih,nhjc->nijc", rows, narrowed, precision=_HIGHEST)
    return jnp.clip(resized, 0.0, 255.0)  # weights summing to 1 may round a hair past the range


def to_network_range(pixels: jax.Array, dtype=jnp.float32) -> jax.Array:
    """Pixel values in [0, 255] -> I3D's input range [-1, 1], in ``dtype`` (centred first, so that
    255 and 0 land exactly on 1 and -1 however the compiler rounds the division)."""
    return ((pixels - 127.5) / 127.5).astype(dtype)


def region_clip(frames: jax.Array, box: jax.Array, size: int, dtype=jnp.float32) -> jax.Array:
    """One region of one video as network input: ``[N, size, size, 3]`` in [-1, 1]."""
    return to_network_range(crop_resize(frames, box, size), dtype)


def region_clips(frames: jax.Array, boxes: jax.Array, size: int, dtype=jnp.float32) -> jax.Array:
    """Every region of one video: ``frames [N, F, F, 3]``, ``boxes [R, 3]`` -> ``[R, N, size, size, 3]``."""
    return jax.vmap(lambda box: region_clip(frames, box, size, dtype))(boxes)


def batch_region_clip(frames: jax.Array, boxes: jax.Array, size: int, dtype=jnp.float32) -> jax.Array:
    """One region per video of a batch: ``frames [B, N, F, F, 3]``, ``boxes [B, 3]`` -> ``[B, N, size, size, 3]``."""
    return jax.vmap(lambda f, b: region_clip(f, b, size, dtype))(frames, boxes)
