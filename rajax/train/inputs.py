"""A config's videos as the stages read them: each split as a ``VideoSource``, the regions, and the
options and batches of the video pipelines (``rajax.data.pipeline``).

Videos come from a TFDS dataset (``config.data.dataset``, builders in ``rajax.datasets``) or from a
CSV of ``path,label,split`` rows (``config.data.csv``); actor squares from the dataset or from
``config.data.actors_file`` (``rajax detect-actors`` output).
"""

from __future__ import annotations

from rajax.data.sources import VideoSource
from rajax.errors import RajaxError

# What the video pipelines hand the steps: decoded frames and region boxes (rajax.data.pipeline).
VIDEO_KEYS = ("frames", "boxes", "label", "mask")


def region_names(config) -> tuple[str, ...]:
    from rajax.data.regions import resolve_regions

    try:
        return resolve_regions(tuple(config.data.regions))
    except ValueError as error:
        raise RajaxError(f"config.data.regions: {error}") from error


def split_videos(config, split: str) -> VideoSource:
    """The videos of a split: VideoRecords (``config.data.csv``) or TFDS video elements."""
    if config.data.csv:
        return _csv_split(config, split)
    return _tfds_split(config.data, split)


def _csv_split(config, split: str) -> VideoSource:
    from rajax.data import records as records_lib

    data = config.data
    # Every configured split is named, so that a row of an unknown split is an error, not ignored.
    splits = [name for name in (data.train_split, data.validation_split, data.test_split) if name]
    records, _ = records_lib.records_from_csv(data.csv, class_names=list(config.classes), splits=splits)
    records = records_lib.split_records(records, split)
    if data.actors_file:
        records, _ = records_lib.attach_actor_squares(records, data.actors_file)
    if not records:
        raise RajaxError(f"{data.csv}: no videos in split {split!r}")
    return VideoSource.from_records(records)


def _tfds_split(data, split: str) -> VideoSource:
    import tensorflow_datasets as tfds

    import rajax.datasets  # noqa: F401  (registers the breakfast and video_folder builders)
    from rajax.data.sources import tfds_videos

    builder = tfds.builder(data.dataset, data_dir=data.data_dir or None)
    if split not in builder.info.splits:
        raise RajaxError(f"dataset {data.dataset!r} has no split {split!r} "
                         f"(it has {', '.join(builder.info.splits)})")
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    return VideoSource.from_dataset(tfds_videos(dataset), builder.info.splits[split].num_examples)


def video_options(config) -> dict:
    """The keyword arguments of ``pipeline.training_dataset``/``evaluation_dataset`` that the config sets."""
    data = config.data
    return dict(num_timesteps=data.num_timesteps, timestep_length=data.frames_per_timestep,
                sampling_mode=data.sampling, shuffled_timesteps=data.shuffle_timesteps,
                seed=config.seed, frame_side=data.frame_side, decode_processes=data.decode_processes,
                shard="auto")


def video_batches(dataset, skip: int = 0):
    """The batches of a video pipeline as numpy, ``VIDEO_KEYS`` only, from batch ``skip`` on."""
    for batch in dataset.skip(skip).as_numpy_iterator():
        yield {key: batch[key] for key in VIDEO_KEYS}
