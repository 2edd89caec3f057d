"""``rajax run``: every stage of the paper's recipe the config asks for, in order, in one work directory.

1. ``videos``: which video is in which split, with its group (``rajax.train.inputs.file_records``:
   splits drawn whole groups at a time where the data gives none), recorded in ``videos.csv``.
2. ``detect``: the actor of every video (``rajax detect-actors``), unless the actor file already
   has them all or no region the recipe reads is the actor's.
3. ``extract_kinetics``: stage 2 with the Kinetics-400 I3D as it is (``rajax extract``).
4. ``finetune``: stage 1, Multi-Regional fine-tuning (``rajax train --stage finetune``).
5. ``extract_finetuned``: stage 2 with the fine-tuned I3D; ``i3d_alone``: its own classifier on the
   stored full-frame features of the test videos (``rajax evaluate --stage finetune``).
6. ``heads``: stage 3 (``rajax train``) for every row of ``config.run.rows`` on each backbone's
   features, tested on the held-out test videos.
7. ``cross_validation``: each row on the Kinetics features, k-fold over all the videos, whole groups
   per fold (the fine-tuned features are not: a fold would need its own fine-tuning without its
   held-out videos).
8. ``pictures`` and the report: the table on stdout, ``summary.json``.

Every stage is the function its own command calls, with the config and the paths below: running the
commands one by one with these settings gives the same results. A rerun resumes every stage.

Work directory::

    videos.csv                 path,label,split,group of every video (a record: the config draws the same)
    actors.jsonl               detect-actors records (unless config.data.actors_file names another file)
    kinetics/features/         stage 2 with the Kinetics-400 I3D
    kinetics/<row>/train_head  stage 3 of a row on those features; kinetics/cv/<row>/fold<k>/ likewise
    finetuned/finetune/        stage 1 (checkpoints, metrics.jsonl, backbone/)
    finetuned/features/        stage 2 with the fine-tuned backbone
    finetuned/<row>/train_head stage 3 on those features
    pictures/                  regions.png, attention_<class>.png, finetune_curve.png
    summary.json               everything measured
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rajax.errors import RajaxError
from rajax.recipe import report as report_lib
from rajax.recipe.rows import BACKBONES, I3D_ALONE, ROWS, Row, row_overrides, trained_row, uses_actor

SUMMARY_FILE = "summary.json"
PICTURES_DIR = "pictures"
ACTORS_FILE = "actors.jsonl"
VIDEOS_FILE = "videos.csv"
REPORT_KEYS = ("accuracy", "num_examples", "confusion_matrix", "labels", "predictions", "mean_region_attention")


class Stopwatch:
    """Wall-clock and CPU seconds of each stage; CPU includes child processes (the detector)."""

    def __init__(self):
        self.stages: dict[str, dict[str, float]] = {}
        self.started_wall, self.started_cpu = time.perf_counter(), self.cpu()

    @staticmethod
    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def time(self, name: str, function: Callable, *args, **kwargs):
        """``function(*args, **kwargs)``, its time added to stage ``name``'s."""
        wall, cpu = time.perf_counter(), self.cpu()
        try:
            return function(*args, **kwargs)
        finally:
            before = self.stages.get(name, {"wall_s": 0.0, "cpu_s": 0.0})
            self.stages[name] = {"wall_s": round(before["wall_s"] + time.perf_counter() - wall, 2),
                                 "cpu_s": round(before["cpu_s"] + self.cpu() - cpu, 2)}

    def total(self) -> dict[str, float]:
        return {"wall_s": round(time.perf_counter() - self.started_wall, 2),
                "cpu_s": round(self.cpu() - self.started_cpu, 2)}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stage_config(config, **overrides):
    """``config`` with ``overrides`` (dotted keys, typed values), validated: one stage's config."""
    from rajax.train.config import set_config_value, validate_config

    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, value in overrides.items():
            set_config_value(config, key, value)
    config.lock()
    return validate_config(config)


# ---------------------------------------------------------------------------------------------
# Videos and actors


