"""From a config and a work directory to each stage's model (``Task``) and batches (``Data``).

A work directory holds one experiment::

    WORKDIR/finetune/          stage 1: config.json (the config it was trained with), checkpoints/,
                               best/, eval/, metrics.jsonl, tensorboard/, backbone/ (best
                               fine-tuned I3D, a converted checkpoint)
    WORKDIR/features/          stage 2: the feature store (rajax.data.features) and its config.json
    WORKDIR/train_head/        stage 3: as stage 1, without backbone/, with features.json (the
                               settings of the features it was trained on, backbone digest included)
    WORKDIR/end_to_end/        stage 4

Each stage's ``config.json`` is written once the stage has validated its inputs, so a command that
fails leaves the earlier records as they were; ``rajax evaluate`` and ``rajax predict`` read the
config of the stage they use, never one that a later command wrote.

Videos come from a TFDS dataset (``config.data.dataset``, builders in ``rajax.datasets``) or from a
CSV of ``path,label,split`` rows (``config.data.csv``); actor squares from the dataset or from
``config.data.actors_file`` (``rajax detect-actors`` output).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rajax.errors import RajaxError
from rajax.files import atomic_write_text
from rajax.train import backbone as backbone_lib
from rajax.train import steps
from rajax.train.trainer import Data, Task

STAGES = ("finetune", "train_head", "end_to_end")
FEATURES_DIR = "features"
CONFIG_FILE = "config.json"
FEATURES_RECORD = "features.json"  # in WORKDIR/train_head: the settings of the features it learnt from


def stage_config(config, stage: str):
    if stage not in STAGES:
        raise RajaxError(f"unknown stage {stage!r} (config.stage): choose one of {', '.join(STAGES)}")
    return config[stage]


def features_dir(config, workdir: str | os.PathLike) -> Path:
    return Path(config.data.features_dir or Path(workdir) / FEATURES_DIR)


def region_names(config) -> tuple[str, ...]:
    from rajax.data.regions import resolve_regions

    try:
        return resolve_regions(tuple(config.data.regions))
    except ValueError as error:
        raise RajaxError(f"config.data.regions: {error}") from error


def per_host_batch(global_batch: int, what: str) -> int:
    """This host's share of a global batch; it must split evenly over the hosts and local devices."""
    hosts, devices = jax.process_count(), jax.local_device_count()
    if global_batch % (hosts * devices):
        raise RajaxError(f"{what} {global_batch} does not split over {hosts} host(s) x {devices} "
                         f"device(s); make it a multiple of {hosts * devices}")
    return global_batch // hosts


def to_network_input(frames: jax.Array, dtype) -> jax.Array:
    """Clips already cut, as uint8 pixels or floats in [-1, 1] -> [-1, 1] in ``dtype``."""
    if frames.dtype == jnp.uint8:
        frames = frames.astype(jnp.float32) / 127.5 - 1.0
    return frames.astype(dtype)


def batch_clips(batch, crop_size: int, dtype) -> jax.Array:
    """The I3D input of a batch, ``[b, N, S, S, 3]`` in [-1, 1]: each video's one region cut on the
    device from its frames and box (what the pipelines send), or ``frames`` already cut (tests,
    benchmarks) when the batch has no boxes."""
    from rajax.data import crops

    if "boxes" not in batch:
        return to_network_input(batch["frames"], dtype)
    return crops.batch_region_clip(batch["frames"], batch["boxes"][:, 0], crop_size, dtype)


# --------------------------------------------------------------------------------------------
# Video sources


