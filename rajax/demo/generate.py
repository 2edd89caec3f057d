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

The person sprites come from ``rajax.demo.people``, the drawing from ``rajax.demo.drawing``; this
module plans every random choice of a video, renders the plan and writes the dataset.

Coordinates: frames are ``width`` x ``height`` (320 x 240 by default, as Breakfast); the scene is
laid out in the central square that the model sees (docs/method.md, Input 2) and the margins only
hold background.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rajax.data import video
from rajax.demo.drawing import PALETTE, body_motion, draw_car, draw_prop, paste_sprite, render_background, scaled_sprite
from rajax.demo.people import PEOPLE, load_people, ultralytics_assets_dir
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

# Size of the props (the actor's and the distractors') relative to the sizes in ``drawing.draw_prop``.
# Measured on 48 videos (4-fold cross-validation of a linear classifier on I3D features at 112x112,
# no body motion): at 1.0 the actor crop gave 51% and the full frame 40% (chance 25%); at 1.7,
# 69% and 42%; with the body motions as well, 78% and 51%. (The demo now reads 96x96 crops.)
PROP_SCALE = 1.7

MANIFEST_FORMAT = "rajax-demo-dataset"
MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
CSV_FILE = "dataset.csv"

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
# Rendering a plan


def render_video(plan: dict, spec: DatasetSpec, sprites: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(frames uint8 [N, H, W, 3], actor boxes float [N, 4])``: the video of a plan and the
    person's box (xyxy, frame pixels) in each frame, the generator's own ground truth."""
    ox, oy, side = spec.square
    actor = plan["actor"]
    unit = actor["height"]
    sprite = scaled_sprite(sprites[actor["sprite"]], unit, actor["mirrored"])
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
    from rajax.detection import geometry
    from rajax.progress import Progress

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
    with Progress(len(videos), "generate videos", "video", enabled=progress) as bar:
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
