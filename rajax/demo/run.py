"""``rajax demo``: the paper's whole recipe on a generated dataset, through the real stages.

1. ``generate``: the dataset of ``rajax.demo.generate`` (MPEG-4 videos; train, validation and test
   splits; ``videos/dataset.csv``).
2. ``detect``: the actor of every video found by YOLO (``rajax.detection.detect_actors``, in a
   process of its own), into ``actors.jsonl``. Only when no detector can be loaded does the demo
   write the generator's own boxes there instead, and say so.
3. ``kinetics``: stage 2 with the Kinetics-400 I3D as it is (``rajax extract``, not fine-tuned).
4. ``finetune``: stage 1, Multi-Regional fine-tuning with Actor Focus (``rajax train --stage
   finetune``): the last three Inception blocks and a new classifier, one random region of the 11
   per video per epoch, validated on the validation videos.
5. ``finetuned``: stage 2 again with the fine-tuned backbone; its own classifier on the stored
   full-frame features is the "I3D alone" row (``rajax evaluate --stage finetune``).
6. ``heads``: stage 3 (``rajax train``) for every head of the table on each backbone's features,
   tested on the held-out test videos. The Kinetics features are also cross-validated over all the
   videos: that backbone never saw them. The fine-tuned ones are not (a fold would need its own
   fine-tuning without its held-out videos, or their accuracy would count videos the backbone
   trained on).
7. ``report``: the table (Table 3 in miniature), ``summary.json`` and pictures.

Every stage is the function ``rajax train``, ``rajax extract`` and ``rajax evaluate`` call, with
the demo's config (``configs/demo.py``, ``configs/demo_quick.py``): only generating the dataset,
cross-validation over it, the summary and the pictures are the demo's own.

Work directory (``--workdir``, default ``demo_workdir``)::

    videos/                  the dataset (manifest.json, dataset.csv, <split>/<activity>/*.mp4)
    actors.jsonl             detect-actors records (or the generator's boxes, when no detector)
    kinetics/features/       stage 2 with the Kinetics-400 I3D
    kinetics/<head>/         stage 3 runs on those features; kinetics/cv/<head>/fold<k>/ likewise
    finetuned/finetune/      stage 1 (checkpoints, metrics.jsonl, backbone/)
    finetuned/features/      stage 2 with the fine-tuned backbone
    finetuned/<head>/        stage 3 runs on those features
    pictures/                regions.png, attention_<activity>.png, finetune_curve.png
    summary.json             everything measured

A second run in the same work directory resumes: stages find their videos, records, checkpoints
and features already there.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rajax.demo import generate
from rajax.errors import RajaxError, WeightsError
from rajax.files import atomic_write_text

SUMMARY_FILE = "summary.json"
PICTURES_DIR = "pictures"
ACTORS_FILE = "actors.jsonl"
BACKBONES = ("kinetics", "finetuned")


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """What the demo generates and how it measures; the model and training are in its config."""

    config_name: str  # configs/<name>.py
    dataset: generate.DatasetSpec
    detect_every: int  # YOLO on every n-th frame (the actor moves slowly)
    cv_folds: int  # cross-validation of the Kinetics features over all the videos (0: none)


def plan_for(quick: bool, seed: int = 0) -> DemoPlan:
    """The full demo (48 videos of 10 s: 24 to train, 8 to validate, 16 to test) or the quick one
    (16 videos of 4 s), sized so that 2 CPU cores run the full one in about 10 minutes: the I3D
    runs over 11 regions of every video twice (both backbones) and over one region of every
    training video per fine-tuning epoch."""
    if quick:
        spec = generate.DatasetSpec(train_per_class=2, validation_per_class=1, test_per_class=1, seconds=4.0,
                                    seed=seed)
        return DemoPlan("demo_quick", spec, detect_every=30, cv_folds=0)
    spec = generate.DatasetSpec(train_per_class=6, validation_per_class=2, test_per_class=4, seconds=10.0,
                                seed=seed)
    return DemoPlan("demo", spec, detect_every=50, cv_folds=3)


@dataclasses.dataclass(frozen=True)
class HeadRow:
    """One row of the table: a head on some of the regions."""

    key: str
    title: str
    head: str
    regions: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()


def head_rows() -> list[HeadRow]:
    from rajax.data.regions import REGION_NAMES, REGIONS_WITHOUT_ACTOR

    return [
        HeadRow("region_mean", "Region Mean (11 regions)", "region_mean", REGION_NAMES),
        HeadRow("region_attention", "Region Attention (11 regions)", "region_attention", REGION_NAMES),
        HeadRow("region_attention_no_actor", "Region Attention, no actor crop (10)", "region_attention",
                REGIONS_WITHOUT_ACTOR),
        HeadRow("full_frame", "full frame only", "single_region", ("full",), (("region_index", 0),)),
        HeadRow("actor_only", "actor crop only", "single_region", ("actor",), (("region_index", 0),)),
    ]


# The summary's row names: "i3d" is I3D alone, the paper's first column.
RESULT_HEADS = ("i3d", "region_mean", "region_attention", "region_attention_no_actor", "full_frame", "actor_only")


# ---------------------------------------------------------------------------------------------
# Timing


class Stopwatch:
    """Wall-clock and CPU seconds of each stage; CPU includes child processes (the detector)."""

    def __init__(self):
        self.stages: dict[str, dict[str, float]] = {}

    @staticmethod
    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def time(self, name: str, function: Callable, *args, **kwargs):
        wall, cpu = time.perf_counter(), self.cpu()
        try:
            return function(*args, **kwargs)
        finally:
            self.stages[name] = {"wall_s": round(time.perf_counter() - wall, 2),
                                 "cpu_s": round(self.cpu() - cpu, 2)}


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
# The stages


def demo_config(plan: DemoPlan, workdir: Path, seed: int, **overrides):
    """The demo's config with its paths, the seed and ``overrides`` (dotted keys, typed values)."""
    from rajax.train.config import apply_overrides, load_config, set_config_value, validate_config

    config = load_config(plan.config_name)
    base = {"data.csv": str(workdir / "videos" / generate.CSV_FILE), "data.actors_file": str(workdir / ACTORS_FILE),
            "seed": str(seed)}
    config = apply_overrides(config, base)
    with config.unlocked():
        for key, value in overrides.items():
            set_config_value(config, key, value)
    config.lock()
    return validate_config(config)