def split_videos(config, split: str):
    """``(videos, count)`` of a split: VideoRecords (CSV) or TFDS video elements."""
    data = config.data
    if data.csv:
        from rajax.data import records as records_lib

        splits = [name for name in (data.train_split, data.validation_split, data.test_split) if name]
        records, _ = records_lib.records_from_csv(data.csv, class_names=list(config.classes), splits=splits)
        records = records_lib.split_records(records, split)
        if data.actors_file:
            records, _ = records_lib.attach_actor_squares(records, data.actors_file)
        if not records:
            raise RajaxError(f"{data.csv}: no videos in split {split!r}")
        return records, len(records)
    import tensorflow_datasets as tfds

    import rajax.datasets  # noqa: F401  (registers the breakfast and video_folder builders)
    from rajax.data.pipeline import tfds_videos

    builder = tfds.builder(data.dataset, data_dir=data.data_dir or None)
    if split not in builder.info.splits:
        raise RajaxError(f"dataset {data.dataset!r} has no split {split!r} "
                         f"(it has {', '.join(builder.info.splits)})")
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    return tfds_videos(dataset), builder.info.splits[split].num_examples


def _numpy_batches(dataset, keys: tuple[str, ...], skip: int = 0):
    for batch in dataset.skip(skip).as_numpy_iterator():
        yield {key: batch[key] for key in keys}


# What the video pipelines hand the steps: decoded frames and region boxes (rajax.data.pipeline).
VIDEO_KEYS = ("frames", "boxes", "label", "mask")


def video_options(config) -> dict:
    data = config.data
    return dict(num_timesteps=data.num_timesteps, timestep_length=data.frames_per_timestep,
                sampling_mode=data.sampling, shuffled_timesteps=data.shuffle_timesteps,
                seed=config.seed, frame_side=data.frame_side, shard="auto")


# --------------------------------------------------------------------------------------------
# Stage 1: fine-tuning