def record_videos(config, workdir: Path) -> list | None:
    """Every video with its split and group (None for a TFDS dataset), written to ``videos.csv``.

    A rerun draws the same; if the videos or their splits changed since the work directory was
    made, the stages' results belong to the old ones: an error, never a silent mix.
    """
    if not (config.data.csv or config.data.folder):
        return None
    from rajax.data.records import write_records_csv
    from rajax.train import inputs

    records = inputs.file_records(config)
    names = [config.data.train_split, config.data.validation_split, config.data.test_split]
    unsplit = [r.video_id for r in records if r.split not in names or not r.split]
    if unsplit:
        raise RajaxError(f"{config.data.csv or config.data.folder}: {len(unsplit)} video(s) in no split of the "
                         f"config, e.g. {unsplit[0]!r}")
    path = workdir / VIDEOS_FILE
    scratch = workdir / (VIDEOS_FILE + ".new")
    write_records_csv(records, list(config.classes), scratch)
    if path.is_file() and path.read_bytes() != scratch.read_bytes():
        scratch.unlink()
        raise RajaxError(f"{path}: the videos, labels, splits or groups of this config differ from those this "
                         "work directory was made with; use another --workdir (or delete it to start over)")
    os.replace(scratch, path)
    return records


def actors_file(config, workdir: Path) -> Path:
    return Path(config.data.actors_file) if config.data.actors_file else workdir / ACTORS_FILE


def find_actors(config, records, workdir: Path, detector_weights: str | None, progress: bool) -> dict:
    """Actor squares of every video into the work directory's actor file (``rajax detect-actors``),
    unless the recipe reads no actor region, the videos come from TFDS (their own squares), or the
    file already has every video. A user's own ``config.data.actors_file`` is read, never written."""
    from rajax.actor_records import load_actor_records, video_key

    path = actors_file(config, workdir)
    if not uses_actor(config):
        return {"used": False, "reason": "no region of this recipe is the actor's"}
    if records is None:
        return {"used": False, "reason": "the TFDS dataset's own actor squares"}
    known = load_actor_records(path) if path.is_file() else {}
    missing = [r.path for r in records if video_key(r.path) not in known]
    if config.data.actors_file:
        if missing:
            say(f"rajax run: warning: {path} has no actor for {len(missing)} video(s); their actor region is the "
                "full frame")
        return {"used": True, "file": str(path), "given": True, "videos_without_record": len(missing)}
    if missing:
        from rajax.detection import detect_actors

        detect_actors([r.path for r in records], path, detector_weights=detector_weights,
                      every=config.run.detect_every, progress=progress)
        known = load_actor_records(path)
    records_found = [known[video_key(r.path)] for r in records if video_key(r.path) in known]
    detectors = sorted({str(record.get("detector")) for record in records_found})
    return {"used": True, "file": str(path), "given": False, "detectors": detectors,
            "every_nth_frame": config.run.detect_every,
            "videos_without_person": sum(bool(record.get("fallback")) for record in records_found),
            "videos_failed": len(records) - len(records_found)}


# ---------------------------------------------------------------------------------------------
# The stages


def extract(config, workdir: Path, skipped: list, progress: bool) -> dict:
    """Stage 2 into ``workdir/features`` (what ``rajax extract`` runs); unreadable videos are
    reported and counted in ``skipped``, an empty split is an error."""
    from rajax.train import extraction

    summary = extraction.extract(config, workdir, progress=progress)
    if summary["empty_splits"]:
        raise RajaxError(f"no usable videos in split(s) {', '.join(summary['empty_splits'])}: every video was "
                         "unreadable")
    skipped.append(summary["skipped_videos"])
    return summary


def train_row(config, workdir: Path) -> dict:
    """Stage 3 of one row in ``workdir`` (what ``rajax train`` runs); its test report."""
    from rajax.train import stages

    return stages.train(config, workdir, "train_head", progress=False)


def cross_validate(config, workdir: Path, row: Row, groups: dict[str, str], progress: bool) -> dict:
    """Stage 3 of ``row`` on the Kinetics features, ``config.run.cv_folds``-fold over every stored
    video, each group in one fold: each fold a view of the store (``split_view``) with its own
    train and test videos and no validation split (the last epoch's head is tested)."""
    from rajax.data.features import read_index, split_view
    from rajax.data.splits import grouped_folds

    store = workdir / "kinetics" / "features"
    entries = sorted(read_index(store), key=lambda e: e["video_id"])
    video_groups = [groups.get(e["video_id"], f"<video {e['video_id']}>") for e in entries]
    folds = grouped_folds([e["label"] for e in entries], video_groups, config.run.cv_folds, config.seed)
    accuracies = []
    for fold in range(config.run.cv_folds):
        fold_dir = workdir / "kinetics" / "cv" / row.key / f"fold{fold}"
        view = split_view(store, {e["video_id"]: "test" if f == fold else "train" for e, f in zip(entries, folds)},
                          fold_dir / "features")
        fold_config = stage_config(config, **row_overrides(row, "kinetics", str(view), ""), **{
            "data.validation_split": "", "data.test_split": "test", "data.train_split": "train",
            "train_head.eval_every_epochs": config.train_head.num_epochs})  # evaluated at the end only
        accuracies.append(train_row(fold_config, fold_dir)["accuracy"])
        if progress:
            say(f"  {row.key} fold {fold + 1}/{config.run.cv_folds}: {100 * accuracies[-1]:.1f}%")
    return {"folds": config.run.cv_folds, "videos": len(entries), "fold_accuracies": accuracies,
            "fold_of_video": {e["video_id"]: int(f) for e, f in zip(entries, folds)},
            **report_lib.fold_statistics(accuracies)}


