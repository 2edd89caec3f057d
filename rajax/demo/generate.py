"""The demo's dataset: generated videos of one real person doing sub-actions in a busy scene.

What a video shows (everything random is drawn from the seed, so a seed gives the same files):

- a cluttered room (wall, floor, shelves and boxes of random colours and textures, static noise);
- one person, cut out of a real photograph that Ultralytics ships (``bus.jpg``), so that a real
  person detector finds them; they walk slowly (a few pixels per second) and bob a little;
- the activity: a sequence of two or three sub-actions, in a random order and of random durations,
  each a prop at the person's hand and a movement of the body: ``juggle`` (three balls in the air,
  little hops), ``pour`` (a cup and a falling stream, leaning from side to side), ``spin`` (a
  rotating pinwheel, turning round), ``flash`` (a blinking lamp, standing still);
- distracting motion away from the person, unrelated to the activity: three props of the same
  four kinds (so the full frame always contains "sub-actions" that mean nothing) and a toy car
  crossing the upper part of the frame.

Activities are pairs of sub-actions and every sub-action belongs to two activities, so no single
sub-action tells the activity: as in Breakfast, where "pour milk" occurs in cereals, coffee and tea,
the model has to see what the actor does over the whole video. Distractor props have the size of
the actor's, so in a whole frame shrunk to the network's input both are a few pixels wide; the actor
crop shows the actor's twice larger and without the distractors.

The person sprites: the two people standing on the left of ``bus.jpg`` were located once, offline,
with the YOLO11n-pose model (their boxes and 17 COCO keypoints are the constants in ``PEOPLE``);
GrabCut, seeded with their skeletons, cuts them out of the photograph at run time.

Coordinates: frames are ``width`` x ``height`` (320 x 240 by default, as Breakfast); the scene is
laid out in the central square that the model sees (docs/method.md, Input 2) and the margins only
hold background.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rajax.data import video
from rajax.errors import RajaxError
from rajax.files import atomic_write_text

SUB_ACTIONS = ("juggle", "pour", "spin", "flash")
# name -> its two sub-actions (label order). Each sub-action is in exactly two activities.
ACTIVITIES = {
    "juggle_spin": ("juggle", "spin"),
    "pour_flash": ("pour", "flash"),
    "juggle_flash": ("juggle", "flash"),
    "pour_spin": ("pour", "spin"),
}
ACTIVITY_NAMES = tuple(ACTIVITIES)

# Size of the props (the actor's and the distractors') relative to the sizes in ``draw_prop``.
# Measured on 48 videos (4-fold cross-validation of a linear classifier on I3D features at 112x112,
# no body motion): at 1.0 the actor crop gave 51% and the full frame 40% (chance 25%); at 1.7,
# 69% and 42%; with the body motions as well, 78% and 51%. (The demo now reads 96x96 crops.)
PROP_SCALE = 1.7

MANIFEST_FORMAT = "rajax-demo-dataset"
MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
CSV_FILE = "dataset.csv"

# Saturated colours for props, shared by the actor's props and the distractors so that colour
# says nothing about the activity.
PALETTE = np.array([
    (230, 40, 40), (40, 170, 60), (40, 90, 230), (240, 200, 30), (230, 110, 20), (160, 50, 200),
    (20, 190, 200), (240, 90, 170), (250, 250, 250), (30, 30, 30), (150, 220, 60), (120, 70, 30),
], np.uint8)


# ---------------------------------------------------------------------------------------------
# The person sprites


@dataclasses.dataclass(frozen=True)
class PersonInPhoto:
    """A person in one of Ultralytics' sample photographs, as YOLO11n-pose found them."""

    name: str
    image: str  # file name in the ultralytics package's assets/ folder
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photograph's pixels
    keypoints: tuple[tuple[int, int], ...]  # 17 COCO keypoints (x, y): nose, eyes, ears, shoulders ...