def extract(config, workdir: Path, progress: bool) -> dict:
    """Stage 2 into ``workdir/features`` (what ``rajax extract`` runs)."""
    from rajax.train import extraction

    summary = extraction.extract(config, workdir, progress=progress)
    if summary["skipped_videos"] or summary["empty_splits"]:
        raise RajaxError(f"{summary['skipped_videos']} generated video(s) could not be read; see above")
    return summary


def train_row(config, workdir: Path, row: HeadRow) -> dict:
    """Stage 3 of one table row in ``workdir`` (what ``rajax train`` runs); its test report."""
    from rajax.train import stages

    report = stages.train(config, workdir, "train_head", progress=False)
    report["title"], report["regions"] = row.title, list(row.regions)
    return report


def row_config(plan: DemoPlan, workdir: Path, seed: int, backbone: str, row: HeadRow, **overrides):
    return demo_config(plan, workdir, seed, **{
        "backbone.finetuned": backbone == "finetuned",
        "backbone.finetuned_dir": str(workdir / "finetuned" / "finetune"),
        "data.features_dir": str(workdir / backbone / "features"),
        "data.regions": row.regions,
        "head.name": row.head,
        **overrides,
    }, **({"head.options": _options(row)} if row.options else {}))


def _options(row: HeadRow):
    import ml_collections

    return ml_collections.ConfigDict(dict(row.options))


def stratified_folds(labels: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """The fold (0 .. num_folds - 1) of each example: every class dealt round the folds in a random
    order, so each fold holds about the same number of each class."""
    folds = np.zeros(len(labels), int)
    rng = np.random.default_rng(seed)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == label)[0])
        folds[members] = (np.arange(len(members)) + offset) % num_folds
        offset += len(members)
    return folds


