"""``rajax demo``: generate, detect, extract, train, test, report. Every stage is the real one.

1. ``generate``: the dataset of ``rajax.demo.generate`` (MPEG-4 videos written with PyAV).
2. ``detect``: the actor of every video found by YOLO (``rajax.detection.detect_actors``, in a
   process of its own). Only when no detector can be loaded (no weights, none to download) do the
   actor squares come from the generator's own boxes instead, and the output says so.
3. ``extract``: the 11 regions of every video (full frame, 3x3 grid, actor crop) through the
   Kinetics-400 I3D as it is (not fine-tuned), one-shot, into a feature store
   (``rajax.data.features``). CPU-sized: ``T`` timesteps of 8 frames at ``region_size`` pixels
   instead of the paper's 64 at 224.
4. ``train``: heads of ``rajax.models.heads`` trained with the paper's optimizer (Adam 1e-3,
   epsilon 1e-8, weight decay 1e-5, cross-entropy, 100 epochs) by the pure steps of
   ``rajax.train.steps``, then tested on the held-out videos; and, since a few held-out videos make
   a noisy estimate, cross-validated over all the videos as well (the features are computed once,
   heads train in seconds). The demo runs its own small loop rather than ``rajax train``: the
   trainer's per-epoch checkpoints and validation would take longer than the training itself
   here, and a dataset this small has no validation split (the last epoch's head is tested).
5. ``report``: the results table, ``summary.json`` and pictures (regions on a frame, the attention
   of Region Attention on frames, as the paper's Figure 5, and confusion matrices).

Work directory (``--workdir``, default ``demo_workdir``)::

    videos/                  the dataset (manifest.json, dataset.csv, <split>/<activity>/*.mp4)
    actors_<detector>.jsonl  detect-actors records
    features_<hash>/         the feature store (the hash covers the settings and actor squares)
    pictures/                regions.png, attention.png, confusion_<head>.png
    summary.json             everything measured

A second run in the same work directory reuses what is already there (videos, detections,
features), so an interrupted demo resumes; the timings then show it.

Import order: TensorFlow and JAX are imported only after detection, which runs in its own process
(torchvision must never be imported after TensorFlow in one interpreter).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
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
from rajax.files import atomic_savefig, atomic_write_text

SUMMARY_FILE = "summary.json"
PICTURES_DIR = "pictures"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The size of the demo: the dataset, the features and the head training."""

    dataset: generate.DatasetSpec
    num_timesteps: int  # T: timesteps of 8 frames per video (the paper: 64)
    timestep_length: int = 8
    region_size: int = 112  # every region resized to this square (the paper: 224)
    detect_every: int = 25  # YOLO on every n-th frame (the actor moves slowly)
    epochs: int = 100  # paper
    batch_size: int = 16
    learning_rate: float = 1e-3  # paper
    weight_decay: float = 1e-5  # paper
    cv_folds: int = 4  # also cross-validated over all the videos (0: only the held-out test split)


def settings_for(quick: bool, seed: int = 0) -> DemoSettings:
    """The full demo (48 videos of 10 s, T = 3) or the quick one (12 videos of 6 s, T = 2).

    Sized by measurement on this project's 2-core machine: the I3D costs about 32 ms of CPU time per
    frame and region at 112x112 (about 4 times more at 224), so the full demo's 48 videos x 11
    regions x 24 frames take about 400 CPU seconds, most of the demo. Three timesteps suffice here:
    every sub-action lasts at least a quarter of its video, so the windows centred at 1/6, 1/2 and
    5/6 of the video see every one of them.
    """
    if quick:
        spec = generate.DatasetSpec(train_per_class=2, test_per_class=1, seconds=6.0, seed=seed)
        return DemoSettings(spec, num_timesteps=2, detect_every=30, epochs=60, batch_size=8, cv_folds=3)
    spec = generate.DatasetSpec(train_per_class=8, test_per_class=4, seconds=10.0, seed=seed)
    return DemoSettings(spec, num_timesteps=3, detect_every=25)


@dataclasses.dataclass(frozen=True)
class HeadRun:
    """One row of the results table: a head on a subset of the regions."""

    key: str
    title: str
    head: str  # a name in rajax.models.heads.HEADS
    regions: tuple[str, ...]


