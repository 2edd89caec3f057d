"""A config's videos as the stages read them: each split as a ``VideoSource``, the regions, and the
options and batches of the video pipelines (``rajax.data.pipeline``).

Videos come from a TFDS dataset (``config.data.dataset``, builders in ``rajax.datasets``), from a
CSV of ``path,label[,split[,group]]`` rows (``config.data.csv``) or from a folder of class folders
(``config.data.folder``); actor squares from the dataset or from ``config.data.actors_file``
(``rajax detect-actors`` output). Videos of a CSV or folder without a split get one drawn from the
seed, whole groups at a time (``file_records``, ``rajax.data.splits``): every stage, each its own
command, draws the same.
"""

from __future__ import annotations

import sys

from rajax.data.sources import VideoSource
from rajax.errors import RajaxError

_warned_groups: set[str] = set()  # groups across splits already reported by this process

# What the video pipelines hand the steps: decoded frames and region boxes (rajax.data.pipeline).
VIDEO_KEYS = ("frames", "boxes", "label", "mask")


def region_names(config) -> tuple[str, ...]:
    from rajax.data.regions import resolve_regions

    try:
        return resolve_regions(tuple(config.data.regions))
    except ValueError as error:
        raise RajaxError(f"config.data.regions: {error}") from error


def split_videos(config, split: str) -> VideoSource:
    """The videos of a split: VideoRecords (``config.data.csv`` or ``.folder``) or TFDS video elements."""
    if config.data.csv or config.data.folder:
        return _file_split(config, split)
    return _tfds_split(config.data, split)


def draws_splits(data) -> bool:
    """Whether the config draws the splits of videos that have none."""
    return bool(data.test_groups or data.test_fraction > 0 or data.validation_fraction > 0)


def file_records(config) -> list:
    """Every video of ``config.data.csv`` or ``config.data.folder`` with its group and its split
    (drawn for the videos that have none when the config says how), in the source's order.

    A group whose videos lie in several given splits is reported once per process (a warning: the
    accuracy on such a split is inflated, but the user chose it).
    """
    from rajax.data import records as records_lib
    from rajax.data import splits as splits_lib

    data = config.data
    # Every configured split is named, so that a row of an unknown split is an error, not ignored.
    names = [name for name in (data.train_split, data.validation_split, data.test_split) if name]
    draw = draws_splits(data)
    if data.csv:
        records, _ = records_lib.records_from_csv(data.csv, class_names=list(config.classes), splits=names,
                                                  unsplit_ok=draw)
    else:
        records, _ = records_lib.records_from_folder(data.folder, list(config.classes))
        if not draw:
            raise RajaxError(f"{data.folder}: the videos of a folder have no split; say how to draw them "
                             "(config.data.test_groups or data.test_fraction, and data.validation_fraction)")
    records = splits_lib.with_groups(records, data.group_pattern)
    if draw:
        records = splits_lib.draw_splits(
            records, seed=config.seed, test_groups=data.test_groups, test_fraction=data.test_fraction,
            validation_fraction=data.validation_fraction, train_split=data.train_split,
            validation_split=data.validation_split, test_split=data.test_split)
    for group, split_names in splits_lib.groups_across_splits(records).items():
        if group not in _warned_groups:
            _warned_groups.add(group)
            print(f"rajax: warning: group {group!r} has videos in splits {', '.join(split_names)}: its videos "
                  "look alike, so accuracy on those splits is inflated", file=sys.stderr)
    return records


def _file_split(config, split: str) -> VideoSource:
    from rajax.data import records as records_lib

    data = config.data
    records = records_lib.split_records(file_records(config), split)
    if data.actors_file:
        records, _ = records_lib.attach_actor_squares(records, data.actors_file)
    if not records:
        raise RajaxError(f"{data.csv or data.folder}: no videos in split {split!r}")
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