# Found once with `YOLO("yolo11n-pose.pt").predict("bus.jpg")` (box confidences 0.887 and 0.878),
# rounded to whole pixels. The two boxes overlap; each person's skeleton marks the other as
# background when cutting out.
PEOPLE = (
    PersonInPhoto(
        "man_in_beige_coat", "bus.jpg", (48, 400, 244, 906),
        ((142, 442), (148, 431), (131, 433), (152, 438), (107, 441), (157, 493), (94, 499),
         (176, 551), (111, 568), (174, 532), (162, 534), (149, 645), (100, 649), (179, 749),
         (95, 757), (186, 850), (74, 858)),
    ),
    PersonInPhoto(
        "man_in_black_coat", "bus.jpg", (223, 405, 344, 859),
        ((293, 451), (298, 442), (283, 443), (304, 446), (265, 449), (318, 495), (251, 499),
         (329, 554), (251, 575), (279, 535), (252, 616), (303, 630), (259, 630), (301, 724),
         (261, 718), (288, 806), (261, 805)),
    ),
)

# Skeleton of COCO keypoints: arms, legs, shoulders, hips, sides of the torso.
_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12),
          (5, 11), (6, 12))


def ultralytics_assets_dir() -> Path:
    """The ``assets`` folder of the installed ultralytics package, found without importing it
    (importing ultralytics imports torch, which this process must not need)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise RajaxError("the demo builds its actor from photographs that the ultralytics package ships, "
                         "and ultralytics is not installed (pip install 'rajax[detect]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not folder.is_dir():
        raise RajaxError(f"{folder}: the ultralytics package has no assets folder")
    return folder


def _draw_skeleton(mask: np.ndarray, keypoints, value: int, width: int, offset: tuple[int, int]) -> None:
    import cv2

    points = [(int(x - offset[0]), int(y - offset[1])) for x, y in keypoints]
    for i, j in _LIMBS:
        cv2.line(mask, points[i], points[j], value, max(width, 1))
    cv2.fillPoly(mask, [np.array([points[5], points[6], points[12], points[11]], np.int32)], value)
    cv2.circle(mask, points[0], max(width, 1), value, -1)


def _toward(a, b, fraction: float) -> tuple[int, int]:
    return int(a[0] + fraction * (b[0] - a[0])), int(a[1] + fraction * (b[1] - a[1]))


def cut_out_person(photo: np.ndarray, person: PersonInPhoto, others: Sequence[PersonInPhoto] = ()) -> np.ndarray:
    """The person as an RGBA sprite ``uint8 [h, w, 4]``, cropped to the person.

    GrabCut (OpenCV) separates person from background inside the detector's box. It is seeded
    with the skeleton: thick limbs are "probably the person", thin ones "surely the person", the gap
    between the legs and the other people's skeletons "surely background".
    """
    import cv2

    x0, y0, x1, y1 = person.box
    pad = 12
    left, top = max(0, x0 - pad), max(0, y0 - pad)
    right, bottom = min(photo.shape[1], x1 + pad), min(photo.shape[0], y1 + pad)
    crop = np.ascontiguousarray(photo[top:bottom, left:right])
    mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    mask[y0 - top:y1 - top, x0 - left:x1 - left] = cv2.GC_PR_BGD
    width = x1 - x0
    _draw_skeleton(mask, person.keypoints, cv2.GC_PR_FGD, int(0.30 * width), (left, top))
    for other in others:
        _draw_skeleton(mask, other.keypoints, cv2.GC_BGD, int(0.12 * width), (left, top))
    k = [(x - left, y - top) for x, y in person.keypoints]
    hips = ((k[11][0] + k[12][0]) // 2, (k[11][1] + k[12][1]) // 2)
    knees = ((k[13][0] + k[14][0]) // 2, (k[13][1] + k[14][1]) // 2)
    between_legs = [_toward(hips, knees, 0.45), _toward(k[13], k[14], 0.3), _toward(k[15], k[16], 0.3),
                    _toward(k[16], k[15], 0.3), _toward(k[14], k[13], 0.3)]
    cv2.fillPoly(mask, [np.array(between_legs, np.int32)], cv2.GC_BGD)
    _draw_skeleton(mask, person.keypoints, cv2.GC_FGD, int(0.08 * width), (left, top))
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation: the same cut-out every run
    cv2.grabCut(crop[..., ::-1].copy(), mask, None, np.zeros((1, 65)), np.zeros((1, 65)), 5,
                cv2.GC_INIT_WITH_MASK)
    foreground = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground)
    if count < 2:
        raise RajaxError(f"could not cut {person.name} out of {person.image}")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    foreground = labels == largest
    rows, cols = np.nonzero(foreground)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # Soften the edge by one pixel so the pasted person does not look cut with scissors.
    alpha = cv2.GaussianBlur(foreground.astype(np.float32), (3, 3), 0)
    rgba = np.dstack([crop, np.round(alpha * 255).astype(np.uint8)])
    return np.ascontiguousarray(rgba[r0:r1, c0:c1])


def load_people() -> list[np.ndarray]:
    """The RGBA sprites of ``PEOPLE``, in order."""
    from PIL import Image

    folder = ultralytics_assets_dir()
    sprites = []
    for person in PEOPLE:
        path = folder / person.image
        if not path.is_file():
            raise RajaxError(f"{path}: the ultralytics sample photograph is missing")
        photo = np.asarray(Image.open(path).convert("RGB"))
        others = [p for p in PEOPLE if p is not person and p.image == person.image]
        sprites.append(cut_out_person(photo, person, others))
    return sprites


# ---------------------------------------------------------------------------------------------
# The dataset's size


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How many videos of which length; everything else is drawn from ``seed``."""

    train_per_class: int = 8
    test_per_class: int = 4
    validation_per_class: int = 0
    seconds: float = 10.0
    fps: int = 15
    width: int = 320
    height: int = 240
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    @property
    def square(self) -> tuple[int, int, int]:
        """(x offset, y offset, side) of the central square (the same rule as the model's crop)."""
        side = min(self.width, self.height)
        return (self.width - side) // 2, (self.height - side) // 2, side

    def videos(self) -> list[tuple[str, int, str]]:
        """``(video_id, label, split)`` of every video, in a fixed order (class by class)."""
        out = []
        for label, activity in enumerate(ACTIVITY_NAMES):
            for split, count in (("train", self.train_per_class), ("validation", self.validation_per_class),
                                 ("test", self.test_per_class)):
                out.extend((f"{split}/{activity}/{activity}_{i:02d}", label, split) for i in range(count))
        return out