def draw_pictures(config, records, workdir: Path, folder: Path) -> dict[str, Path]:
    """regions.png (a test video's regions and crops), attention_<class>.png (Region Attention's
    prediction on test videos of two classes, as ``rajax predict --visualize`` draws it) and
    finetune_curve.png (stage 1's losses and accuracies)."""
    from rajax import pictures
    from rajax.data import regions as regions_lib
    from rajax.data import video as video_lib
    from rajax.data.records import attach_actor_squares
    from rajax.train import inference, metrics

    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    tests: dict[int, object] = {}
    if records is not None:
        if config.data.actors_file and Path(config.data.actors_file).is_file():
            records, _ = attach_actor_squares(records, config.data.actors_file)
        for record in records:
            if record.split == config.data.test_split:
                tests.setdefault(record.label, record)
    if tests:
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
    backbone = next((b for b in reversed(BACKBONES) if (workdir / b / "region_attention" / "train_head").is_dir()),
                    None)
    if backbone is not None:
        for label, record in sorted(tests.items())[:2]:  # two classes: each picture is a prediction
            result = inference.predict_video(workdir / backbone / "region_attention", record.path,
                                             stage="train_head", actor_square=record.actor_square)
            name = config.classes[label]
            paths[f"attention_{name}"] = pictures.draw_attention(result, folder / f"attention_{name}.png")
    finetune_dir = workdir / "finetuned" / "finetune"
    if (finetune_dir / "metrics.jsonl").is_file():
        paths["finetune_curve"] = pictures.draw_training_curve(
            metrics.read_metrics(finetune_dir), folder / "finetune_curve.png",
            "stage 1: Multi-Regional fine-tuning (training: one random region per video per epoch)")
    return paths


# ---------------------------------------------------------------------------------------------
# The whole recipe


def row_result(key: str, report: dict, reports: dict, cross: dict, config) -> dict:
    """One row of one backbone in ``summary.json``: test accuracy, its interval, the Kinetics
    features' cross-validation, and for the fine-tuned backbone its paired gain over Kinetics'."""
    backbone, row_key = key.split("/")
    correct = np.asarray(report["predictions"]) == np.asarray(report["labels"])
    row_cv = cross.get(row_key) if backbone == "kinetics" else None
    result = {
        "test_accuracy": report["accuracy"],
        "test_accuracy_ci95": report_lib.bootstrap_interval(correct, config.run.bootstrap_samples, config.seed),
        "cv_accuracy_mean": row_cv["mean"] if row_cv else None,
        "cv_accuracy_se": row_cv["standard_error"] if row_cv else None,
    }
    baseline = reports.get(f"kinetics/{row_key}")
    # Both backbones' test reports list the test videos in the store's order: the same videos in
    # the same order when their labels agree position by position (no video skipped by one only).
    if backbone == "finetuned" and baseline is not None and list(baseline["labels"]) == list(report["labels"]):
        theirs = np.asarray(baseline["predictions"]) == np.asarray(baseline["labels"])
        result["gain_over_kinetics"] = report["accuracy"] - baseline["accuracy"]
        result["gain_over_kinetics_ci95"] = report_lib.paired_difference_interval(
            correct, theirs, config.run.bootstrap_samples, config.seed)
    return result


