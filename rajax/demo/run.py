"""``rajax demo``: the paper's whole recipe on a generated dataset: generating it plus ``rajax run``.

1. ``generate``: the dataset of ``rajax.demo.generate`` (MPEG-4 videos; train, validation and test
   splits; ``videos/dataset.csv``).
2. ``detect``: the actor of every video found by YOLO (``rajax.detection.detect_actors``, in a
   process of its own), into ``actors.jsonl``, and how well it matches the generator's own person
   boxes. Only when no detector can be loaded does the demo write the generator's boxes there
   instead, and say so.
3. Everything else is ``rajax run demo`` (``rajax.recipe.run``) on those videos: stage 2 with the
   Kinetics-400 I3D, stage 1 Multi-Regional fine-tuning with Actor Focus, stage 2 with the
   fine-tuned I3D, Table 3's rows on both backbones' features, the Kinetics features
   cross-validated, the table, ``summary.json`` and the pictures.

The experiment is ``configs/demo.py`` (``configs/demo_quick.py`` for ``--quick``); the work
directory is ``rajax run``'s, with ``videos/`` (the generated dataset) beside it. A second run in the
same work directory resumes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

from rajax.demo import generate
from rajax.errors import RajaxError, WeightsError
from rajax.files import atomic_write_text
from rajax.recipe.run import ACTORS_FILE, Stopwatch, run_recipe, write_summary

NOTE = ("a generated dataset of short videos, not Breakfast: the numbers show the method's pieces working end "
        "to end and what Actor Focus, Multi-Regional fine-tuning and Region Attention do on this data, not the "
        "paper's results")


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """What the demo generates; the model, training and measurements are in its config."""

    config_name: str  # configs/<name>.py
    dataset: generate.DatasetSpec


def plan_for(quick: bool, seed: int = 0) -> DemoPlan:
    """The full demo (48 videos of 10 s: 24 to train, 8 to validate, 16 to test) or the quick one
    (16 videos of 4 s), sized so that 2 CPU cores run the full one in about 10 minutes: the I3D
    runs over 11 regions of every video twice (both backbones) and over one region of every
    training video per fine-tuning epoch."""
    if quick:
        spec = generate.DatasetSpec(train_per_class=2, validation_per_class=1, test_per_class=1, seconds=4.0,
                                    seed=seed)
        return DemoPlan("demo_quick", spec)
    spec = generate.DatasetSpec(train_per_class=6, validation_per_class=2, test_per_class=4, seconds=10.0,
                                seed=seed)
    return DemoPlan("demo", spec)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The actor


def _detector_libraries_missing() -> list[str]:
    return [name for name in ("torch", "torchvision", "ultralytics") if importlib.util.find_spec(name) is None]


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def find_actors(manifest: dict, actors_file: Path, detector_weights: str | None, every: int,
                progress: bool = True) -> dict:
    """Detects the actor of every video into ``actors_file`` (the file the stages read through
    ``config.data.actors_file``) and returns what was used, for the summary.

    Without a loadable detector, the file gets the generator's own boxes as detection records, and
    a banner says that this run does not test Actor Focus with a real detector.
    """
    from rajax.detection import detect_actors

    videos = manifest["videos"]
    missing = _detector_libraries_missing()
    reason = None
    records = None
    if missing:
        reason = f"{', '.join(missing)} not installed"
    else:
        try:
            records = detect_actors([v["path"] for v in videos], actors_file, detector_weights=detector_weights,
                                    every=every, progress=progress)
        except WeightsError as error:
            reason = str(error)
    if records is None:
        _say("\n" + "!" * 100 + f"\nNO PERSON DETECTOR could be loaded ({reason}).\nThe actor crops come from "
             "the generator's own boxes instead: this run does NOT test Actor Focus with a real detector.\n"
             "Pass --detector-weights PATH (an Ultralytics YOLO checkpoint, e.g. yolo11n.pt) to use one.\n"
             + "!" * 100 + "\n")
        _write_generator_records(videos, actors_file)
        return {"used": False, "fallback": True, "reason": reason, "weights": None,
                "source_of_actor_squares": "the generator's own person boxes"}
    ious, without_person, failed = [], [], []
    for video, record in zip(videos, records):
        if record.get("status") == "failed":
            failed.append(video["video_id"])
        elif record.get("fallback"):
            without_person.append(video["video_id"])
        else:
            ious.append(_iou(record["mean_box_xyxy"], video["actor_box_xyxy"]))
    detector = records[0].get("detector") if records and "detector" in records[0] else detector_weights
    return {
        "used": True, "fallback": False, "weights": detector, "every_nth_frame": every,
        "source_of_actor_squares": "YOLO person detections averaged over each video",
        "videos_without_person": without_person, "videos_failed": failed,
        "mean_iou_with_generator_boxes": round(float(np.mean(ious)), 4) if ious else None,
        "min_iou_with_generator_boxes": round(float(np.min(ious)), 4) if ious else None,
    }


def _write_generator_records(videos: list[dict], actors_file: Path) -> None:
    """The generator's boxes as detect-actors records (``rajax.actor_records``'s format)."""
    from rajax.actor_records import video_key

    lines = [json.dumps({"path": v["path"], "resolved_path": video_key(v["path"]), "actor_square": v["actor_square"],
                         "fallback": False, "detector": "generator boxes"}) for v in videos]
    atomic_write_text(actors_file, "".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------------------------------
# The whole demo


def demo_config(plan: DemoPlan, workdir: Path, seed: int):
    """The demo's config with the generated dataset's paths and the seed."""
    from rajax.train.config import apply_overrides, load_config, validate_config

    return validate_config(apply_overrides(load_config(plan.config_name), {
        "data.csv": str(workdir / "videos" / generate.CSV_FILE), "data.actors_file": str(workdir / ACTORS_FILE),
        "seed": str(seed)}))


def run_demo(workdir: str | os.PathLike = "demo_workdir", detector_weights: str | None = None,
             quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Generates the dataset, finds its actors and runs the recipe in ``workdir``; prints the
    results table and returns the summary."""
    workdir = Path(workdir).resolve()
    if detector_weights is not None:
        detector_weights = str(Path(detector_weights).expanduser().resolve())
        if not Path(detector_weights).is_file():
            raise WeightsError(f"{detector_weights}: detector weights not found (--detector-weights)")
    if workdir.exists() and not workdir.is_dir():
        raise RajaxError(f"{workdir}: exists and is not a directory (--workdir)")
    workdir.mkdir(parents=True, exist_ok=True)
    plan = plan_for(quick, seed)
    spec = plan.dataset
    watch = Stopwatch()
    config = demo_config(plan, workdir, seed)

    _say(f"[generate] {len(spec.videos())} videos ({spec.seconds:g} s, {spec.width}x{spec.height}, "
         f"{spec.fps} fps) in {workdir / 'videos'}")
    manifest = watch.time("generate", generate.generate_dataset, spec, workdir / "videos", progress)
    _say(f"[detect] the actor, with YOLO ({detector_weights or 'the default yolo11n.pt'}, "
         f"every {config.run.detect_every}th frame)")
    detector = watch.time("detect", find_actors, manifest, workdir / ACTORS_FILE, detector_weights,
                          config.run.detect_every, progress)

    summary = run_recipe(config, workdir, detector_weights=detector_weights, progress=progress, watch=watch)
    summary = {"rajax_demo": 3, "note": NOTE, "quick": quick, "config_name": plan.config_name, **summary}
    summary["detector"] = detector
    summary["dataset"].update(activities=manifest["activities"], seconds_per_video=spec.seconds, fps=spec.fps,
                              frame_size=[spec.width, spec.height])
    write_summary(workdir, summary)
    if detector["used"]:
        print(f"Actor: detected by YOLO ({Path(str(detector['weights'])).name}) in "
              f"{len(manifest['videos']) - len(detector['videos_without_person'])} of {len(manifest['videos'])} "
              f"videos (mean IoU with the generator's boxes {detector['mean_iou_with_generator_boxes']}).")
    else:
        print(f"Actor: NO DETECTOR ({detector['reason']}); actor crops from the generator's own boxes.")
    return summary
