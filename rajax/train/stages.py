"""Each training stage's model (``Task``) and batches (``Data``), and running them: ``train``, ``evaluate``.

- stage 1, :func:`finetune`: Multi-Regional fine-tuning of I3D, one random region per video.
- stage 3, :func:`train_head`: a head on the stored features (stage 2 is ``rajax.train.extraction``).
- stage 4, :func:`end_to_end`: I3D and head together on every region of each video.
- :func:`i3d_alone`: the fine-tuned I3D's own classifier on the stored features (evaluation only).

Where the videos come from: ``rajax.train.inputs``; the forwards: ``rajax.train.forwards``; the work
directory and the config each stage keeps there: ``rajax.train.layout``.
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
from rajax.models.region_model import RegionModel
from rajax.train import backbone as backbone_lib
from rajax.train import inputs, layout, steps
from rajax.train.forwards import (
    features_logits_forward,
    head_forward,
    i3d_forward,
    region_model_forward,
)
from rajax.train.trainer import Data, Task


def per_host_batch(global_batch: int, what: str) -> int:
    """This host's share of a global batch; it must split evenly over the hosts and local devices."""
    hosts, devices = jax.process_count(), jax.local_device_count()
    if global_batch % (hosts * devices):
        raise RajaxError(f"{what} {global_batch} does not split over {hosts} host(s) x {devices} "
                         f"device(s); make it a multiple of {hosts * devices}")
    return global_batch // hosts


def video_eval_batches(config, batch_size: int, regions: tuple[str, ...]):
    """``eval_batches(split)`` of the video stages: every video of the split, on ``regions``."""
    from rajax.data import pipeline

    def eval_batches(split):
        source = inputs.split_videos(config, split)
        dataset = pipeline.evaluation_dataset(source, batch_size=batch_size, regions=regions,
                                              **inputs.video_options(config))
        return inputs.video_batches(dataset)

    return eval_batches


# --------------------------------------------------------------------------------------------
# Stage 1: fine-tuning


def finetune(config) -> tuple[Task, Data]:
    """Stage 1: Multi-Regional fine-tuning, one random region of ``finetune.regions`` per training
    video per epoch; validated (and tested) on ``finetune.validation_regions`` (the mean of the
    classifier's logits over them) or on ``finetune.eval_region`` alone."""
    from rajax.data import pipeline

    stage = config.finetune
    model, variables = backbone_lib.finetune_model(config, len(config.classes), config.seed)
    if stage.classifier_init == "probe":
        from rajax.train.probe import probe_classifier

        starting = backbone_lib.pretrained_variables(config.backbone.weights, config.backbone.width_multiplier)
        variables["params"]["Logits"] = probe_classifier(config, starting)
    batch = per_host_batch(stage.batch_size, "finetune.batch_size")
    eval_batch = per_host_batch(config.eval_batch_size, "eval_batch_size")
    train_videos = inputs.split_videos(config, config.data.train_split)
    eval_regions = tuple(stage.validation_regions) or (stage.eval_region,)
    train_options = dict(inputs.video_options(config), sampling_mode=stage.sampling or config.data.sampling)

    def train_batches(epoch, skip):
        dataset = pipeline.training_dataset(
            train_videos, epoch=epoch, batch_size=batch, regions=tuple(stage.regions),
            deterministic=True, **train_options)
        return inputs.video_batches(dataset, skip)

    steps_per_epoch = pipeline.training_steps(train_videos.count, batch, jax.process_count())
    data = Data(steps_per_epoch=steps_per_epoch, train_batches=train_batches,
                eval_batches=video_eval_batches(config, eval_batch, eval_regions), region_names=eval_regions)
    forward = i3d_forward(model, config.data.crop_size, flip=stage.flip)
    return Task(forward, variables["params"], variables["batch_stats"]), data


# --------------------------------------------------------------------------------------------
# Stage 3: head on stored features


def build_head(config):
    """The head of ``config.head``: its name, dropout and the options the config changes (the
    others keep the head's defaults; one it does not take is a RajaxError)."""
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


def checked_store(config, workdir) -> tuple[Path, dict]:
    """The feature store of ``config`` and its meta, once its features match the config."""
    from rajax.data.features import read_meta
    from rajax.train.extraction import check_store_for_config

    store = layout.features_dir(config, workdir)
    meta = read_meta(store)
    check_store_for_config(store, meta, config)
    return store, meta