def backbone_configs(config, workdir: Path):
    """``(kinetics, finetuned)``: the configs of the stages on each backbone in ``workdir``."""
    kinetics_features = workdir / "kinetics" / "features"
    # The Kinetics stages name no fine-tuned backbone: their configs (and resuming them) never
    # depend on where stage 1 of this work directory is.
    kinetics = stage_config(config, **{"backbone.finetuned": False, "backbone.finetuned_dir": "",
                                       "data.features_dir": str(kinetics_features)})
    overrides = {"backbone.finetuned_dir": str(workdir / "finetuned" / "finetune"),
                 "data.features_dir": str(workdir / "finetuned" / "features")}
    if config.finetune.classifier_init == "probe" and not config.finetune.probe_features:
        overrides["finetune.probe_features"] = str(kinetics_features)
    return kinetics, stage_config(config, **overrides)


def train_rows(configs: dict, workdir: Path, rows: list[str], i3d_alone: dict | None, progress: bool) -> dict:
    """Stage 3 of every row on each backbone of ``configs`` (``{backbone: its config}``): their test
    reports by ``"<backbone>/<row>"``. A row trained once serves every key that names it."""
    reports: dict[str, dict] = {}
    for backbone, backbone_config in configs.items():
        for key in rows:
            if backbone == "finetuned" and key == I3D_ALONE:
                reports[f"{backbone}/{key}"] = i3d_alone
                continue
            row = trained_row(key)
            if f"{backbone}/{row.key}" not in reports:
                overrides = row_overrides(row, backbone, backbone_config.data.features_dir,
                                          backbone_config.backbone.finetuned_dir)
                reports[f"{backbone}/{row.key}"] = train_row(stage_config(backbone_config, **overrides),
                                                             workdir / backbone / row.key)
                if progress:
                    say(f"  {backbone} {row.key}: {100 * reports[f'{backbone}/{row.key}']['accuracy']:.1f}%")
            reports[f"{backbone}/{key}"] = reports[f"{backbone}/{row.key}"]
    return reports


def cross_validate_rows(config, workdir: Path, rows: list[str], records, progress: bool) -> dict:
    """Each row's grouped cross-validation on the Kinetics features, by row key."""
    groups = {r.video_id: r.group for r in records or () if r.group is not None}
    cross: dict[str, dict] = {}
    for key in rows:
        row = trained_row(key)
        if row.key not in cross:
            cross[row.key] = cross_validate(config, workdir, row, groups, progress)
        cross[key] = cross[row.key]
    return cross