def cross_validate(plan: DemoPlan, workdir: Path, seed: int, row: HeadRow, progress: bool) -> dict:
    """Stage 3 of ``row`` on the Kinetics features, ``plan.cv_folds``-fold cross-validated over every
    video: each fold a view of the store (rajax.data.features.split_view) with its own train and
    test videos and no validation split (the last epoch's head is tested)."""
    from rajax.data.features import read_index, split_view

    store = workdir / "kinetics" / "features"
    entries = sorted(read_index(store), key=lambda e: e["video_id"])
    folds = stratified_folds(np.array([e["label"] for e in entries]), plan.cv_folds, seed)
    accuracies = []
    for fold in range(plan.cv_folds):
        fold_dir = workdir / "kinetics" / "cv" / row.key / f"fold{fold}"
        view = split_view(store, {e["video_id"]: "test" if f == fold else "train" for e, f in zip(entries, folds)},
                          fold_dir / "features")
        config = row_config(plan, workdir, seed, "kinetics", row, **{
            "data.features_dir": str(view), "data.validation_split": "",
            "train_head.eval_every_epochs": 10_000})  # no validation: evaluated at the end only
        accuracies.append(train_row(config, fold_dir, row)["accuracy"])
        if progress:
            _say(f"  {row.key} fold {fold + 1}/{plan.cv_folds}: {100 * accuracies[-1]:.1f}%")
    return {"folds": plan.cv_folds, "videos": len(entries), "fold_accuracies": accuracies,
            "mean": float(np.mean(accuracies)),
            # The spread of the fold accuracies (ddof 1) over sqrt(folds): how far the mean could move.
            "standard_error": float(np.std(accuracies, ddof=1) / np.sqrt(len(accuracies)))}


# ---------------------------------------------------------------------------------------------
# The report


