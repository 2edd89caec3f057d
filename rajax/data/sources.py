"""Where the pipelines' videos come from: :class:`VideoSource`, and the per-video elements it gives.

A source is the videos of one split, either a list of :class:`~rajax.data.records.VideoRecord`
(video files, from a CSV or a folder) or a TFDS ``breakfast``/``video_folder`` split turned into
per-video elements by :func:`tfds_videos`, together with how many videos it holds (a filtered TFDS
split no longer knows its length). Callers ask a source for what they need (how many, this host's
share, the same without some videos, a shuffled epoch) and never ask which kind it is.

Per-video elements, from either kind: "video_id", "path" (the file, or its name), "label",
"actor_square" (int32 [3], square-frame pixels), "has_actor", "num_frames" (0: unknown, probe the
file) and "valid" (False: padding, never decoded). A TFDS source also gives "jpeg_frames" (string
[num_frames], the JPEG of every frame's central square) and "square_side" (the stored square's side).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from rajax.data.records import VideoRecord


def _record_columns(records: Sequence[VideoRecord]) -> dict[str, np.ndarray]:
    return {
        "video_id": np.array([r.video_id for r in records], dtype=object),
        "path": np.array([str(r.path) for r in records], dtype=object),
        "label": np.array([r.label for r in records], dtype=np.int32),
        "actor_square": np.array(
            [r.actor_square if r.actor_square is not None else (0, 0, 0) for r in records], dtype=np.int32
        ).reshape(-1, 3),
        "has_actor": np.array([r.actor_square is not None for r in records], dtype=bool),
        "num_frames": np.array([r.num_frames or 0 for r in records], dtype=np.int32),
        "valid": np.ones(len(records), dtype=bool),
    }


def records_dataset(records: Sequence[VideoRecord]):
    """The per-video elements of a list of records (video files), in order."""
    import tensorflow as tf

    columns = _record_columns(records)
    if not records:  # nothing to infer the string columns' dtype from
        return tf.data.Dataset.from_tensor_slices(
            {k: tf.constant(v, tf.string if v.dtype == object else None) for k, v in columns.items()}
        )
    return tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in columns.items()})


def tfds_videos(dataset):
    """The per-video elements of a rajax TFDS split (``breakfast``, ``video_folder``)."""
    import tensorflow as tf

    def convert(example):
        return {
            "video_id": example["video_id"],
            "path": example["file_name"],
            "label": tf.cast(example["label"], tf.int32),
            "actor_square": tf.cast(example["actor_square"], tf.int32),
            "has_actor": example["has_actor"],
            "num_frames": tf.cast(example["num_frames"], tf.int32),
            "valid": tf.constant(True),
            "jpeg_frames": example["frames"],
            "square_side": tf.cast(example["square_side"], tf.int32),
        }

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def _shuffle_seed(seed: int, epoch: int) -> int:
    # One tf.data seed per (seed, epoch): every epoch another order, the same on every run.
    return seed * 1_000_003 + epoch


@dataclasses.dataclass(frozen=True)
class VideoSource:
    """The videos of a split: ``records`` (video files) or ``dataset`` (TFDS elements), and ``count``.

    Exactly one of ``records`` and ``dataset`` is set. Build one with :meth:`from_records`,
    :meth:`from_dataset` or :meth:`of`.
    """

    count: int
    records: tuple[VideoRecord, ...] | None = None
    dataset: Any = None  # a tf.data.Dataset of per-video elements (tfds_videos)

    @classmethod
    def from_records(cls, records: Iterable[VideoRecord]) -> VideoSource:
        records = tuple(records)
        return cls(count=len(records), records=records)

    @classmethod
    def from_dataset(cls, dataset, count: int | None = None) -> VideoSource:
        """Per-video elements; ``count`` is required when the dataset's length is unknown."""
        if count is None:
            count = int(dataset.cardinality())
            if count < 0:
                raise ValueError("the dataset's length is unknown: pass num_videos")
        return cls(count=count, dataset=dataset)

    @classmethod
    def of(cls, videos, count: int | None = None) -> VideoSource:
        """``videos`` as a source: a source already, a dataset of elements, or records.

        ``count`` only counts for a dataset: a list of records is its own length.
        """
        if isinstance(videos, VideoSource):
            return videos
        if hasattr(videos, "cardinality"):
            return cls.from_dataset(videos, count)
        return cls.from_records(videos)

    def without(self, video_ids: set[str]) -> VideoSource:
        """The same videos less those of ``video_ids`` (for a dataset: all of which it holds)."""
        if self.records is not None:
            return VideoSource.from_records(r for r in self.records if r.video_id not in video_ids)
        import tensorflow as tf

        done = tf.constant(sorted(video_ids))
        remaining = self.dataset.filter(lambda e: tf.logical_not(tf.reduce_any(tf.equal(e["video_id"], done))))
        return VideoSource(count=self.count - len(video_ids), dataset=remaining)

    def shuffled(self, seed: int, epoch: int, take: int, buffer: int = 256) -> VideoSource:
        """``take`` of the videos in an order drawn from ``(seed, epoch)``: a permutation of the
        records, or a dataset shuffled with a buffer of ``buffer`` elements."""
        if self.records is not None:
            order = np.random.default_rng([seed, epoch]).permutation(self.count)[:take]
            return VideoSource.from_records(self.records[i] for i in order)
        dataset = self.dataset.shuffle(buffer, seed=_shuffle_seed(seed, epoch), reshuffle_each_iteration=False)
        return VideoSource(count=take, dataset=dataset.take(take))

    def host_elements(self, process_index: int, process_count: int):
        """This host's share of the videos (every ``process_count``-th), in order, as elements."""
        if self.records is not None:
            return records_dataset(self.records[process_index::process_count])
        return self.dataset.shard(process_count, process_index)

    def epoch_elements(self, seed: int, epoch: int, process_index: int, process_count: int, buffer: int):
        """This host's share of an epoch of training, as elements: the records permuted by
        ``(seed, epoch)`` then dealt to the hosts; a dataset dealt, then shuffled with a buffer."""
        if self.records is not None:
            order = np.random.default_rng([seed, epoch]).permutation(self.count)
            return records_dataset([self.records[i] for i in order[process_index::process_count]])
        shard = self.dataset.shard(process_count, process_index)
        return shard.shuffle(buffer, seed=_shuffle_seed(seed, epoch), reshuffle_each_iteration=False)