# ---------------------------------------------------------------------------------------------
# Planning a video: every random choice, as JSON-able values


def _segments(rng: np.random.Generator, sub_actions: Sequence[str], num_frames: int) -> list[dict]:
    """Two or three alternating segments, each at least a quarter of the video, so that uniform
    sampling of three or more timesteps (``rajax.data.sampling.uniform_timesteps``) has a timestep
    in every segment."""
    first, second = (sub_actions[0], sub_actions[1]) if rng.random() < 0.5 else (sub_actions[1], sub_actions[0])
    if rng.random() < 0.5:
        split = rng.uniform(0.35, 0.65)
        fractions, names = [split, 1 - split], [first, second]
    else:
        fractions = list(0.25 + 0.25 * rng.dirichlet([1.0, 1.0, 1.0]))
        names = [first, second, first]
    bounds = np.round(np.cumsum([0.0] + fractions) * num_frames).astype(int)
    bounds[-1] = num_frames
    return [{"sub_action": name, "start": int(a), "end": int(b), "hand": int(rng.choice([-1, 1])),
             "colours": [int(c) for c in rng.choice(len(PALETTE), 2, replace=False)]}
            for name, a, b in zip(names, bounds[:-1], bounds[1:])]


def plan_video(rng: np.random.Generator, spec: DatasetSpec, label: int, num_sprites: int) -> dict:
    """Every random choice of one video (the renderer adds none)."""
    _, _, side = spec.square
    activity = ACTIVITY_NAMES[label]
    height = float(rng.uniform(0.42, 0.52) * side)  # the actor's height in pixels
    feet = float(rng.uniform(0.82, 0.95) * side)
    drift = float(rng.uniform(0.04, 0.08) * side) * float(rng.choice([-1, 1]))  # over the whole video
    reach = 0.62 * height  # from the actor's centre to the far side of a prop at their hand
    centre = float(rng.uniform(reach + abs(drift), side - reach - abs(drift)))
    x_start, x_end = centre - drift / 2, centre + drift / 2
    # Where the actor and their props are, over the whole video: distractors stay out of it (a
    # distractor with no room left is left out).
    zone = (min(x_start, x_end) - reach, feet - 1.1 * height, max(x_start, x_end) + reach, side)
    distractors = []
    for _ in range(3):
        for _attempt in range(200):
            x, y = rng.uniform(0.08 * side, 0.92 * side), rng.uniform(0.1 * side, 0.92 * side)
            margin = 0.2 * height
            inside = zone[0] - margin < x < zone[2] + margin and zone[1] - margin < y < zone[3] + margin
            crowded = any(math.hypot(x - d["x"], y - d["y"]) < 0.35 * height for d in distractors)
            if not inside and not crowded:
                break
        else:
            continue
        switch = int(rng.integers(spec.num_frames // 4, 3 * spec.num_frames // 4)) if rng.random() < 0.5 else None
        distractors.append({
            "x": float(x), "y": float(y),
            "sub_actions": [str(s) for s in rng.choice(SUB_ACTIONS, 2)],
            "switch_frame": switch,
            "colours": [int(c) for c in rng.choice(len(PALETTE), 2, replace=False)],
            "phase": float(rng.uniform(0, 1)),
        })
    mover_top = max(0.06 * side, zone[1] - 0.12 * height)
    return {
        "activity": activity,
        "label": label,
        "segments": _segments(rng, ACTIVITIES[activity], spec.num_frames),
        "actor": {
            "sprite": int(rng.integers(num_sprites)), "mirrored": bool(rng.random() < 0.5),
            "height": height, "feet": feet, "x_start": x_start, "x_end": x_end,
            "bob_hz": float(rng.uniform(0.6, 1.0)),
        },
        "distractors": distractors,
        "mover": {
            "y": float(rng.uniform(0.06 * side, mover_top)), "speed": float(rng.uniform(0.25, 0.45) * side),
            "direction": int(rng.choice([-1, 1])), "start": float(rng.uniform(0, side)),
            "colour": int(rng.integers(len(PALETTE))),
        },
        "scene_seed": int(rng.integers(2**31)),
    }


# ---------------------------------------------------------------------------------------------
# Drawing (in place, on uint8 [H, W, 3] frames; coordinates are floats in frame pixels)


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


def _scaled_sprite(sprite: np.ndarray, height: float, mirrored: bool) -> np.ndarray:
    from PIL import Image

    h = max(int(round(height)), 8)
    w = max(int(round(sprite.shape[1] * h / sprite.shape[0])), 4)
    scaled = np.asarray(Image.fromarray(sprite, "RGBA").resize((w, h), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(scaled[:, ::-1] if mirrored else scaled)


def render_video(plan: dict, spec: DatasetSpec, sprites: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(frames uint8 [N, H, W, 3], actor boxes float [N, 4])``: the video of a plan and the
    person's box (xyxy, frame pixels) in each frame, the generator's own ground truth."""
    ox, oy, side = spec.square
    actor = plan["actor"]
    unit = actor["height"]
    sprite = _scaled_sprite(sprites[actor["sprite"]], unit, actor["mirrored"])
    sprite_h, sprite_w = sprite.shape[:2]
    background = render_background(plan["scene_seed"], spec.height, spec.width, int(oy + 0.62 * side))
    num_frames = spec.num_frames
    frames = np.empty((num_frames, spec.height, spec.width, 3), np.uint8)
    boxes = np.empty((num_frames, 4), np.float64)
    segment_of = np.empty(num_frames, int)
    for index, segment in enumerate(plan["segments"]):
        segment_of[segment["start"]:segment["end"]] = index
    mover = plan["mover"]
    for n in range(num_frames):
        t = n / spec.fps
        frame = frames[n]
        frame[...] = background
        # The toy car crosses the upper part of the square and comes back round.
        span = side + 0.4 * unit
        x = (mover["start"] + mover["direction"] * mover["speed"] * t) % span - 0.2 * unit
        draw_car(frame, ox + x, oy + mover["y"], unit, tuple(int(v) for v in PALETTE[mover["colour"]]))
        for d in plan["distractors"]:
            kind = d["sub_actions"][0 if d["switch_frame"] is None or n < d["switch_frame"] else 1]
            draw_prop(frame, kind, ox + d["x"], oy + d["y"], unit * PROP_SCALE, t + d["phase"], d["colours"])
        # The actor walks slowly from x_start to x_end, bobbing a little.
        segment = plan["segments"][segment_of[n]]
        dx, dy, turned = body_motion(segment["sub_action"], t, unit)
        progress = n / max(num_frames - 1, 1)
        cx = ox + actor["x_start"] + (actor["x_end"] - actor["x_start"]) * progress + dx
        feet = oy + actor["feet"] - 0.012 * unit * abs(math.sin(math.pi * actor["bob_hz"] * t)) + dy
        left, top = int(round(cx - sprite_w / 2)), int(round(feet - sprite_h))
        paste_sprite(frame, sprite[:, ::-1] if turned else sprite, left, top)
        boxes[n] = (max(left, 0), max(top, 0), min(left + sprite_w, spec.width), min(top + sprite_h, spec.height))
        hand_x = cx + segment["hand"] * 0.27 * unit
        hand_y = feet - 0.58 * unit
        draw_prop(frame, segment["sub_action"], hand_x, hand_y, unit * PROP_SCALE, t, segment["colours"],
                  segment["hand"])
    return frames, boxes


# ---------------------------------------------------------------------------------------------
# The dataset on disk


def _spec_dict(spec: DatasetSpec) -> dict:
    return dataclasses.asdict(spec)


def read_manifest(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise RajaxError(f"{path}: unreadable demo manifest ({error})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise RajaxError(f"{path}: not a rajax demo dataset manifest")
    return manifest


# MPEG-4 part 2 at this bit rate: about 30 dB PSNR on these scenes (the default of the encoder, about
# 65 kb/s, smears the props: 24 dB), 0.7 MB per 10 s. Not H.264: libx264 gave different pixels for
# the same frames from one run to the next here, and the dataset must be the same for a seed.
BIT_RATE = 600_000


def generate_dataset(spec: DatasetSpec, folder: str | os.PathLike, progress: bool = True) -> dict:
    """Writes the videos of ``spec`` under ``folder`` and returns the manifest.

    ``folder/<split>/<activity>/<name>.mp4`` (MPEG-4), ``folder/manifest.json`` (every video's plan,
    the generator's actor boxes and actor square) and ``folder/dataset.csv`` (``path,label,split``
    rows that ``rajax train --config.data.csv`` reads). A folder already holding this very dataset
    (same spec) is reused, missing videos are made again; one made with another spec is an error.
    """
    from tqdm import tqdm

    from rajax.detection import geometry

    folder = Path(folder)
    existing = read_manifest(folder)
    if existing is not None and (existing.get("spec") != _spec_dict(spec)
                                 or existing.get("version") != MANIFEST_VERSION):
        raise RajaxError(f"{folder} holds a demo dataset made with other settings ({existing.get('spec')}); "
                         "use another --workdir or delete that one")
    folder.mkdir(parents=True, exist_ok=True)
    sprites = load_people()
    entries = []
    videos = spec.videos()
    with tqdm(total=len(videos), desc="generate videos", unit="video", disable=not progress) as bar:
        for number, (video_id, label, split) in enumerate(videos):
            rng = np.random.default_rng([spec.seed, number])
            plan = plan_video(rng, spec, label, len(sprites))
            path = folder / f"{video_id}.mp4"
            frames, boxes = render_video(plan, spec, sprites)
            if not path.is_file():
                video.write_video(path, frames, spec.fps, codec="mpeg4", pix_fmt="yuv420p", bit_rate=BIT_RATE)
            mean_box = geometry.mean_box(boxes)
            entries.append({
                "video_id": video_id, "path": str(path.resolve()), "split": split,
                "num_frames": spec.num_frames,
                "actor_box_xyxy": [round(v, 2) for v in mean_box],
                "actor_square": geometry.actor_square(mean_box, spec.height, spec.width),
                **plan,
            })
            bar.update(1)
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "spec": _spec_dict(spec),
        "activities": {name: list(parts) for name, parts in ACTIVITIES.items()},
        "sub_actions": list(SUB_ACTIONS), "people": [p.name for p in PEOPLE],
        "source_photographs": sorted({str(ultralytics_assets_dir() / p.image) for p in PEOPLE}),
        "videos": entries,
    }
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    rows = ["path,label,split"] + [f"{e['path']},{e['activity']},{e['split']}" for e in entries]
    atomic_write_text(folder / CSV_FILE, "\n".join(rows) + "\n")
    return manifest