def head_runs() -> list[HeadRun]:
    from rajax.data.regions import REGION_NAMES, REGIONS_WITHOUT_ACTOR

    return [
        HeadRun("region_attention", "Region Attention (11 regions)", "region_attention", REGION_NAMES),
        HeadRun("region_mean", "Region Mean (11 regions)", "region_mean", REGION_NAMES),
        HeadRun("region_attention_no_actor", "Region Attention, no actor crop (10)", "region_attention",
                REGIONS_WITHOUT_ACTOR),
        HeadRun("full_frame", "Full frame only", "single_region", ("full",)),
        HeadRun("actor_crop", "Actor crop only", "single_region", ("actor",)),
    ]


# ---------------------------------------------------------------------------------------------
# Timing


class Stopwatch:
    """Wall-clock and CPU seconds of each stage; CPU includes child processes (the detector)."""

    def __init__(self):
        self.stages: dict[str, dict[str, float]] = {}

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def time(self, name: str, function: Callable, *args, **kwargs):
        wall, cpu = time.perf_counter(), self._cpu()
        try:
            return function(*args, **kwargs)
        finally:
            self.stages[name] = {"wall_s": round(time.perf_counter() - wall, 2),
                                 "cpu_s": round(self._cpu() - cpu, 2)}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Stage 2: the actor


def _detector_libraries_missing() -> list[str]:
    return [name for name in ("torch", "torchvision", "ultralytics") if importlib.util.find_spec(name) is None]