def train_head(config, workdir) -> tuple[Task, Data]:
    from rajax.data.features import read_index

    head = build_head(config)  # config mistakes first, before touching the store
    regions = inputs.region_names(config)
    store, meta = checked_store(config, workdir)
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


def region_model(config, workdir, regions: tuple[str, ...]):
    """Stage 4's ``RegionModel``, its head, its variables ``(params, batch_stats)`` and the number of
    feature positions ``T'`` its backbone gives the head."""
    from rajax.models.i3d import INCEPTION_CHANNELS

    stage = config.end_to_end
    trainable_blocks = [name for name in INCEPTION_CHANNELS
                        if re.search(stage.trainable, f"backbone/{name}/")]
    backbone, variables = backbone_lib.load_backbone(
        config, workdir, dtype=stage.dtype,
        remat_blocks=tuple(trainable_blocks) if stage.remat else (),
        batch_norm_train_blocks=tuple(trainable_blocks) if stage.update_batch_stats else ())
    head = build_head(config)
    model = RegionModel(backbone=backbone, head=head)
    frames = config.data.num_timesteps * config.data.frames_per_timestep
    positions = jax.eval_shape(
        lambda v, x: backbone.apply(v, x, output="features"), variables,
        jax.ShapeDtypeStruct((1, frames, config.data.crop_size, config.data.crop_size, 3), jnp.float32),
    ).shape[1]
    head_params = init_head(head, config, len(regions), positions, backbone_lib.feature_dims(config))
    if stage.init_head:
        head_params = _best_head_params(config, workdir, head_params)
    backbone_params = {k: v for k, v in variables["params"].items() if k != "Logits"}
    params = {"backbone": backbone_params, "head": head_params}
    return model, head, (params, {"backbone": variables["batch_stats"]}), positions


def end_to_end(config, workdir) -> tuple[Task, Data]:
    from rajax.data import pipeline

    regions = inputs.region_names(config)
    model, head, (params, batch_stats), positions = region_model(config, workdir, regions)
    forward = region_model_forward(model, config.data.crop_size)
    batch = per_host_batch(config.end_to_end.batch_size, "end_to_end.batch_size")
    eval_batch = per_host_batch(config.eval_batch_size, "eval_batch_size")
    train_videos = inputs.split_videos(config, config.data.train_split)
    steps_per_epoch = pipeline.training_steps(train_videos.count, batch, jax.process_count())

    def train_batches(epoch, skip):
        # Every region of each video, videos in an order drawn from (seed, epoch), full batches.
        used = steps_per_epoch * batch * jax.process_count()
        videos = train_videos.shuffled(config.seed, epoch, take=used)
        dataset = pipeline.evaluation_dataset(videos, batch_size=batch, regions=regions,
                                              **inputs.video_options(config))
        return inputs.video_batches(dataset, skip)

    data = Data(steps_per_epoch, train_batches, video_eval_batches(config, eval_batch, regions), regions)
    loss = head_loss(config, head, (1, len(regions), positions, backbone_lib.feature_dims(config)))
    return Task(forward, params, batch_stats, loss), data


def _best_head_params(config, workdir, template: dict) -> dict:
    """Stage 3's best head parameters, or ``template`` (fresh) when stage 3 has not run."""
    from rajax.train import checkpoints

    run_dir = Path(workdir) / "train_head"
    if checkpoints.latest_step(run_dir) is None:
        print(f"No stage-3 head in {run_dir}; the head starts from scratch.")
        return template
    return checkpoints.restore_tree(run_dir / checkpoints.BEST_DIR)["params"]


# --------------------------------------------------------------------------------------------
# I3D alone: the fine-tuned I3D's classifier on the stored features


