"""Stage 2: features of every region of every video, into the feature store.

The backbone (stage 1's fine-tuned I3D, or the Kinetics-400 one with
``config.backbone.finetuned=false``) runs in inference mode on every region of every video of the
train, validation and test splits, one-shot or one-at-a-time (``config.backbone.extraction``), and
each video's ``[R, T', C]`` features go to the store (``rajax.data.features``: one ``.npy`` per
video plus ``index.jsonl`` with video ids, labels and splits; ``meta.json`` with the region names).

The region clips of a batch of videos are spread over the local devices (pmap); with several hosts
each decodes its share of the videos and process 0 gathers the features and writes the store.
Resuming: videos already in the store are not decoded again (single host) or not written again
(several hosts). A video that cannot be decoded is reported, counted and skipped.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from rajax.errors import RajaxError
from rajax.train import backbone as backbone_lib
from rajax.train import stages, steps

_ID_BYTES = 256  # video ids travel between hosts as fixed-size byte rows


def feature_shape(model, variables, config) -> tuple[int, int]:
    """(T', C) of one region's features under the config's extraction mode (no computation)."""
    frames = config.data.num_timesteps * config.data.frames_per_timestep
    size = config.data.crop_size
    shape = jax.eval_shape(
        lambda v, x: backbone_lib.extract_features(model, v, x, config.backbone.extraction,
                                                   config.data.frames_per_timestep),
        variables, jax.ShapeDtypeStruct((1, frames, size, size, 3), jnp.float32),
    ).shape
    return int(shape[1]), int(shape[2])


def _encode_ids(ids) -> np.ndarray:
    rows = np.zeros((len(ids), _ID_BYTES), np.uint8)
    for i, video_id in enumerate(ids):
        raw = video_id if isinstance(video_id, bytes) else str(video_id).encode("utf-8")
        if len(raw) > _ID_BYTES:
            raise RajaxError(f"video id longer than {_ID_BYTES} bytes: {raw[:40]!r}...")
        rows[i, : len(raw)] = np.frombuffer(raw, np.uint8)
    return rows


def _decode_id(row: np.ndarray) -> str:
    return bytes(row).rstrip(b"\0").decode("utf-8")


def _gather(arrays: dict) -> dict:
    if jax.process_count() == 1:
        return arrays
    from jax.experimental import multihost_utils

    return {key: np.asarray(multihost_utils.process_allgather(value, tiled=True)) for key, value in arrays.items()}


def _pending_videos(videos, count: int, done: set[str]):
    """The videos of a split not yet in the store (only filtered on a single host)."""
    if not done or jax.process_count() > 1:
        return videos, count
    if isinstance(videos, list):
        remaining = [v for v in videos if v.video_id not in done]
        return remaining, len(remaining)
    import tensorflow as tf

    done_ids = tf.constant(sorted(done))
    remaining = videos.filter(lambda e: tf.logical_not(tf.reduce_any(tf.equal(e["video_id"], done_ids))))
    return remaining, count - len(done)


def extract(config, workdir: str | os.PathLike, splits=None, progress: bool = True) -> dict:
    """Extracts the features of ``splits`` (default: train, validation, test); returns counts."""
    from tqdm import tqdm

    from rajax.data import pipeline
    from rajax.data.features import FeatureWriter, read_index

    is_main = jax.process_index() == 0
    model, variables = backbone_lib.load_backbone(config, workdir)
    regions = stages.region_names(config)
    positions, channels = feature_shape(model, variables, config)
    store = stages.features_dir(config, workdir)
    extra = {"extraction": config.backbone.extraction, "num_timesteps": config.data.num_timesteps,
             "frames_per_timestep": config.data.frames_per_timestep, "sampling": config.data.sampling,
             "shuffle_timesteps": config.data.shuffle_timesteps, "finetuned": config.backbone.finetuned}
    writer = FeatureWriter(store, regions, positions, channels, dtype=config.backbone.feature_dtype,
                           class_names=list(config.classes), extra=extra) if is_main else None
    dtype = model.dtype
    mode, timestep_length = config.backbone.extraction, config.data.frames_per_timestep
    features_fn = jax.pmap(lambda v, clips: backbone_lib.extract_features(
        model, v, stages.to_network_input(clips, dtype), mode, timestep_length), axis_name=steps.AXIS)
    replicated = steps.replicate(variables)
    devices = jax.local_device_count()
    videos_per_batch = config.extract_batch_size  # per host; its R regions each are spread over devices
    splits = splits or [s for s in (config.data.train_split, config.data.validation_split,
                                    config.data.test_split) if s]
    summary = {"written": 0, "skipped_videos": 0, "already_done": 0, "store": str(store)}
    for split in splits:
        videos, count = stages.split_videos(config, split)
        done = {entry["video_id"] for entry in read_index(store, split)} if store.exists() else set()
        summary["already_done"] += len(done)
        videos, count = _pending_videos(videos, count, done)
        if count <= 0:
            continue
        skipped: list[str] = []
        dataset = pipeline.evaluation_dataset(videos, batch_size=videos_per_batch, regions=regions,
                                              num_videos=count, skipped=skipped,
                                              **stages.video_options(config))
        total = pipeline.evaluation_steps(count, videos_per_batch, jax.process_count())
        for batch in tqdm(dataset.as_numpy_iterator(), total=total, desc=f"extract {split}", unit="batch",
                          disable=not (progress and is_main)):
            frames = batch["frames"]  # [B, R, N, S, S, 3] uint8
            flat = frames.reshape((-1,) + frames.shape[2:])
            padded = -len(flat) % devices
            if padded:
                flat = np.concatenate([flat, np.zeros((padded,) + flat.shape[1:], flat.dtype)])
            out = features_fn(replicated, flat.reshape((devices, -1) + flat.shape[1:]))
            out = np.asarray(jax.device_get(out)).reshape((-1, positions, channels))[: len(frames) * len(regions)]
            gathered = _gather({"features": out.reshape(len(frames), len(regions), positions, channels),
                                "label": batch["label"], "mask": batch["mask"],
                                "video_id": _encode_ids(batch["video_id"])})
            if not is_main:
                continue
            for features, label, mask, id_row in zip(gathered["features"], gathered["label"],
                                                      gathered["mask"], gathered["video_id"]):
                video_id = _decode_id(id_row)
                if mask and video_id not in writer:
                    writer.write(video_id, int(label), split, features)
                    summary["written"] += 1
        summary["skipped_videos"] += len(skipped)
        if skipped and is_main:
            print(f"{split}: {len(skipped)} video(s) could not be read and were skipped:")
            for message in skipped:
                print(f"  {message}")
    return summary