def run_recipe(config, workdir: str | os.PathLike, detector_weights: str | None = None,
               progress: bool = True, watch: Stopwatch | None = None) -> dict:
    """Runs (or resumes) every stage of ``config`` in ``workdir``; prints the table, writes
    ``summary.json`` and returns the summary (``summary["skipped_videos"]``: unreadable videos).
    ``watch`` (a caller's stopwatch, already timing its own stages) gets the recipe's stages too."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    workdir = Path(workdir).resolve()
    if workdir.exists() and not workdir.is_dir():
        raise RajaxError(f"{workdir}: exists and is not a directory (--workdir)")
    if detector_weights is not None:
        detector_weights = str(Path(detector_weights).expanduser().resolve())
        if not Path(detector_weights).is_file():
            from rajax.errors import WeightsError

            raise WeightsError(f"{detector_weights}: detector weights not found (--detector-weights)")
    workdir.mkdir(parents=True, exist_ok=True)
    watch = watch or Stopwatch()
    backbones = [b for b in BACKBONES if b in config.run.backbones]
    rows = list(dict.fromkeys(config.run.rows))
    skipped: list[int] = []

    say(f"[videos] {config.data.csv or config.data.folder or config.data.dataset} -> {workdir / VIDEOS_FILE}")
    records = watch.time("videos", record_videos, config, workdir)
    say("[detect] the actor of every video (YOLO)")
    detector = watch.time("detect", find_actors, config, records, workdir, detector_weights, progress)
    config = stage_config(config, **{"data.actors_file": str(actors_file(config, workdir))})
    kinetics_config, finetuned_config = backbone_configs(config, workdir)

    if "kinetics" in backbones or config.finetune.classifier_init == "probe":
        say(f"[extract_kinetics] stage 2 with the Kinetics-400 I3D: {len(config.data.regions)} regions x "
            f"{config.data.num_timesteps} timesteps of {config.data.frames_per_timestep} frames at "
            f"{config.data.crop_size}x{config.data.crop_size}")
        watch.time("extract_kinetics", extract, kinetics_config, workdir / "kinetics", skipped, progress)
    finetune_report = i3d_alone = None
    if "finetuned" in backbones:
        from rajax.train import stages

        say(f"[finetune] stage 1: Multi-Regional fine-tuning ({config.finetune.num_epochs} epochs)")
        finetune_report = watch.time("finetune", stages.train, finetuned_config, workdir / "finetuned", "finetune",
                                     progress)
        say("[extract_finetuned] stage 2 with the fine-tuned I3D")
        watch.time("extract_finetuned", extract, finetuned_config, workdir / "finetuned", skipped, progress)
        if I3D_ALONE in rows:
            i3d_alone = watch.time("i3d_alone", stages.evaluate, finetuned_config, workdir / "finetuned", "finetune",
                                   config.data.test_split)

    say(f"[heads] stage 3: {len(rows)} rows on the features of {' and '.join(backbones)}")
    configs = {name: kinetics_config if name == "kinetics" else finetuned_config for name in backbones}
    reports = watch.time("heads", train_rows, configs, workdir, rows, i3d_alone, progress)
    cross: dict[str, dict] = {}
    if config.run.cv_folds:
        say(f"[cross_validation] the Kinetics features, {config.run.cv_folds} folds of whole groups over all videos")
        cross = watch.time("cross_validation", cross_validate_rows, kinetics_config, workdir, rows, records, progress)
    pictures = {}
    if config.run.pictures:
        say("[pictures]")
        pictures = watch.time("pictures", draw_pictures, config, records, workdir, workdir / PICTURES_DIR)

    summary = {
        "rajax_run": 1, "started": started, "workdir": str(workdir), "seed": config.seed,
        "config": config.to_dict(),
        "dataset": dataset_counts(config, records, workdir),
        "detector": detector,
        "results": {key: row_result(key, report, reports, cross, config) for key, report in reports.items()},
        "titles": {key: ROWS[key].title for key in rows},
        "chance_accuracy": 1 / len(config.classes),
        "cross_validation": {key: {k: v for k, v in value.items() if k != "fold_of_video"}
                             for key, value in cross.items()},
        "cv_folds_of_videos": next(iter(cross.values()))["fold_of_video"] if cross else {},
        "finetune": ({"test_accuracy": finetune_report.get("accuracy") if finetune_report else None,
                      **config.finetune.to_dict()} if "finetuned" in backbones else None),
        "reports": {key: {k: report[k] for k in REPORT_KEYS if k in report} for key, report in reports.items()},
        "skipped_videos": int(sum(skipped)),
        "pictures": {name: str(path) for name, path in pictures.items()},
        "timings": {**watch.stages, "total": watch.total()},
        "machine": {"cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
    }
    write_summary(workdir, summary)
    print_report(summary, rows, config.run.cv_folds, workdir)
    return summary


def dataset_counts(config, records, workdir: Path) -> dict:
    """How many videos, of each split and group, and the classes (a TFDS dataset's: None)."""
    names = {"train": config.data.train_split, "validation": config.data.validation_split,
             "test": config.data.test_split}
    return {"videos": len(records) if records is not None else None,
            **{f"{split}_videos": sum(r.split == name for r in records or ()) for split, name in names.items()},
            "groups": len({r.group for r in records or () if r.group is not None}),
            "classes": list(config.classes),
            "videos_csv": str(workdir / VIDEOS_FILE) if records is not None else None}


def print_report(summary: dict, rows: list[str], cv_folds: int, workdir: Path) -> None:
    """The table, the time per stage and where everything was written, on stdout."""
    results = summary["results"]
    test_videos = len(next(iter(summary["reports"].values()))["labels"]) if summary["reports"] else 0
    cv_videos = next(iter(summary["cross_validation"].values()))["videos"] if summary["cross_validation"] else 0
    print()
    print(report_lib.results_table(results, rows, summary["titles"], test_videos, summary["chance_accuracy"],
                                   cv_folds, cv_videos))
    print()
    stage_times = ", ".join(f"{name} {t['wall_s']:.0f} s" for name, t in summary["timings"].items())
    print(f"Time: {stage_times} (wall clock; CPU seconds in {SUMMARY_FILE}).")
    if summary["skipped_videos"]:
        print(f"{summary['skipped_videos']} unreadable video(s) were skipped (listed above).")
    print(f"Written: {workdir / SUMMARY_FILE}"
          + (f", pictures in {workdir / PICTURES_DIR}/" if summary["pictures"] else ""))


def write_summary(workdir: Path, summary: dict) -> Path:
    import json

    from rajax.files import atomic_write_text

    path = workdir / SUMMARY_FILE
    atomic_write_text(path, json.dumps(summary, indent=2, default=report_lib.json_default) + "\n")
    return path
