"""Pure geometry of Actor Focus: averaging person boxes and deriving the actor square.

Two coordinate frames appear here, both in pixels with x to the right and y down, and box edges
as continuous coordinates (a box ``[x0, y0, x1, y1]`` covers the pixels ``x0 <= x < x1``, the
convention of YOLO's ``xyxy``):

- original: the decoded frame, ``width`` x ``height``;
- square: the central square crop of the frame that the model sees (docs/method.md, Input 2), of side
  ``min(height, width)``, centred horizontally in a landscape frame and vertically in a portrait
  one (``rajax.data.regions.central_square_box``). A point ``(x, y)`` of the original frame is
  ``(x - offset_x, y - offset_y)`` in the square.

The actor square is stored as ``[x0, y0, side]`` in integer square-frame pixels: the cropper takes
``square[y0:y0 + side, x0:x0 + side]``, which always lies inside the square frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rajax.data.regions import central_square_box


def mean_box(boxes: Sequence[Sequence[float]] | np.ndarray) -> list[float] | None:
    """The coordinate-wise mean of ``[N, 4]`` xyxy boxes, or None when there are none."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return None
    return [float(v) for v in boxes.mean(axis=0)]


def original_to_square(box_xyxy: Sequence[float], height: int, width: int) -> list[float]:
    """An xyxy box in original-frame pixels, expressed in square-frame pixels (not clipped)."""
    offset_x, offset_y, _ = central_square_box(height, width)
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    return [x0 - offset_x, y0 - offset_y, x1 - offset_x, y1 - offset_y]


def square_to_original(box_xyxy: Sequence[float], height: int, width: int) -> list[float]:
    """An xyxy box in square-frame pixels, expressed in original-frame pixels."""
    offset_x, offset_y, _ = central_square_box(height, width)
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    return [x0 + offset_x, y0 + offset_y, x1 + offset_x, y1 + offset_y]


def _round_half_up(value: float) -> int:
    # Python's round() rounds halves to even; a crop position should not depend on parity.
    return int(math.floor(value + 0.5))


def actor_square(box_xyxy: Sequence[float] | None, height: int, width: int) -> list[int]:
    """The actor square ``[x0, y0, side]`` in square-frame pixels for a box in original pixels.

    Same centre as the box, side = max(box width, box height) rounded to whole pixels (at least 1),
    then shifted by the least amount that puts it inside the square frame; a side larger than the
    square frame is clipped to it (the actor square is then the whole square frame). ``None`` (no
    person detected) gives the whole square frame: the Actor Focus fallback.
    """
    _, _, frame_side = central_square_box(height, width)
    if box_xyxy is None:
        return [0, 0, frame_side]
    x0, y0, x1, y1 = original_to_square(box_xyxy, height, width)
    if not (x1 >= x0 and y1 >= y0) or not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"not a valid xyxy box: {list(box_xyxy)}")
    side = min(frame_side, max(1, _round_half_up(max(x1 - x0, y1 - y0))))
    centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left = _round_half_up(centre_x - side / 2.0)
    top = _round_half_up(centre_y - side / 2.0)
    # Shift (never shrink) into [0, frame_side - side] along each axis.
    left = min(max(left, 0), frame_side - side)
    top = min(max(top, 0), frame_side - side)
    return [left, top, side]


def actor_square_xyxy(square: Sequence[int], height: int, width: int) -> list[int]:
    """The actor square ``[x0, y0, side]`` (square-frame pixels) as an xyxy box in original pixels."""
    offset_x, offset_y, _ = central_square_box(height, width)
    x0, y0, side = (int(v) for v in square)
    return [x0 + offset_x, y0 + offset_y, x0 + offset_x + side, y0 + offset_y + side]