def results_table(results: dict[str, dict], test_videos: int, chance: float, titles: dict[str, str],
                  cv: dict | None) -> str:
    """Table 3 in miniature: the two backbones side by side, held-out test accuracy (and the
    Kinetics features' cross-validated accuracy)."""
    cv_header = f"   Kinetics {cv['folds']}-fold CV (all {cv['videos']})" if cv else ""
    width = max(len(title) for title in titles.values())
    header = f"{'':<{width}}   Kinetics-400 I3D   fine-tuned I3D{cv_header}"
    lines = [f"held-out test accuracy on {test_videos} videos (chance {100 * chance:.0f}%)", header,
             "-" * len(header)]
    for head in RESULT_HEADS:
        cells = []
        for backbone in BACKBONES:
            accuracy = results[f"{backbone}/{head}"]["test_accuracy"]
            cells.append(f"{100 * accuracy:.1f}%" if accuracy is not None else "-")
        line = f"{titles[head]:<{width}}   {cells[0]:>16}   {cells[1]:>14}"
        kinetics = results[f"kinetics/{head}"]
        if cv and kinetics["cv_accuracy_mean"] is not None:
            line += f"   {100 * kinetics['cv_accuracy_mean']:>10.1f}% +- {100 * kinetics['cv_accuracy_se']:.1f}"
        lines.append(line)
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def draw_pictures(manifest: dict, workdir: Path, plan: DemoPlan, seed: int, folder: Path) -> dict[str, Path]:
    """regions.png (one test video), attention_<activity>.png (the fine-tuned Region Attention on a
    test video of two activities, as ``rajax predict --visualize`` draws it) and finetune_curve.png."""
    from rajax import pictures
    from rajax.data import regions as regions_lib
    from rajax.data import video as video_lib
    from rajax.data.records import attach_actor_squares, records_from_csv
    from rajax.train import inference, metrics

    folder.mkdir(parents=True, exist_ok=True)
    config = demo_config(plan, workdir, seed)
    records, _ = records_from_csv(config.data.csv, list(config.classes), default_split="train")
    records, _ = attach_actor_squares(records, config.data.actors_file)
    tests = {}
    for record in records:
        if record.split == "test":
            tests.setdefault(record.label, record)
    paths = {}
    first = tests[min(tests)]
    frame = video_lib.read_frames(first.path, [video_lib.probe(first.path).num_frames // 2])[0]
    square = regions_lib.central_square_crop(frame)
    names = regions_lib.REGION_NAMES
    boxes = regions_lib.region_boxes(square.shape[0], names, first.actor_square)
    crops = regions_lib.crop_regions(square[None], names, first.actor_square, config.data.crop_size,
                                     output="uint8")[:, 0]
    paths["regions"] = folder / "regions.png"
    pictures.draw_regions(frame, names, boxes, crops, f"{first.video_id}: the 11 regions and the "
                          f"{config.data.crop_size}x{config.data.crop_size} crops I3D reads", paths["regions"])
    ra_dir = workdir / "finetuned" / "region_attention"
    for label, record in sorted(tests.items())[:2]:  # two activities: each picture is a prediction
        result = inference.predict_video(ra_dir, record.path, stage="train_head", actor_square=record.actor_square)
        activity = config.classes[label]
        paths[f"attention_{activity}"] = pictures.draw_attention(result, folder / f"attention_{activity}.png")
    paths["finetune_curve"] = pictures.draw_training_curve(
        metrics.read_metrics(workdir / "finetuned" / "finetune"), folder / "finetune_curve.png",
        "stage 1: Multi-Regional fine-tuning with Actor Focus (training: one random region per video per "
        "epoch; validation: the full frame)")
    return paths


# ---------------------------------------------------------------------------------------------
# The whole demo


def run_demo(workdir: str | os.PathLike = "demo_workdir", detector_weights: str | None = None,
             quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Runs every stage in ``workdir``; prints the results table and returns the summary."""
    import platform

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
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
    total_wall, total_cpu = time.perf_counter(), Stopwatch.cpu()
    rows = head_rows()

    _say(f"[1/7] Generating {len(spec.videos())} videos ({spec.seconds:g} s, {spec.width}x{spec.height}, "
         f"{spec.fps} fps) in {workdir / 'videos'}")
    manifest = watch.time("generate", generate.generate_dataset, spec, workdir / "videos", progress)

    _say(f"[2/7] Detecting the actor with YOLO ({detector_weights or 'the default yolo11n.pt'}, "
         f"every {plan.detect_every}th frame)")
    detector = watch.time("detect", find_actors, manifest, workdir / ACTORS_FILE, detector_weights,
                          plan.detect_every, progress)

    from rajax.train import stages

    config = demo_config(plan, workdir, seed)
    _say(f"[3/7] Stage 2 with the Kinetics-400 I3D: 11 regions x {config.data.num_timesteps} timesteps of "
         f"8 frames at {config.data.crop_size}x{config.data.crop_size}")
    watch.time("extract_kinetics", extract, demo_config(plan, workdir, seed, **{"backbone.finetuned": False}),
               workdir / "kinetics", progress)

    _say(f"[4/7] Stage 1: Multi-Regional fine-tuning with Actor Focus ({config.finetune.num_epochs} epochs)")
    finetune_report = watch.time("finetune", stages.train, config, workdir / "finetuned", "finetune", progress)

    _say("[5/7] Stage 2 with the fine-tuned I3D")
    watch.time("extract_finetuned", extract, config, workdir / "finetuned", progress)
    i3d_alone = watch.time("i3d_alone", stages.evaluate, config, workdir / "finetuned", "finetune",
                           config.data.test_split)

    _say(f"[6/7] Stage 3: {len(rows)} heads on each backbone's features"
         + (f", and the Kinetics ones {plan.cv_folds}-fold cross-validated" if plan.cv_folds > 1 else ""))

    def all_heads():
        reports, cross = {}, {}
        for backbone in BACKBONES:
            for row in rows:
                reports[f"{backbone}/{row.key}"] = train_row(row_config(plan, workdir, seed, backbone, row),
                                                             workdir / backbone / row.key, row)
                if progress:
                    _say(f"  {backbone} {row.key}: {100 * reports[f'{backbone}/{row.key}']['accuracy']:.1f}%")
        if plan.cv_folds > 1:
            for row in rows:
                cross[row.key] = cross_validate(plan, workdir, seed, row, progress)
        return reports, cross

    reports, cross = watch.time("heads", all_heads)

    results = {}
    for backbone in BACKBONES:
        for head in RESULT_HEADS:
            # Kinetics' "I3D alone" is a linear classifier on its full-frame features (the paper's
            # not-fine-tuned row): the full_frame row. The fine-tuned one is its own classifier.
            if head == "i3d":
                report = reports["kinetics/full_frame"] if backbone == "kinetics" else i3d_alone
            else:
                report = reports[f"{backbone}/{head}"]
            row_cv = cross.get("full_frame" if head == "i3d" else head) if backbone == "kinetics" else None
            results[f"{backbone}/{head}"] = {
                "test_accuracy": report["accuracy"],
                "cv_accuracy_mean": row_cv["mean"] if row_cv else None,
                "cv_accuracy_se": row_cv["standard_error"] if row_cv else None,
            }

    _say("[7/7] Pictures")
    picture_paths = watch.time("pictures", draw_pictures, manifest, workdir, plan, seed, workdir / PICTURES_DIR)

    titles = {"i3d": "I3D alone", **{row.key: row.title for row in rows}}
    test_videos = sum(v["split"] == "test" for v in manifest["videos"])
    chance = 1 / len(generate.ACTIVITY_NAMES)
    summary = {
        "rajax_demo": 2,
        "note": ("a generated dataset of short videos, not Breakfast: the numbers show the method's pieces "
                 "working end to end and what Actor Focus, Multi-Regional fine-tuning and Region Attention do "
                 "on this data, not the paper's results"),
        "started": started, "quick": quick, "seed": seed, "workdir": str(workdir),
        "config": plan.config_name,
        "dataset": {
            "videos": len(manifest["videos"]),
            **{f"{split}_videos": sum(v["split"] == split for v in manifest["videos"])
               for split in ("train", "validation", "test")},
            "activities": manifest["activities"],
            "seconds_per_video": spec.seconds, "fps": spec.fps, "frame_size": [spec.width, spec.height],
            "csv": str(workdir / "videos" / generate.CSV_FILE),
        },
        "detector": detector,
        "results": results,
        "titles": titles,
        "chance_accuracy": chance,
        "cross_validation": {key: value for key, value in cross.items()},
        "finetune": {"test_accuracy_on_videos": finetune_report.get("accuracy"),
                     "epochs": config.finetune.num_epochs,
                     "learning_rate": config.finetune.optimizer.learning_rate,
                     "regions": list(config.finetune.regions)},
        "reports": {key: {k: report[k] for k in ("accuracy", "num_examples", "confusion_matrix", "labels",
                                                  "predictions", "mean_region_attention", "regions", "title")
                          if k in report} for key, report in {**reports, "finetuned/i3d": i3d_alone}.items()},
        "pictures": {name: str(path) for name, path in picture_paths.items()},
        "timings": dict(watch.stages),
        "machine": {"cpu_count": os.cpu_count(), "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
    }
    summary["timings"]["total"] = {"wall_s": round(time.perf_counter() - total_wall, 2),
                                   "cpu_s": round(Stopwatch.cpu() - total_cpu, 2)}
    atomic_write_text(workdir / SUMMARY_FILE, json.dumps(summary, indent=2, default=_json_default) + "\n")

    first_cv = next(iter(cross.values()), None)
    print()
    print(results_table(results, test_videos, chance, titles, first_cv))
    print()
    if detector["used"]:
        print(f"Actor: detected by YOLO ({Path(str(detector['weights'])).name}) in "
              f"{len(manifest['videos']) - len(detector['videos_without_person'])} of {len(manifest['videos'])} "
              f"videos (mean IoU with the generator's boxes {detector['mean_iou_with_generator_boxes']}).")
    else:
        print(f"Actor: NO DETECTOR ({detector['reason']}); actor crops from the generator's own boxes.")
    stage_times = ", ".join(f"{name} {t['wall_s']:.0f} s" for name, t in summary["timings"].items())
    print(f"Time: {stage_times} (wall clock; CPU seconds in {SUMMARY_FILE}).")
    print(f"Written: {workdir / SUMMARY_FILE}, pictures in {workdir / PICTURES_DIR}/")
    return summary
