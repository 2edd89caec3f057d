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
from rajax.progress import Progress
from rajax.train import backbone as backbone_lib
from rajax.train import inputs, layout, steps
from rajax.train.config import write_config_json

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


# The settings a stored feature depends on besides its regions, shape, dtype and classes (which
# the store checks itself). A head trained on the store must be trained with the same ones.
DATA_SETTINGS = ("num_timesteps", "frames_per_timestep", "sampling", "shuffle_timesteps", "crop_size",
                 "frame_side")
BACKBONE_SETTINGS = ("extraction", "temporal_pool", "dtype", "width_multiplier")


def feature_settings(config, backbone_digest: str) -> dict:
    """What the features of a config depend on: sampling, crops, extraction, and which backbone.

    The seed only counts when frames are drawn at random (random sampling, shuffled timesteps);
    ``backbone`` is the digest of the backbone's variables, so features of another fine-tuning run
    (or of the Kinetics weights) never pass for these.
    """
    data, backbone = config.data, config.backbone
    random_frames = data.sampling == "random" or data.shuffle_timesteps
    return {
        **{key: data[key] for key in DATA_SETTINGS},
        "sampling_seed": config.seed if random_frames else None,
        **{key: backbone[key] for key in BACKBONE_SETTINGS},
        "backbone": backbone_digest,
    }


def check_store_for_config(store, meta: dict, config) -> None:
    """A RajaxError naming every setting in which the store's features differ from ``config``'s.

    The backbone itself is not compared here (the head does not load it); stage 2 checked it when
    the features were written, and ``rajax predict`` checks it against the backbone it runs.
    """
    wanted = feature_settings(config, meta.get("settings", {}).get("backbone"))
    from rajax.data.features import settings_differences

    differences = settings_differences(meta.get("settings", {}), wanted, [k for k in wanted if k != "backbone"])
    if meta.get("class_names") != list(config.classes):
        differences.append(f"class_names: {meta.get('class_names')} (store) vs {list(config.classes)}")
    if differences:
        raise RajaxError(f"{store}: the stored features were made with other settings than this config ("
                         + "; ".join(differences) + "); extract them again or fix the config")


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


def _pending_videos(source, done: set[str]):
    """The videos of a split not yet in the store (only filtered on a single host)."""
    if not done or jax.process_count() > 1:
        return source
    return source.without(done)


def region_features_fn(model, config):
    """The pmapped extraction step: ``(variables, frames [B, N, F, F, 3], video index [D, K],
    boxes [D, K, 3]) -> features [D, K, T', C]``.

    Every device receives the batch's frames (decoded once per video on the host) and computes the
    K (video, region) pairs it is given, one region clip after the other: the regions are cut on
    the device, and the work spreads evenly over the devices whatever B and R.
    """
    size, mode = config.data.crop_size, config.backbone.extraction
    timestep_length = config.data.frames_per_timestep

    def per_device(variables, frames, video_index, boxes):
        return jax.lax.map(lambda pair: backbone_lib.region_features(
            model, variables, frames[pair[0]], pair[1], size, mode, timestep_length), (video_index, boxes),
            batch_size=config.extract_regions_per_call)

    return jax.pmap(per_device, axis_name=steps.AXIS, in_axes=(0, None, 0, 0))


def region_pairs(boxes: np.ndarray, devices: int) -> tuple[np.ndarray, np.ndarray]:
    """``boxes [B, R, 3]`` as ``(video index [D, K], boxes [D, K, 3])``: the B x R (video, region)
    pairs in order, padded with copies of the first to fill the D devices equally."""
    count = boxes.shape[0] * boxes.shape[1]
    index = np.repeat(np.arange(boxes.shape[0], dtype=np.int32), boxes.shape[1])
    flat = boxes.reshape(count, 3)
    padding = -count % devices
    index = np.concatenate([index, np.zeros(padding, np.int32)])
    flat = np.concatenate([flat, np.repeat(flat[:1], padding, axis=0)])
    return index.reshape(devices, -1), flat.reshape(devices, -1, 3)


def check_stored_splits(store, stored: dict[str, dict], videos, split: str) -> None:
    """A RajaxError when a video of ``split`` is in the store under another split or label: the
    dataset changed (a CSV edited, splits drawn otherwise), and heads trained on the store would
    silently learn from the old assignment. Checked for video files (TFDS splits are fixed)."""
    if videos.records is None or not stored:
        return
    moved = [f"{r.video_id} ({stored[r.video_id]['split']}, label {stored[r.video_id]['label']})"
             for r in videos.records if r.video_id in stored
             and (stored[r.video_id]["split"] != split or int(stored[r.video_id]["label"]) != r.label)]
    if moved:
        raise RajaxError(f"{store}: {len(moved)} video(s) of split {split!r} are stored under another split or "
                         f"label: {', '.join(moved[:5])}; the dataset changed since these features were "
                         "extracted: extract into a new features directory")


def extract(config, workdir: str | os.PathLike, splits=None, progress: bool = True) -> dict:
    """Extracts the features of ``splits`` (default: train, validation, test); returns counts.

    ``empty_splits`` lists the splits of which no video could be read (and none was stored before).
    """
    from rajax.data import pipeline
    from rajax.data.features import FeatureWriter, read_index

    is_main = jax.process_index() == 0
    model, variables = backbone_lib.load_backbone(config, workdir)
    regions = inputs.region_names(config)
    positions, channels = feature_shape(model, variables, config)
    store = layout.features_dir(config, workdir)
    settings = feature_settings(config, backbone_lib.variables_digest(variables))
    writer = FeatureWriter(store, regions, positions, channels, dtype=config.backbone.feature_dtype,
                           class_names=list(config.classes), settings=settings) if is_main else None
    if is_main:  # the store accepted this config: record it beside the features
        write_config_json(config, store / "config.json")
    features_fn = region_features_fn(model, config)
    replicated = steps.replicate(backbone_lib.feature_variables(variables))
    devices = jax.local_device_count()
    videos_per_batch = config.extract_batch_size  # per host; their B x R regions are spread over devices
    splits = splits or [s for s in (config.data.train_split, config.data.validation_split,
                                    config.data.test_split) if s]
    summary = {"written": 0, "skipped_videos": 0, "already_done": 0, "store": str(store), "empty_splits": []}
    stored = {entry["video_id"]: entry for entry in read_index(store)} if store.exists() else {}
    for split in splits:
        videos = inputs.split_videos(config, split)
        check_stored_splits(store, stored, videos, split)
        done = {video_id for video_id, entry in stored.items() if entry["split"] == split}
        summary["already_done"] += len(done)
        videos = _pending_videos(videos, done)
        count = videos.count
        if count <= 0:
            continue
        skipped: list[str] = []
        dataset = pipeline.evaluation_dataset(videos, batch_size=videos_per_batch, regions=regions,
                                              skipped=skipped, **inputs.video_options(config))
        total = pipeline.evaluation_steps(count, videos_per_batch, jax.process_count())
        bar = Progress(total, f"extract {split}", "batch", enabled=progress and is_main)
        for batch in dataset.as_numpy_iterator():
            bar.update()
            frames = batch["frames"]  # [B, N, F, F, 3] uint8, each video decoded once
            video_index, boxes = region_pairs(batch["boxes"], devices)
            out = features_fn(replicated, frames, video_index, boxes)
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
        bar.close()
        summary["skipped_videos"] += len(skipped)
        if len(skipped) >= count and not done:
            summary["empty_splits"].append(split)
        if skipped and is_main:
            print(f"{split}: {len(skipped)} video(s) could not be read and were skipped:")
            for message in skipped:
                print(f"  {message}")
    return summary