def i3d_alone(config, workdir) -> tuple[Task, Data]:
    """The fine-tuned I3D's own classifier on the stored features of ``finetune.eval_region``."""
    export = backbone_lib.finetuned_dir(config, workdir) / backbone_lib.EXPORT_DIR
    if not export.is_dir():
        raise RajaxError(f"{export}: no fine-tuned backbone to evaluate; run stage 1 first")
    import rajax

    _, variables = rajax.load_i3d(export)
    store, _ = checked_store(config, workdir)
    region = config.finetune.eval_region
    eval_batch = per_host_batch(config.eval_batch_size, "eval_batch_size")

    splits: dict = {}

    def eval_batches(split):
        return feature_batches(config, splits, store, split, eval_batch, regions=(region,))

    params = jax.device_get({"Logits": variables["params"]["Logits"]})
    return Task(features_logits_forward(), params, {}), Data(0, None, eval_batches, (region,))


# --------------------------------------------------------------------------------------------
# Running a stage


def build(config, workdir, stage: str) -> tuple[Task, Data]:
    if stage == "finetune":
        return finetune(config)
    if stage == "train_head":
        return train_head(config, workdir)
    if stage == "end_to_end":
        return end_to_end(config, workdir)
    raise RajaxError(f"unknown stage {stage!r}: choose one of {', '.join(layout.STAGES)}")


def train(config, workdir: str | os.PathLike, stage: str | None = None, progress: bool = True) -> dict:
    """Runs (or resumes) one training stage in ``WORKDIR/<stage>``; returns its test report.

    Stage 1 also exports its best checkpoint's variables to ``WORKDIR/finetune/backbone`` for
    stages 2 and 4.
    """
    from rajax.train import trainer

    stage = stage or config.stage
    settings = layout.stage_config(config, stage)
    run_dir = Path(workdir) / stage
    layout.check_resumable(config, run_dir, stage)
    task, data = build(config, workdir, stage)  # validates data, store and checkpoints first
    if jax.process_index() == 0:
        _write_stage_records(config, workdir, run_dir, stage)
    report, best_state = trainer.fit(run_dir, task, data, settings, config, class_names=config.classes,
                                     progress=progress)
    if stage == "finetune" and jax.process_index() == 0:
        best = {"params": best_state.params, "batch_stats": best_state.batch_stats}
        path = backbone_lib.export_backbone(best, run_dir / backbone_lib.EXPORT_DIR, config,
                                            source=f"rajax fine-tuning ({run_dir})")
        print(f"Fine-tuned backbone: {path}")
    return report


def _write_stage_records(config, workdir, run_dir: Path, stage: str) -> None:
    """The config a stage trains with and, for a head, the settings of the features it learns from."""
    from rajax.train.config import write_config_json

    write_config_json(config, run_dir / layout.CONFIG_FILE)
    if stage == "train_head":
        from rajax.data.features import read_meta

        features = read_meta(layout.features_dir(config, workdir))["settings"]
        atomic_write_text(run_dir / layout.FEATURES_RECORD, json.dumps(features, indent=2) + "\n")


def evaluate(config, workdir: str | os.PathLike, stage: str, split: str, checkpoint: str = "best") -> dict:
    """Evaluates a stage's checkpoint (``best``, ``latest`` or a step number) on ``split``.

    Writes ``WORKDIR/<stage>/eval/<split>.json`` and ``<split>_confusion.png``; returns the report.
    ``stage='finetune'`` evaluates the fine-tuned I3D alone on the stored features (its own
    classifier on ``finetune.eval_region``), the paper's "I3D alone" column.
    """
    from rajax.train import evaluation, trainer

    run_dir = Path(workdir) / stage
    config = layout.trained_config(workdir, stage, config)
    if stage == "finetune":
        task, data = i3d_alone(config, workdir)
        params, batch_stats = task.params, task.batch_stats
    else:
        task, data = build(config, workdir, stage)
        params, batch_stats = _restore_variables(run_dir, checkpoint)
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


def _restore_variables(run_dir: Path, checkpoint: str) -> tuple[dict, dict]:
    """``(params, batch_stats)`` of a stage's checkpoint: ``best``, ``latest`` or a step number
    (one of the latest checkpoints)."""
    from rajax.train import checkpoints

    folder = checkpoints.LATEST_DIR if checkpoint == "latest" else checkpoints.BEST_DIR
    step = int(checkpoint) if checkpoint not in ("best", "latest") else None
    if step is not None:
        folder = checkpoints.LATEST_DIR
    tree = checkpoints.restore_tree(run_dir / folder, step)
    return tree["params"], tree.get("batch_stats") or {}
