"""Drawing the demo's scenes, in place on ``uint8 [H, W, 3]`` frames (coordinates are floats in
frame pixels): discs, boxes, lines, the props of the four sub-actions, the actor's body motion, the
toy car, sprites pasted with their alpha, and the cluttered room behind them.

``rajax.demo.generate`` plans every random choice of a video and renders it with these.
"""

from __future__ import annotations

import math

import numpy as np

# Saturated colours for props, shared by the actor's props and the distractors so that colour
# says nothing about the activity.
PALETTE = np.array([
    (230, 40, 40), (40, 170, 60), (40, 90, 230), (240, 200, 30), (230, 110, 20), (160, 50, 200),
    (20, 190, 200), (240, 90, 170), (250, 250, 250), (30, 30, 30), (150, 220, 60), (120, 70, 30),
], np.uint8)


def _window(frame, cx, cy, radius):
    h, w = frame.shape[:2]
    x0, x1 = max(int(math.floor(cx - radius)), 0), min(int(math.ceil(cx + radius)) + 1, w)
    y0, y1 = max(int(math.floor(cy - radius)), 0), min(int(math.ceil(cy + radius)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return (slice(y0, y1), slice(x0, x1)), xx + 0.5 - cx, yy + 0.5 - cy


def draw_disc(frame, cx, cy, radius, colour) -> None:
    window = _window(frame, cx, cy, radius)
    if window is not None:
        where, dx, dy = window
        frame[where][dx * dx + dy * dy <= radius * radius] = colour


def draw_rect(frame, x0, y0, x1, y1, colour) -> None:
    h, w = frame.shape[:2]
    x0, x1 = max(int(round(x0)), 0), min(int(round(x1)), w)
    y0, y1 = max(int(round(y0)), 0), min(int(round(y1)), h)
    if x0 < x1 and y0 < y1:
        frame[y0:y1, x0:x1] = colour


def draw_line(frame, p, q, thickness, colour) -> None:
    (px, py), (qx, qy) = p, q
    cx, cy, radius = (px + qx) / 2, (py + qy) / 2, math.hypot(qx - px, qy - py) / 2 + thickness
    window = _window(frame, cx, cy, radius)
    if window is None:
        return
    where, dx, dy = window
    ux, uy = qx - px, qy - py
    length2 = max(ux * ux + uy * uy, 1e-9)
    # Distance of each pixel centre to the segment.
    rx, ry = dx + cx - px, dy + cy - py
    t = np.clip((rx * ux + ry * uy) / length2, 0.0, 1.0)
    frame[where][(rx - t * ux) ** 2 + (ry - t * uy) ** 2 <= (thickness / 2) ** 2] = colour


def draw_pinwheel(frame, cx, cy, radius, angle, colours) -> None:
    window = _window(frame, cx, cy, radius)
    if window is None:
        return
    where, dx, dy = window
    distance2 = dx * dx + dy * dy
    sector = np.floor((np.arctan2(dy, dx) - angle) / (np.pi / 2)).astype(int) % 2
    patch = frame[where]
    inside = distance2 <= radius * radius
    patch[inside & (sector == 0)] = colours[0]
    patch[inside & (sector == 1)] = colours[1]
    patch[inside & (distance2 >= (radius - 1.5) ** 2)] = (20, 20, 20)
    patch[distance2 <= (0.2 * radius) ** 2] = (20, 20, 20)


def draw_prop(frame, kind: str, hx: float, hy: float, unit: float, t: float, colours, side: int = 1) -> None:
    """One sub-action's prop at a hand ``(hx, hy)``, at time ``t`` seconds; ``unit`` is the actor's
    height in pixels (props scale with it); ``side`` (+1 / -1) is where the prop leans."""
    first, second = (tuple(int(v) for v in PALETTE[c]) for c in colours)
    if kind == "juggle":  # three balls on an arc above the hand
        for ball in range(3):
            phase = 2 * np.pi * (1.3 * t + ball / 3)
            x = hx + 0.09 * unit * math.cos(phase)
            y = hy - 0.22 * unit * abs(math.sin(phase))
            draw_disc(frame, x, y, 0.035 * unit, first if ball != 1 else second)
    elif kind == "pour":  # a cup, and a stream falling from it
        cup_w, cup_h = 0.08 * unit, 0.1 * unit
        draw_rect(frame, hx - cup_w / 2, hy - cup_h / 2, hx + cup_w / 2, hy + cup_h / 2, first)
        length = 0.25 * unit
        for drop in range(6):
            fall = (t * length / 0.6 + drop * length / 6) % length
            draw_disc(frame, hx + side * cup_w / 2, hy + cup_h / 2 + fall, 0.022 * unit, second)
    elif kind == "spin":  # a pinwheel on a stick
        radius = 0.1 * unit
        centre = (hx + side * 0.04 * unit, hy - 0.12 * unit)
        draw_line(frame, (hx, hy), centre, max(0.02 * unit, 1.5), (60, 45, 30))
        draw_pinwheel(frame, centre[0], centre[1], radius, 2 * np.pi * 0.9 * t, (first, second))
    elif kind == "flash":  # a lamp blinking three times a second, with a halo when on
        half = 0.06 * unit
        if (3.0 * t) % 1.0 < 0.5:
            halo = tuple(int(0.5 * v + 127) for v in first)
            draw_disc(frame, hx, hy, 2.0 * half, halo)
            draw_rect(frame, hx - half, hy - half, hx + half, hy + half, first)
        else:
            draw_rect(frame, hx - half, hy - half, hx + half, hy + half, (45, 45, 45))
    else:
        raise ValueError(f"unknown sub-action {kind!r}")


def body_motion(kind: str, t: float, unit: float) -> tuple[float, float, bool]:
    """How a sub-action moves the actor at time ``t``: ``(dx, dy, turned)`` (pixels; turned: the
    sprite is mirrored). Distractors are props alone: only the actor moves like this."""
    if kind == "juggle":  # little hops
        return 0.0, -0.05 * unit * abs(math.sin(2 * np.pi * 1.4 * t)), False
    if kind == "pour":  # leaning from side to side
        return 0.05 * unit * math.sin(2 * np.pi * 1.1 * t), 0.0, False
    if kind == "spin":  # turning round and round
        return 0.0, 0.0, (2.5 * t) % 1.0 < 0.5
    return 0.0, 0.0, False  # flash: standing still


def draw_car(frame, x: float, y: float, unit: float, colour) -> None:
    length, height = 0.3 * unit, 0.1 * unit
    draw_rect(frame, x - length / 2, y - height / 2, x + length / 2, y + height / 2, colour)
    draw_rect(frame, x - length / 4, y - height, x + length / 4, y - height / 2, colour)
    for wheel in (-0.3, 0.3):
        draw_disc(frame, x + wheel * length, y + height / 2, 0.04 * unit, (25, 25, 25))


def paste_sprite(frame, rgba: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blends ``rgba`` with its top-left corner at ``(x0, y0)`` (clipped to the frame)."""
    h, w = frame.shape[:2]
    sh, sw = rgba.shape[:2]
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + sw, w), min(y0 + sh, h)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    part = rgba[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    alpha = part[..., 3:4].astype(np.float32) / 255.0
    region = frame[fy0:fy1, fx0:fx1]
    region[...] = np.round(alpha * part[..., :3] + (1.0 - alpha) * region).astype(np.uint8)


def render_background(seed: int, height: int, width: int, floor_y: int) -> np.ndarray:
    """A cluttered room: wall with shelves and boxes, tiled floor, static sensor-like noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    wall = rng.uniform(90, 200, 3)
    floor = rng.uniform(60, 160, 3)
    rows = np.linspace(1.1, 0.85, floor_y)[:, None, None]
    image[:floor_y] = wall * rows
    image[floor_y:] = floor
    tile = max(int(rng.uniform(14, 26)), 4)
    image[floor_y:, ::tile] *= 0.8
    for y in range(floor_y, height, tile // 2 + 1):
        image[y] *= 0.85
    for _ in range(3):  # shelves
        y = int(rng.uniform(0.1, 0.6) * floor_y)
        x0, x1 = sorted(rng.uniform(0, width, 2))
        image[y:y + 4, int(x0):int(x1)] = rng.uniform(40, 110, 3)
    for _ in range(int(rng.integers(18, 28))):  # boxes, posters, jars
        w, h = rng.uniform(8, 60), rng.uniform(8, 50)
        x, y = rng.uniform(-10, width), rng.uniform(-10, height - 10)
        x0, y0, x1, y1 = int(max(x, 0)), int(max(y, 0)), int(min(x + w, width)), int(min(y + h, height))
        if x0 >= x1 or y0 >= y1:
            continue
        colour = rng.uniform(30, 220, 3)
        patch = np.broadcast_to(colour, (y1 - y0, x1 - x0, 3)).copy()
        pattern = rng.integers(3)
        if pattern == 1:  # stripes
            period = int(rng.integers(3, 8))
            patch[:, (np.arange(x1 - x0) // period) % 2 == 1] *= 0.7
        elif pattern == 2:  # a label
            patch[(y1 - y0) // 3:(2 * (y1 - y0)) // 3, (x1 - x0) // 4:(3 * (x1 - x0)) // 4] = rng.uniform(180, 255, 3)
        image[y0:y1, x0:x1] = patch
        image[y0:y1, x0:min(x0 + 1, x1)] *= 0.6
        image[max(y1 - 1, y0):y1, x0:x1] *= 0.6
    image += rng.normal(0.0, 5.0, (height, width, 1))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def scaled_sprite(sprite: np.ndarray, height: float, mirrored: bool) -> np.ndarray:
    from PIL import Image

    h = max(int(round(height)), 8)
    w = max(int(round(sprite.shape[1] * h / sprite.shape[0])), 4)
    scaled = np.asarray(Image.fromarray(sprite, "RGBA").resize((w, h), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(scaled[:, ::-1] if mirrored else scaled)