def _actor_file_name(detector_weights: str | None, every: int) -> str:
    name = Path(detector_weights).stem if detector_weights else "yolo11n"
    return f"actors_{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)}_every{every}.jsonl"


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def find_actors(manifest: dict, workdir: Path, detector_weights: str | None, every: int,
                progress: bool = True) -> tuple[dict[str, list[int] | None], dict]:
    """Actor squares by video id, and what was used (for the summary).

    A square is ``None`` when the detector found no person in a video (its actor region is then
    the full frame, as in ``rajax extract``).
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
            records = detect_actors([v["path"] for v in videos], workdir / _actor_file_name(detector_weights, every),
                                    detector_weights=detector_weights, every=every, progress=progress)
        except WeightsError as error:
            reason = str(error)
    if records is None:
        _say("\n" + "!" * 100 + f"\nNO PERSON DETECTOR could be loaded ({reason}).\nThe actor crops come from "
             "the generator's own boxes instead: this run does NOT test Actor Focus with a real detector.\n"
             "Pass --detector-weights PATH (an Ultralytics YOLO checkpoint, e.g. yolo11n.pt) to use one.\n"
             + "!" * 100 + "\n")
        squares = {v["video_id"]: v["actor_square"] for v in videos}
        return squares, {"used": False, "fallback": True, "reason": reason, "weights": None,
                         "source_of_actor_squares": "the generator's own person boxes"}
    squares, ious, without_person, failed = {}, [], [], []
    for video, record in zip(videos, records):
        if record.get("status") == "failed":
            failed.append(video["video_id"])
            squares[video["video_id"]] = None
            continue
        if record.get("fallback"):
            without_person.append(video["video_id"])
            squares[video["video_id"]] = None
            continue
        squares[video["video_id"]] = [int(v) for v in record["actor_square"]]
        ious.append(_iou(record["mean_box_xyxy"], video["actor_box_xyxy"]))
    detector = records[0].get("detector") if records and "detector" in records[0] else detector_weights
    return squares, {
        "used": True, "fallback": False, "weights": detector, "every_nth_frame": every,
        "source_of_actor_squares": "YOLO person detections averaged over each video",
        "videos_without_person": without_person, "videos_failed": failed,
        "mean_iou_with_generator_boxes": round(float(np.mean(ious)), 4) if ious else None,
        "min_iou_with_generator_boxes": round(float(np.min(ious)), 4) if ious else None,
    }


# ---------------------------------------------------------------------------------------------
# Stage 3: features


def _store_name(settings: DemoSettings, squares: dict) -> str:
    """A feature store per dataset, sampling, region size and actor squares: features made from
    other inputs are never mixed in (a run without a detector, say, then one with)."""
    key = json.dumps({"dataset": dataclasses.asdict(settings.dataset), "num_timesteps": settings.num_timesteps,
                      "timestep_length": settings.timestep_length, "region_size": settings.region_size,
                      "squares": squares, "backbone": "kinetics400"}, sort_keys=True)
    return "features_" + hashlib.sha1(key.encode()).hexdigest()[:10]


def extract_features(manifest: dict, squares: dict, settings: DemoSettings, store: Path,
                     progress: bool = True) -> dict:
    """Every region of every video through the Kinetics-400 I3D into the feature store at ``store``.

    Returns what the summary says about the backbone.
    """
    import jax
    from tqdm import tqdm

    import rajax
    from rajax import weights as weight_io
    from rajax.data.features import FeatureWriter
    from rajax.data.pipeline import load_video_frames
    from rajax.data.regions import REGION_NAMES
    from rajax.train import backbone

    checkpoint = weight_io.ensure_default_checkpoint()
    model, variables = rajax.load_i3d(checkpoint)
    features_of = jax.jit(lambda v, frames, boxes: backbone.video_features(
        model, v, frames, boxes, settings.region_size, "one_shot", settings.timestep_length))
    frames = settings.num_timesteps * settings.timestep_length
    shape = jax.eval_shape(lambda v, clips: model.apply(v, clips, train=False, output="features"), variables,
                           jax.ShapeDtypeStruct((len(REGION_NAMES), frames, settings.region_size,
                                                 settings.region_size, 3), np.float32)).shape
    writer = FeatureWriter(store, REGION_NAMES, num_positions=shape[1], channels=shape[2], dtype="float32",
                           class_names=generate.ACTIVITY_NAMES,
                           settings={"backbone": "Kinetics-400 I3D (not fine-tuned)", "extraction": "one_shot",
                                  "num_timesteps": settings.num_timesteps, "region_size": settings.region_size})
    videos = manifest["videos"]
    with tqdm(total=len(videos), desc="I3D features", unit="video", disable=not progress) as bar:
        for video in videos:
            if video["video_id"] not in writer:
                frames, boxes = load_video_frames(video["path"], regions=REGION_NAMES,
                                                  actor_square=squares[video["video_id"]],
                                                  num_timesteps=settings.num_timesteps,
                                                  timestep_length=settings.timestep_length)
                features = np.asarray(features_of(variables, frames, boxes))
                writer.write(video["video_id"], video["label"], video["split"], features)
            bar.update(1)
    metadata = weight_io.read_metadata(checkpoint)
    return {"weights": str(checkpoint), "weights_source": metadata.get("source"),
            "pretrained_on": "Kinetics-400", "fine_tuned": False, "extraction": "one_shot",
            "clip": f"{len(REGION_NAMES)} regions x {frames} frames ({settings.num_timesteps} timesteps of "
                    f"{settings.timestep_length}) at {settings.region_size}x{settings.region_size}",
            "feature_shape_per_video": [len(REGION_NAMES), int(shape[1]), int(shape[2])],
            "feature_store": str(store)}


def load_split(store: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(features [N, R, T', C], labels [N], video ids)`` of one split of the store."""
    from rajax.data.features import load_features, read_index

    entries = sorted(read_index(store, split), key=lambda e: e["video_id"])
    if not entries:
        raise RajaxError(f"{store}: no features for split {split!r}")
    features = np.stack([load_features(store, e) for e in entries]).astype(np.float32)
    return features, np.array([e["label"] for e in entries], np.int32), [e["video_id"] for e in entries]


# ---------------------------------------------------------------------------------------------
# Stage 4: heads


def _optimizer_settings(settings: DemoSettings):
    import ml_collections

    return ml_collections.ConfigDict(dict(
        name="adam", learning_rate=settings.learning_rate, b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=settings.weight_decay, momentum=0.9, schedule="constant", warmup_steps=0))


def _padded_batch(features, labels, indices, size):
    """The examples at ``indices`` padded to ``size`` rows (mask 0 on the padding), with the
    leading axis of size one that the vmapped steps take."""
    count = len(indices)
    batch_features = np.zeros((1, size) + features.shape[1:], np.float32)
    batch_labels = np.zeros((1, size), np.int32)
    mask = np.zeros((1, size), np.float32)
    batch_features[0, :count], batch_labels[0, :count], mask[0, :count] = features[indices], labels[indices], 1.0
    return {"features": batch_features, "label": batch_labels, "mask": mask}