def i3d_forward(model, crop_size: int = 224):
    """Forward of a bare I3D classifier on each video's region (``batch_clips``)."""

    def forward(params, batch_stats, batch, *, train, rng):
        clips = batch_clips(batch, crop_size, model.dtype)
        variables = {"params": params, "batch_stats": batch_stats}
        if train:
            logits, updated = model.apply(variables, clips, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": rng})
            return logits, {}, updated["batch_stats"]
        return model.apply(variables, clips, train=False), {}, batch_stats

    return forward


def finetune(config) -> tuple[Task, Data]:
    from rajax.data import pipeline

    model, variables = backbone_lib.finetune_model(config, len(config.classes), config.seed)
    batch = per_host_batch(config.finetune.batch_size, "finetune.batch_size")
    eval_batch = per_host_batch(config.eval_batch_size, "eval_batch_size")
    train_videos, num_train = split_videos(config, config.data.train_split)
    options = video_options(config)
    eval_region = config.finetune.eval_region

    forward = i3d_forward(model, config.data.crop_size)

    def train_batches(epoch, skip):
        dataset = pipeline.training_dataset(
            train_videos, epoch=epoch, batch_size=batch, regions=tuple(config.finetune.regions),
            num_videos=num_train, deterministic=True, **options)
        return _numpy_batches(dataset, VIDEO_KEYS, skip)

    def eval_batches(split):
        videos, count = split_videos(config, split)
        dataset = pipeline.evaluation_dataset(videos, batch_size=eval_batch, regions=(eval_region,),
                                              num_videos=count, **options)
        return _numpy_batches(dataset, VIDEO_KEYS)

    data = Data(steps_per_epoch=pipeline.training_steps(num_train, batch, jax.process_count()),
                train_batches=train_batches, eval_batches=eval_batches, region_names=(eval_region,))
    return Task(forward, variables["params"], variables["batch_stats"]), data


# --------------------------------------------------------------------------------------------
# Stage 3: head on stored features


def head_forward(head):
    def forward(params, batch_stats, batch, *, train, rng):
        rngs = {"dropout": rng} if train else {}
        logits, attention = head.apply({"params": params}, batch["features"], batch.get("region_mask"),
                                       train=train, rngs=rngs)
        return logits, attention, batch_stats

    return forward


def build_head(config):
    """The head of ``config.head``: its name, dropout and exactly its own options."""
    from rajax.models.heads import build_head as build

    return build(config.head.name, len(config.classes), config.head.dropout_rate, **config.head.options)


def head_loss(config, head, features_shape: tuple[int, ...]):
    """Cross-entropy plus the auxiliary terms of ``config.head.aux_losses``, each checked against
    what ``head`` returns on features of ``features_shape`` ``[1, R, T', C]`` (no computation)."""
    from rajax.models.losses import build_loss, missing_attention

    aux_losses = tuple(config.head.aux_losses)
    if aux_losses:
        features = jax.ShapeDtypeStruct(features_shape, jnp.float32)
        _, attention = jax.eval_shape(lambda x: head.init_with_output(jax.random.key(0), x)[0], features)
        missing = missing_attention(aux_losses, attention)
        if missing:
            raise RajaxError(f"config.head.aux_losses: {'; '.join(missing)}, which head "
                             f"{config.head.name!r} does not return (it returns {', '.join(sorted(attention))})")
    return build_loss(aux_losses)


def init_head(head, config, num_regions: int, num_positions: int, channels: int) -> dict:
    dummy = jnp.zeros((1, num_regions, num_positions, channels), jnp.float32)
    return jax.device_get(head.init(jax.random.key(config.seed), dummy)["params"])


def feature_batches(config, splits: dict, store: Path, split: str, batch_size: int, *, epoch: int = 0,
                    train: bool = False, regions=None):
    """``{features, label, mask}`` batches of a split of the feature store, read into memory once
    (``splits`` caches a ``FeatureSplit`` per split).

    Training: shuffled by (seed, epoch), full batches only. Evaluation: in order, the last batch
    padded with mask 0. Always deterministic (a resumed epoch sees the same batches).
    """
    from rajax.data.features import FeatureSplit

    if split not in splits:
        splits[split] = FeatureSplit(store, split, regions)
    for batch in splits[split].batches(batch_size, shuffle=train, seed=config.seed, epoch=epoch,
                                       drop_remainder=train, shard="auto"):
        yield {key: batch[key] for key in ("features", "label", "mask")}


def train_head(config, workdir) -> tuple[Task, Data]:
    from rajax.data.features import read_index, read_meta
    from rajax.train.extraction import check_store_for_config

    head = build_head(config)  # config mistakes first, before touching the store
    regions = region_names(config)
    store = features_dir(config, workdir)
    meta = read_meta(store)
    check_store_for_config(store, meta, config)
    params = init_head(head, config, len(regions), meta["num_positions"], meta["channels"])
    batch = per_host_batch(config.train_head.batch_size, "train_head.batch_size")
    eval_batch = per_host_batch(config.eval_batch_size, "eval_batch_size")
    num_train = len(read_index(store, config.data.train_split))
    steps_per_epoch = (num_train // jax.process_count()) // batch

    splits: dict = {}  # each split's features, read once

    def train_batches(epoch, skip):
        batches = feature_batches(config, splits, store, config.data.train_split, batch, epoch=epoch,
                                  train=True, regions=regions)
        return itertools.islice(batches, skip, None)

    def eval_batches(split):
        return feature_batches(config, splits, store, split, eval_batch, regions=regions)

    data = Data(steps_per_epoch, train_batches, eval_batches, regions)
    loss = head_loss(config, head, (1, len(regions), meta["num_positions"], meta["channels"]))
    return Task(head_forward(head), params, {}, loss), data


# --------------------------------------------------------------------------------------------
# Stage 4: end-to-end


def region_model_forward(model, crop_size: int = 224):
    """Forward of a RegionModel on every region of each video, cut on the device from
    ``batch['frames']`` [b, N, F, F, 3] and ``batch['boxes']`` [b, R, 3]."""
    from rajax.data import crops

    def forward(params, batch_stats, batch, *, train, rng):
        clips = jax.vmap(lambda f, b: crops.region_clips(f, b, crop_size, model.backbone.dtype))(
            batch["frames"], batch["boxes"])
        variables = {"params": params, "batch_stats": batch_stats}
        if train:
            (logits, attention), updated = model.apply(variables, clips, train=True, mutable=["batch_stats"],
                                                       rngs={"dropout": rng})
            return logits, attention, updated["batch_stats"]
        logits, attention = model.apply(variables, clips, train=False)
        return logits, attention, batch_stats

    return forward


def end_to_end(config, workdir) -> tuple[Task, Data]:
    from rajax.data import pipeline
    from rajax.models.i3d import INCEPTION_CHANNELS

    stage = config.end_to_end
    regions = region_names(config)
    trainable_blocks = [name for name in INCEPTION_CHANNELS
                        if re.search(stage.trainable, f"backbone/{name}/")]
    backbone, variables = backbone_lib.load_backbone(
        config, workdir, dtype=stage.dtype,
        remat_blocks=tuple(trainable_blocks) if stage.remat else (),
        batch_norm_train_blocks=tuple(trainable_blocks) if stage.update_batch_stats else ())
    head = build_head(config)
    model = backbone_lib.RegionModel(backbone=backbone, head=head)
    frames = config.data.num_timesteps * config.data.frames_per_timestep
    positions = jax.eval_shape(
        lambda v, x: backbone.apply(v, x, output="features"), variables,
        jax.ShapeDtypeStruct((1, frames, config.data.crop_size, config.data.crop_size, 3), jnp.float32),
    ).shape[1]
    head_params = init_head(head, config, len(regions), positions, backbone_lib.feature_dims(config))
    if stage.init_head:
        head_params = _best_head_params(config, workdir, head_params)
    backbone_params = {k: v for k, v in variables["params"].items() if k != "Logits"}
    backbone_stats = variables["batch_stats"]
    params = {"backbone": backbone_params, "head": head_params}

    forward = region_model_forward(model, config.data.crop_size)
    batch = per_host_batch(stage.batch_size, "end_to_end.batch_size")
    eval_batch = per_host_batch(config.eval_batch_size, "eval_batch_size")
    train_videos, num_train = split_videos(config, config.data.train_split)
    options = video_options(config)
    steps_per_epoch = pipeline.training_steps(num_train, batch, jax.process_count())

    def train_batches(epoch, skip):
        # Every region of each video, videos in an order drawn from (seed, epoch), full batches.
        used = steps_per_epoch * batch * jax.process_count()
        if isinstance(train_videos, list):
            order = np.random.default_rng([config.seed, epoch]).permutation(num_train)[:used]
            videos = [train_videos[i] for i in order]
        else:
            videos = train_videos.shuffle(256, seed=config.seed * 1_000_003 + epoch,
                                          reshuffle_each_iteration=False).take(used)
        dataset = pipeline.evaluation_dataset(videos, batch_size=batch, regions=regions, num_videos=used,
                                              **options)
        return _numpy_batches(dataset, VIDEO_KEYS, skip)

    def eval_batches(split):
        videos, count = split_videos(config, split)
        dataset = pipeline.evaluation_dataset(videos, batch_size=eval_batch, regions=regions,
                                              num_videos=count, **options)
        return _numpy_batches(dataset, VIDEO_KEYS)

    data = Data(steps_per_epoch, train_batches, eval_batches, regions)
    loss = head_loss(config, head, (1, len(regions), positions, backbone_lib.feature_dims(config)))
    return Task(forward, params, {"backbone": backbone_stats}, loss), data


def _best_head_params(config, workdir, template: dict) -> dict:
    """Stage 3's best head parameters, or ``template`` (fresh) when stage 3 has not run."""
    from rajax.train import checkpoints

    run_dir = Path(workdir) / "train_head"
    if checkpoints.latest_step(run_dir) is None:
        print(f"No stage-3 head in {run_dir}; the head starts from scratch.")
        return template
    return checkpoints.restore_tree(run_dir / checkpoints.BEST_DIR)["params"]


# --------------------------------------------------------------------------------------------
# Running a stage


def build(config, workdir, stage: str) -> tuple[Task, Data]:
    if stage == "finetune":
        return finetune(config)
    if stage == "train_head":
        return train_head(config, workdir)
    if stage == "end_to_end":
        return end_to_end(config, workdir)
    raise RajaxError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")


def train(config, workdir: str | os.PathLike, stage: str | None = None, progress: bool = True) -> dict:
    """Runs (or resumes) one training stage in ``WORKDIR/<stage>``; returns its test report.

    Stage 1 also exports its best checkpoint's variables to ``WORKDIR/finetune/backbone`` for
    stages 2 and 4.
    """
    from rajax.train import trainer
    from rajax.train.config import write_config_json

    stage = stage or config.stage
    settings = stage_config(config, stage)
    run_dir = Path(workdir) / stage
    check_resumable(config, run_dir, stage)
    task, data = build(config, workdir, stage)  # validates data, store and checkpoints first
    if jax.process_index() == 0:
        write_config_json(config, run_dir / CONFIG_FILE)
        if stage == "train_head":
            from rajax.data.features import read_meta

            features = read_meta(features_dir(config, workdir))["settings"]
            atomic_write_text(run_dir / FEATURES_RECORD, json.dumps(features, indent=2) + "\n")
    report, best_state = trainer.fit(run_dir, task, data, settings, config, class_names=config.classes,
                                     progress=progress)
    if stage == "finetune" and jax.process_index() == 0:
        best = {"params": best_state.params, "batch_stats": best_state.batch_stats}
        path = backbone_lib.export_backbone(best, run_dir / backbone_lib.EXPORT_DIR, config,
                                            source=f"rajax fine-tuning ({run_dir})")
        print(f"Fine-tuned backbone: {path}")
    return report


def i3d_alone(config, workdir) -> tuple[Task, Data]:
    """The fine-tuned I3D's own classifier on the stored features of ``finetune.eval_region``."""
    export = backbone_lib.finetuned_dir(config, workdir) / backbone_lib.EXPORT_DIR
    if not export.is_dir():
        raise RajaxError(f"{export}: no fine-tuned backbone to evaluate; run stage 1 first")
    import rajax
    from rajax.data.features import read_meta
    from rajax.train.extraction import check_store_for_config

    _, variables = rajax.load_i3d(export)
    store = features_dir(config, workdir)
    check_store_for_config(store, read_meta(store), config)
    region = config.finetune.eval_region
    eval_batch = per_host_batch(config.eval_batch_size, "eval_batch_size")

    def forward(params, batch_stats, batch, *, train, rng):
        return backbone_lib.backbone_logits_on_features(params, batch["features"][:, 0]), {}, batch_stats

    splits: dict = {}

    def eval_batches(split):
        return feature_batches(config, splits, store, split, eval_batch, regions=(region,))

    params = jax.device_get({"Logits": variables["params"]["Logits"]})
    return Task(forward, params, {}), Data(0, None, eval_batches, (region,))


def check_resumable(config, run_dir: Path, stage: str) -> None:
    """A stage that has checkpoints resumes only under the config it was trained with.

    Where the data lives, how long to train, how often to log and save may change; anything else
    (the model, its inputs, the optimizer, the seed) would silently continue another experiment
    and overwrite the record of the one that made the checkpoints.
    """
    from rajax.train import checkpoints
    from rajax.train.config import config_differences, read_config_json

    saved_file = run_dir / CONFIG_FILE
    if not saved_file.is_file() or not checkpoints.saved_steps(run_dir / checkpoints.LATEST_DIR):
        return
    others = tuple(f"{name}." for name in STAGES if name != stage)  # other stages' settings
    allowed = (*EVALUATION_OVERRIDES, f"{stage}.num_epochs", f"{stage}.eval_every_epochs", "checkpoint.")
    differences = [f"{key}: {saved!r} (trained) vs {given!r}"
                   for key, (saved, given) in config_differences(config, read_config_json(saved_file)).items()
                   if not key.startswith(allowed + others)]
    if differences:
        raise RajaxError(f"{run_dir}: its checkpoints were trained with another config ("
                         + "; ".join(differences) + "); resume with that config or use another --workdir")


# What evaluating a trained stage may change in its config: where the videos or features come from
# and how they are batched, never the model, its inputs or the classes.
EVALUATION_OVERRIDES = ("data.dataset", "data.data_dir", "data.csv", "data.train_split", "data.validation_split",
                        "data.test_split", "data.actors_file", "data.features_dir", "eval_batch_size",
                        "extract_batch_size", "distributed.", "stage", "log_every_steps")


def trained_config(workdir: str | os.PathLike, stage: str, config=None):
    """The config ``stage`` was trained with (``WORKDIR/<stage>/config.json``).

    With ``config`` (the command line's), that config, after checking it differs from the trained
    one only where ``EVALUATION_OVERRIDES`` allows: a model is never evaluated under another config.
    """
    from rajax.train.config import config_differences, read_config_json, validate_config

    path = Path(workdir) / stage / CONFIG_FILE
    if not path.is_file():
        raise RajaxError(f"{path}: no config of a trained {stage} stage in this work directory "
                         f"(train it first: rajax train CONFIG --workdir {workdir} --stage {stage})")
    saved = validate_config(read_config_json(path))
    if config is None:
        return saved
    differences = [f"{key}: {trained!r} (trained) vs {given!r}"
                   for key, (trained, given) in config_differences(config, saved).items()
                   if not key.startswith(EVALUATION_OVERRIDES)]
    if differences:
        raise RajaxError(f"{path}: the {stage} stage was trained with another config ("
                         + "; ".join(differences) + "); evaluate with the config it was trained with")
    return config


def evaluate(config, workdir: str | os.PathLike, stage: str, split: str, checkpoint: str = "best") -> dict:
    """Evaluates a stage's checkpoint (``best``, ``latest`` or a step number) on ``split``.

    Writes ``WORKDIR/<stage>/eval/<split>.json`` and ``<split>_confusion.png``; returns the report.
    ``stage='finetune'`` evaluates the fine-tuned I3D alone on the stored features (its own
    classifier on ``finetune.eval_region``), the paper's "I3D alone" column.
    """
    from rajax.train import checkpoints, evaluation, trainer

    run_dir = Path(workdir) / stage
    config = trained_config(workdir, stage, config)
    if stage == "finetune":
        task, data = i3d_alone(config, workdir)
        params, batch_stats, step = task.params, task.batch_stats, None
    else:
        task, data = build(config, workdir, stage)
        folder = checkpoints.LATEST_DIR if checkpoint == "latest" else checkpoints.BEST_DIR
        step = int(checkpoint) if checkpoint not in ("best", "latest") else None
        if step is not None:
            folder = checkpoints.LATEST_DIR
        tree = checkpoints.restore_tree(run_dir / folder, step)
        params, batch_stats = tree["params"], tree.get("batch_stats") or {}
    state = steps.TrainState(step=np.zeros((), np.int32), params=params, batch_stats=batch_stats,
                             opt_state=None, rng=np.zeros((2,), np.uint32))
    eval_fn = steps.pmap_eval_step(forward=task.forward, loss=task.loss)
    report = trainer.evaluate_split(eval_fn, steps.replicate(state), data, split, config.classes)
    report["stage"], report["checkpoint"] = stage, checkpoint
    if jax.process_index() == 0:
        json_path, png_path = evaluation.write_report(report, run_dir / trainer.EVAL_DIR, split)
        print(f"{stage} on {split}: " + evaluation.format_report(report))
        print(f"Written: {json_path}, {png_path}")
    return report