@functools.lru_cache(maxsize=None)
def head_functions(run: HeadRun, settings: DemoSettings, feature_shape: tuple[int, ...], batch: int):
    """``(init, train_step, eval_step)`` of one head, compiled once and reused for every split.

    ``init(seed)`` gives a fresh training state. The steps are ``rajax.train.steps``' own; they use
    collectives over the device axis (they are written for pmap), and a vmap over a leading axis of
    size one gives them that axis on one CPU device.
    """
    import jax
    import jax.numpy as jnp

    from rajax.models.heads import build_head
    from rajax.train import steps
    from rajax.train.stages import head_forward

    options = {"region_index": 0} if run.head == "single_region" else {}
    head = build_head(run.head, len(generate.ACTIVITY_NAMES), **options)
    optimizer = _optimizer_settings(settings)
    schedule = steps.learning_rate_schedule(optimizer, 1)  # constant: the length does not matter
    tx = steps.build_optimizer(optimizer, schedule)
    forward = head_forward(head)

    def fresh_params(seed):
        return head.init(jax.random.key(seed), jnp.zeros((1,) + feature_shape, jnp.float32))["params"]

    labels = jax.tree.map(lambda _: steps.TRAINABLE, jax.eval_shape(fresh_params, 0))

    def init(seed: int):
        state = steps.create_train_state(fresh_params(seed), {}, tx, seed)
        return jax.tree.map(lambda x: x[None], state)

    train_step = jax.jit(jax.vmap(functools.partial(
        steps.train_step, forward=forward, tx=tx, param_labels=labels, batch_stats_labels={},
        schedule=schedule), axis_name=steps.AXIS))
    eval_step = jax.jit(jax.vmap(functools.partial(steps.eval_step, forward=forward), axis_name=steps.AXIS))
    return init, train_step, eval_step


def fit_head(run: HeadRun, x: np.ndarray, y: np.ndarray, settings: DemoSettings, seed: int, bar=None):
    """Trains a fresh head on ``x`` [N, R, T', C], ``y`` [N]; returns ``(state, last epoch's loss)``."""
    batch = min(settings.batch_size, len(x))
    init, train_step, _ = head_functions(run, settings, x.shape[1:], batch)
    state = init(seed)
    loss = float("nan")
    for epoch in range(settings.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for start in range(0, len(order), batch):
            state, metrics = train_step(state, _padded_batch(x, y, order[start:start + batch], batch))
        loss = float(metrics["loss"][0])
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.3f}")
            bar.update(1)
    if not np.isfinite(loss):
        raise RajaxError(f"training the {run.title} head diverged (loss {loss})")
    return state, loss


def predict_head(run: HeadRun, state, x: np.ndarray, y: np.ndarray, settings: DemoSettings, batch: int) -> dict:
    """Per-video outputs of ``steps.eval_step`` (logits, loss, attention) for ``x``, in order."""
    import jax

    _, _, eval_step = head_functions(run, settings, x.shape[1:], batch)
    outputs = []
    for start in range(0, len(x), batch):
        indices = np.arange(start, min(start + batch, len(x)))
        out = jax.device_get(eval_step(state, _padded_batch(x, y, indices, batch)))
        outputs.append({k: v[0] for k, v in out.items()})
    merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    keep = merged["mask"] > 0
    return {k: v[keep] for k, v in merged.items()}


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


def train_and_test_head(run: HeadRun, region_index: list[int], train, test, settings: DemoSettings,
                        seed: int, progress: bool = True) -> dict:
    """Trains one head on the training videos and tests it on the held-out ones; then
    cross-validates it over all the videos (``settings.cv_folds`` folds). ``train`` and ``test``
    are ``(features [N, 11, T', C], labels [N], ids)``. Returns the test report of
    ``rajax.train.evaluation.summarize`` with the per-video predictions, RA's per-video weights
    and the cross-validation accuracy added."""
    from tqdm import tqdm

    from rajax.train import evaluation

    train_x, train_y = train[0][:, region_index], train[1]
    test_x, test_y = test[0][:, region_index], test[1]
    all_x, all_y = np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])
    folds = stratified_folds(all_y, settings.cv_folds, seed) if settings.cv_folds > 1 else None
    total = settings.epochs * (1 + (settings.cv_folds if folds is not None else 0))
    with tqdm(total=total, desc=f"train {run.key}", unit="epoch", disable=not progress, leave=False) as bar:
        state, loss = fit_head(run, train_x, train_y, settings, seed, bar)
        batch = min(settings.batch_size, len(train_x))
        test_outputs = predict_head(run, state, test_x, test_y, settings, batch)
        train_outputs = predict_head(run, state, train_x, train_y, settings, batch)
        cv_correct, fold_accuracies = np.zeros(len(all_y), bool), []
        if folds is not None:
            for fold in range(settings.cv_folds):
                held_out = folds == fold
                fold_state, _ = fit_head(run, all_x[~held_out], all_y[~held_out], settings,
                                         seed + 1000 * (fold + 1), bar)
                fold_batch = min(settings.batch_size, int(np.sum(~held_out)))
                outputs = predict_head(run, fold_state, all_x[held_out], all_y[held_out], settings, fold_batch)
                cv_correct[held_out] = np.argmax(outputs["logits"], -1) == all_y[held_out]
                fold_accuracies.append(float(np.mean(cv_correct[held_out])))
    report = evaluation.summarize(test_outputs, generate.ACTIVITY_NAMES, run.regions)
    report["train_accuracy"] = float(np.mean(np.argmax(train_outputs["logits"], -1) == train_y))
    report["final_train_loss"] = loss
    report["head"], report["regions"], report["title"] = run.head, list(run.regions), run.title
    report["predictions"] = np.argmax(test_outputs["logits"], -1).tolist()
    if "attention/region_weight" in test_outputs:
        report["region_weight_per_video"] = np.round(test_outputs["attention/region_weight"], 5).tolist()
    if folds is not None:
        report["cross_validation"] = {
            "folds": settings.cv_folds, "videos": int(len(all_y)),
            "accuracy": float(np.mean(cv_correct)),
            # The spread of the fold accuracies over sqrt(folds): how far the mean could move.
            "standard_error": float(np.std(fold_accuracies) / np.sqrt(len(fold_accuracies))),
            "fold_accuracies": fold_accuracies,
        }
    return report


# ---------------------------------------------------------------------------------------------
# Stage 5: report


def results_table(reports: dict[str, dict], chance: float) -> str:
    """The table printed at the end: held-out test accuracy, cross-validated accuracy, train accuracy."""
    first = next(iter(reports.values()))
    cv = first.get("cross_validation")
    width = max(len(r["title"]) for r in reports.values())
    cv_header = f"  {cv['folds']}-fold CV on all {cv['videos']}" if cv else ""
    title = "Kinetics-400 I3D features (not fine-tuned) +"
    test_header = f"test ({first['num_examples']} videos)"
    header = f"{title:<{width}}  {test_header}{cv_header}  train"
    lines = [header, "-" * len(header)]
    for report in reports.values():
        line = f"{report['title']:<{width}}  {100 * report['accuracy']:{len(test_header) - 1}.1f}%"
        if cv:
            cross = report["cross_validation"]
            cell = f"{100 * cross['accuracy']:.1f}% +- {100 * cross['standard_error']:.1f}"
            line += f"  {cell:>{len(cv_header) - 2}}"
        lines.append(line + f"  {100 * report['train_accuracy']:4.0f}%")
    lines.append(f"(accuracy; chance {100 * chance:.0f}%; +- one standard error over the folds)")
    return "\n".join(lines)


def attention_line(weights: dict[str, float]) -> str:
    return "mean Region Attention weight per region (test videos; uniform would be {:.3f}):\n  ".format(
        1 / len(weights)) + ", ".join(f"{name} {value:.3f}" for name, value in weights.items())


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


# ---------------------------------------------------------------------------------------------
# Pictures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    atomic_savefig(figure, path, dpi=110)
    _pyplot().close(figure)
    return path


def _middle_frame(video: dict, settings: DemoSettings) -> np.ndarray:
    """The central frame of the middle timestep the model reads, as the full RGB frame."""
    from rajax.data.sampling import uniform_timesteps
    from rajax.data.video import read_frames

    timesteps = uniform_timesteps(video["num_frames"], settings.num_timesteps, settings.timestep_length)
    middle = timesteps[len(timesteps) // 2]
    return read_frames(video["path"], [int(middle[len(middle) // 2])])[0]


REGION_COLOURS = ["white"] + [f"C{i}" for i in range(9)] + ["red"]


def draw_regions(video: dict, square, settings: DemoSettings, path: Path) -> Path:
    """The 11 regions on a frame of ``video`` and the crops the I3D reads (at the region size)."""
    from rajax.data.regions import REGION_NAMES, central_square_crop, crop_regions, region_boxes

    plt = _pyplot()
    from matplotlib import patches

    frame = _middle_frame(video, settings)
    square_frame = central_square_crop(frame)
    side = square_frame.shape[0]
    boxes = region_boxes(side, REGION_NAMES, square)
    crops = crop_regions(square_frame[None], REGION_NAMES, square, settings.region_size, output="uint8")[:, 0]
    figure = plt.figure(figsize=(13, 5.6))
    grid = figure.add_gridspec(3, 7, width_ratios=[1.5, 1.5, 1.5, 1, 1, 1, 1])
    axes = figure.add_subplot(grid[:, :3])
    axes.imshow(square_frame)
    for index, (name, (x0, y0, crop_side)) in enumerate(zip(REGION_NAMES, boxes)):
        inset = 0 if name != "full" else 1.5
        axes.add_patch(patches.Rectangle((x0 - 0.5 + inset, y0 - 0.5 + inset), crop_side - 2 * inset,
                                         crop_side - 2 * inset, fill=False, lw=3 if name == "actor" else 1.2,
                                         ls="-" if name in ("actor", "full") else "--",
                                         edgecolor=REGION_COLOURS[index]))
    x0, y0, crop_side = boxes[-1]
    axes.text(x0 + 2, y0 + 10, "actor", color="red", fontsize=11, weight="bold")
    axes.set_title(f"{video['video_id']} ({video['activity']}): the central square and its 11 regions", fontsize=10)
    axes.axis("off")
    for index, (name, crop) in enumerate(zip(REGION_NAMES, crops)):
        ax = figure.add_subplot(grid[index // 4, 3 + index % 4])
        ax.imshow(crop)
        ax.set_title(name, fontsize=9, color="red" if name == "actor" else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(REGION_COLOURS[index] if name != "full" else "black")
            spine.set_linewidth(2)
    figure.suptitle(f"What I3D reads: every region resized to {settings.region_size}x{settings.region_size}",
                    fontsize=11)
    figure.tight_layout()
    return _save(figure, path)


def draw_attention(videos: list[dict], squares: dict, weights: np.ndarray, predictions: list[int],
                   settings: DemoSettings, path: Path) -> Path:
    """Region Attention on frames (the paper's Figure 5): each pixel shaded by the summed weight of
    the regions that contain it, the most attended region outlined, and the weights as bars."""
    from rajax.data.regions import REGION_NAMES, central_square_crop, region_boxes

    plt = _pyplot()
    from matplotlib import patches

    columns = len(videos)
    figure, axes = plt.subplots(2, columns, figsize=(3.4 * columns, 6.4), squeeze=False,
                                gridspec_kw={"height_ratios": [1.25, 1]})
    for column, (video, weight, predicted) in enumerate(zip(videos, weights, predictions)):
        square_frame = central_square_crop(_middle_frame(video, settings))
        side = square_frame.shape[0]
        boxes = region_boxes(side, REGION_NAMES, squares[video["video_id"]])
        heat = np.zeros((side, side), np.float32)
        for (x0, y0, crop_side), w in zip(boxes, weight):
            heat[y0:y0 + crop_side, x0:x0 + crop_side] += w
        ax = axes[0, column]
        ax.imshow(square_frame)
        ax.imshow(heat, cmap="inferno", alpha=0.55, vmin=0.0, vmax=max(float(heat.max()), 1e-6))
        best = int(np.argmax(weight))
        x0, y0, crop_side = boxes[best]
        ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), crop_side, crop_side, fill=False, lw=2.5,
                                       edgecolor="cyan"))
        ax.text(x0 + 2, y0 + 12, f"{REGION_NAMES[best]} {weight[best]:.2f}", color="cyan", fontsize=8,
                weight="bold")
        x0, y0, crop_side = boxes[-1]
        ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), crop_side, crop_side, fill=False, lw=1.2,
                                       ls="--", edgecolor="red"))
        truth = video["activity"]
        guess = generate.ACTIVITY_NAMES[predicted]
        ax.set_title(f"true {truth}\npredicted {guess}", fontsize=9,
                     color="black" if truth == guess else "darkred")
        ax.axis("off")
        bars = axes[1, column]
        colours = ["red" if name == "actor" else ("gray" if name == "full" else "C0") for name in REGION_NAMES]
        bars.bar(range(len(REGION_NAMES)), weight, color=colours)
        bars.axhline(1 / len(REGION_NAMES), color="black", ls=":", lw=1)
        bars.set_xticks(range(len(REGION_NAMES)),
                        [name.replace("grid_", "g") for name in REGION_NAMES], rotation=90, fontsize=7)
        bars.set_ylim(0, max(0.3, float(np.max(weights)) * 1.1))
        bars.tick_params(axis="y", labelsize=7)
        if column == 0:
            bars.set_ylabel("attention weight", fontsize=8)
    figure.suptitle("Region Attention on test videos (shading: summed weight of the regions covering a pixel; "
                    "cyan: most attended region; red dashes: actor crop; dotted line: uniform)", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def draw_pictures(manifest: dict, squares: dict, reports: dict, test, settings: DemoSettings,
                  folder: Path) -> dict[str, Path]:
    """regions.png, attention.png (one test video per activity) and confusion_<head>.png."""
    from rajax.train.evaluation import plot_confusion_matrix

    by_id = {video["video_id"]: video for video in manifest["videos"]}
    test_ids = test[2]
    first_test = [next(i for i, vid in enumerate(test_ids) if by_id[vid]["label"] == label)
                  for label in range(len(generate.ACTIVITY_NAMES))
                  if any(by_id[vid]["label"] == label for vid in test_ids)]
    paths = {"regions": draw_regions(by_id[test_ids[first_test[0]]], squares[test_ids[first_test[0]]], settings,
                                     folder / "regions.png")}
    ra = reports["region_attention"]
    weights = np.array(ra["region_weight_per_video"])
    paths["attention"] = draw_attention([by_id[test_ids[i]] for i in first_test], squares, weights[first_test],
                                        [ra["predictions"][i] for i in first_test], settings,
                                        folder / "attention.png")
    for key, report in reports.items():
        path = folder / f"confusion_{key}.png"
        plot_confusion_matrix(np.array(report["confusion_matrix"]), report["class_names"], path,
                              title=f"{report['title']}: {100 * report['accuracy']:.1f}% on "
                                    f"{report['num_examples']} test videos")
        paths[f"confusion_{key}"] = path
    return paths


def run_demo(workdir: str | os.PathLike = "demo_workdir", detector_weights: str | None = None,
             quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Runs every stage in ``workdir``; prints the results table and returns the summary."""
    import platform

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    workdir = Path(workdir)
    if detector_weights is not None:
        detector_weights = str(Path(detector_weights).expanduser().resolve())
        if not Path(detector_weights).is_file():
            raise WeightsError(f"{detector_weights}: detector weights not found (--detector-weights)")
    if workdir.exists() and not workdir.is_dir():
        raise RajaxError(f"{workdir}: exists and is not a directory (--workdir)")
    workdir.mkdir(parents=True, exist_ok=True)
    settings = settings_for(quick, seed)
    spec = settings.dataset
    watch = Stopwatch()
    total_wall, total_cpu = time.perf_counter(), Stopwatch._cpu()

    _say(f"[1/5] Generating {len(spec.videos())} videos ({spec.seconds:g} s, {spec.width}x{spec.height}, "
         f"{spec.fps} fps) in {workdir / 'videos'}")
    manifest = watch.time("generate", generate.generate_dataset, spec, workdir / "videos", progress)

    _say(f"[2/5] Detecting the actor with YOLO ({detector_weights or 'the default yolo11n.pt'}, "
         f"every {settings.detect_every}th frame)")
    squares, detector = watch.time("detect", find_actors, manifest, workdir, detector_weights,
                                   settings.detect_every, progress)

    store = workdir / _store_name(settings, squares)
    _say(f"[3/5] Extracting features: 11 regions x {settings.num_timesteps} timesteps of 8 frames at "
         f"{settings.region_size}x{settings.region_size} through the Kinetics-400 I3D")
    backbone = watch.time("extract", extract_features, manifest, squares, settings, store, progress)

    _say(f"[4/5] Training {len(head_runs())} heads ({settings.epochs} epochs each) and testing them")

    def train_all():
        from rajax.data.regions import REGION_NAMES

        train, test = load_split(store, "train"), load_split(store, "test")
        reports = {}
        for index, run in enumerate(head_runs()):
            region_index = [REGION_NAMES.index(name) for name in run.regions]
            reports[run.key] = train_and_test_head(run, region_index, train, test, settings, seed + index, progress)
        return reports, test

    reports, test = watch.time("train_and_test_heads", train_all)

    _say("[5/5] Drawing the pictures")
    pictures_dir = workdir / PICTURES_DIR
    picture_paths = watch.time("pictures", draw_pictures, manifest, squares, reports, test, settings,
                               pictures_dir)

    ra = reports["region_attention"]
    summary = {
        "rajax_demo": 1,
        "note": ("a generated dataset of short videos, not Breakfast: the numbers show the method's pieces "
                 "working end to end and what Actor Focus and Region Attention do on this data, not the "
                 "paper's results"),
        "started": started,
        "quick": quick,
        "seed": seed,
        "workdir": str(workdir.resolve()),
        "dataset": {
            "videos": len(manifest["videos"]),
            "train_videos": sum(v["split"] == "train" for v in manifest["videos"]),
            "test_videos": sum(v["split"] == "test" for v in manifest["videos"]),
            "activities": manifest["activities"],
            "seconds_per_video": spec.seconds, "fps": spec.fps, "frame_size": [spec.width, spec.height],
            "manifest": str(workdir / "videos" / generate.MANIFEST_FILE),
            "csv": str(workdir / "videos" / generate.CSV_FILE),
            "person_photographs": manifest["source_photographs"],
        },
        "detector": detector,
        "backbone": backbone,
        "head_training": {"optimizer": "adam", "learning_rate": settings.learning_rate, "epsilon": 1e-8,
                          "weight_decay": settings.weight_decay, "epochs": settings.epochs,
                          "batch_size": settings.batch_size, "model_tested": "last epoch (no validation split)",
                          "cross_validation_folds": settings.cv_folds},
        "accuracy": {key: report["accuracy"] for key, report in reports.items()},
        "mean_class_accuracy": {key: report["mean_class_accuracy"] for key, report in reports.items()},
        "cross_validated_accuracy": {key: report["cross_validation"]["accuracy"]
                                     for key, report in reports.items() if "cross_validation" in report},
        "chance_accuracy": 1 / len(generate.ACTIVITY_NAMES),
        "mean_region_attention": ra["mean_region_attention"],
        "mean_region_score": ra.get("mean_region_score"),
        "heads": reports,
        "test_video_ids": test[2],
        "pictures": {name: str(path) for name, path in picture_paths.items()},
        "timings": dict(watch.stages),
        "machine": {"cpu_count": os.cpu_count(), "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
    }
    summary["timings"]["total"] = {"wall_s": round(time.perf_counter() - total_wall, 2),
                                   "cpu_s": round(Stopwatch._cpu() - total_cpu, 2)}
    _write_json(workdir / SUMMARY_FILE, summary)

    print()
    print(results_table(reports, summary["chance_accuracy"]))
    print()
    print(attention_line(ra["mean_region_attention"]))
    print()
    if detector["used"]:
        found = len(manifest["videos"]) - len(detector["videos_without_person"]) - len(detector["videos_failed"])
        print(f"Actor: detected by YOLO ({Path(detector['weights']).name}) in {found} of "
              f"{len(manifest['videos'])} videos; "
              f"mean IoU with the generator's person boxes {detector['mean_iou_with_generator_boxes']}.")
    else:
        print(f"Actor: NO DETECTOR ({detector['reason']}); actor crops from the generator's own boxes.")
    stage_times = ", ".join(f"{name} {t['wall_s']:.0f} s" for name, t in summary["timings"].items())
    print(f"Time: {stage_times} (wall clock; CPU seconds in {SUMMARY_FILE}).")
    print(f"Written: {workdir / SUMMARY_FILE}, pictures in {pictures_dir}/")
    return summary
