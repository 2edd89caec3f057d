"""TFDS builder ``video_folder``: your own videos, one subfolder per class or a CSV.

Put the videos in ``manual_dir`` in one of three layouts (checked in this order):

1. ``videos.csv`` with rows ``path,label[,split]`` (paths relative to ``manual_dir``; split
   defaults to ``train``);
2. ``<split>/<class>/**/<video>`` with split folders among ``train``, ``validation``, ``test``;
3. ``<class>/**/<video>``: everything in ``train``.

Labels are the sorted distinct class names. Actor squares from ``rajax detect-actors`` are attached
when ``manual_dir/actors.jsonl`` exists, or from the file given as ``actors_file=``.

What is stored, and why: every frame, as a JPEG of its central square (quality 90), at the
square's own size up to ``MAX_SQUARE_SIDE`` = 256 pixels (larger squares are shrunk, antialiased;
Breakfast's 240x240 squares are kept as they are). Reasons, measured by
``tools/benchmark_pipeline.py``:

- throughput: a sample needs 512 of a video's frames. From JPEG, the pipeline decodes just those
  512 in the TensorFlow graph (parallel, outside Python's GIL). From the encoded video, FFmpeg
  must decode every frame up to the last one sampled and PyAV converts 512 of them to RGB in a
  Python call. On a Breakfast-like clip (1,800 frames, 320x240, MPEG-4) one thread decodes a
  512-frame sample in 0.21 s from JPEG against 0.85 s from the video, and the training pipeline
  delivers 1.5 against 0.8 clips/s on a busy 2-core machine. At around a CPU-second per clip the
  input pipeline, more than the accelerator, is the likely limit of fine-tuning, so this factor
  is worth its disk space;
- freedom: all frames are kept, so every sampling (uniform, random, equally spaced, any T and L)
  stays possible from one prepared dataset, where pre-sampled timesteps (3.5x smaller) would fix
  T, L and the sampling mode at preparation time;
- cost: about 3.8 KB per 240x240 frame, 6.9 MB for a 2-minute video (16x that clip's MPEG-4),
  some 15 GB for Breakfast's ~4 million frames: affordable on a local disk. Only the central
  square is stored because it is all the model ever sees.

Examples:
    ``frames`` (JPEG bytes, one per frame), ``video_id``, ``file_name`` (relative to manual_dir),
    ``label``, ``num_frames``, ``fps``, ``height`` and ``width`` (of the original frames),
    ``square_side`` (of the stored frames), ``actor_square`` ([x0, y0, side] in stored-square
    pixels: scaled with the frames), ``has_actor``.
    ``rajax.data.sources.tfds_videos`` turns them into pipeline elements.

Unreadable videos are reported, counted and left out; the build goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from rajax.data import video
from rajax.data.records import VideoRecord, attach_actor_squares, records_from_csv, records_from_folder
from rajax.errors import RajaxError, VideoError

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "validation", "test")
ACTORS_FILE = "actors.jsonl"
CSV_FILE = "videos.csv"


MAX_SQUARE_SIDE = 256
JPEG_QUALITY = 90
_CHUNK = 64  # frames resized and encoded together


def video_features(extra: dict | None = None) -> dict:
    """The features every rajax video dataset stores (plus ``extra``), label names set later."""
    return {
        "frames": tfds.features.Tensor(shape=(None,), dtype=np.object_),
        "video_id": tfds.features.Text(),
        "file_name": tfds.features.Text(),
        "label": tfds.features.ClassLabel(),
        "num_frames": tfds.features.Scalar(dtype=np.int32),
        "fps": tfds.features.Scalar(dtype=np.float32),
        "height": tfds.features.Scalar(dtype=np.int32),
        "width": tfds.features.Scalar(dtype=np.int32),
        "square_side": tfds.features.Scalar(dtype=np.int32),
        "actor_square": tfds.features.Tensor(shape=(3,), dtype=np.int32),
        "has_actor": tfds.features.Scalar(dtype=np.bool_),
        **(extra or {}),
    }


def encode_square_frames(path: str | os.PathLike, max_side: int = MAX_SQUARE_SIDE) -> tuple[list[bytes], int]:
    """JPEGs of the central square of every frame of a video (shrunk to ``max_side`` if larger),
    and the stored side. Raises VideoError for an unreadable video."""
    import tensorflow as tf

    from rajax.data.regions import central_square_crop, resize_square_tf

    encoded: list[bytes] = []
    side = None
    chunk: list[np.ndarray] = []

    def flush():
        nonlocal side
        squares = np.stack(chunk)
        if squares.shape[1] > max_side:
            squares = tf.cast(tf.floor(resize_square_tf(squares, max_side) + 0.5), tf.uint8)
        side = int(squares.shape[1])
        encoded.extend(tf.io.encode_jpeg(f, quality=JPEG_QUALITY).numpy() for f in tf.unstack(squares))
        chunk.clear()

    for _, frame in video.iter_frames(path):
        chunk.append(central_square_crop(frame))
        if len(chunk) == _CHUNK:
            flush()
    if chunk:
        flush()
    return encoded, side


def resolve_actors_file(manual_dir: Path, actors_file: str | os.PathLike | None) -> Path | None:
    if actors_file is not None:
        if not Path(actors_file).is_file():
            raise RajaxError(f"{actors_file}: no such actor-record file")
        return Path(actors_file)
    default = manual_dir / ACTORS_FILE
    return default if default.is_file() else None


def with_actor_squares(records: list[VideoRecord], actors_file: Path | None) -> list[VideoRecord]:
    if actors_file is None:
        return records
    records, matched = attach_actor_squares(records, actors_file)
    logger.info("actor squares from %s: %d of %d videos matched", actors_file, matched, len(records))
    print(f"actor squares from {actors_file}: {matched} of {len(records)} videos matched")
    return records


def video_examples(records: Iterable[VideoRecord], manual_dir: Path, extra_fields=None, skipped=None):
    """Yields ``(key, example)`` for each readable video; unreadable ones go to ``skipped``."""
    from rajax.data.regions import actor_box

    for record in records:
        path = Path(record.path)
        try:
            info = video.probe(path)
            frames, side = encode_square_frames(path)
        except (VideoError, OSError) as error:
            logger.warning("skipping %s", error)
            print(f"skipping unreadable video: {error}")
            if skipped is not None:
                skipped.append(str(error))
            continue
        try:
            file_name = path.resolve().relative_to(manual_dir.resolve()).as_posix()
        except ValueError:
            file_name = path.name
        actor = record.actor_square
        if actor is not None:
            # Detections are in original square pixels; the stored square may be smaller.
            scale = side / min(info.height, info.width)
            actor = actor_box(side, [v * scale for v in actor])
        example = {
            "frames": frames,
            "video_id": record.video_id,
            "file_name": file_name,
            "label": record.label,
            "num_frames": len(frames),
            "fps": info.fps,
            "height": info.height,
            "width": info.width,
            "square_side": side,
            "actor_square": list(actor) if actor is not None else [0, 0, 0],
            "has_actor": actor is not None,
            **(extra_fields(record) if extra_fields else {}),
        }
        yield record.video_id, example


def _folder_records(manual_dir: Path) -> tuple[list[VideoRecord], list[str]]:
    csv_path = manual_dir / CSV_FILE
    if csv_path.is_file():
        return records_from_csv(csv_path, splits=SPLIT_FOLDERS, default_split="train")
    subfolders = sorted(p.name for p in manual_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subfolders and set(subfolders) <= set(SPLIT_FOLDERS):
        class_names = sorted(
            {c.name for s in subfolders for c in (manual_dir / s).iterdir() if c.is_dir() and not c.name.startswith(".")}
        )
        records = []
        for split in subfolders:
            split_records, _ = records_from_folder(manual_dir / split, class_names, split=split)
            records += split_records
        return records, class_names
    return records_from_folder(manual_dir, split="train")


class EncodedVideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """What rajax's video builders share: the ``actors_file`` option, the list of videos left out
    as unreadable (``skipped``), and examples of ``video_features`` plus ``extra_features()``."""

    # TFDS 4.9.10 derives this path through `importlib_resources`, which it only installs on
    # Python < 3.9 (tensorflow/datasets#11212): give it directly (every builder lives here).
    code_path = epath.Path(__file__)

    DESCRIPTION = ""
    HOMEPAGE = None

    def __init__(self, *, actors_file: str | os.PathLike | None = None, **kwargs):
        self._actors_file = actors_file
        self.skipped: list[str] = []
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(video_features(self.extra_features())),
            homepage=self.HOMEPAGE,
        )

    def extra_features(self) -> dict:
        """Features of this dataset beyond ``video_features`` (new objects on every call)."""
        return {}

    def with_actors(self, records: list[VideoRecord], manual_dir: Path) -> list[VideoRecord]:
        """``records`` with the actor squares of ``actors_file`` or ``manual_dir/actors.jsonl``."""
        return with_actor_squares(records, resolve_actors_file(manual_dir, self._actors_file))


class VideoFolder(EncodedVideoBuilder):
    """Videos from a folder with one subfolder per class, or from a CSV of path,label[,split]."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Encoded videos with frame count, size, label and actor square."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
    DESCRIPTION = "Videos of a user's folder or CSV, stored encoded, for rajax."

    def _split_generators(self, dl_manager):
        manual_dir = Path(dl_manager.manual_dir)
        if not manual_dir.is_dir():
            raise RajaxError(f"{manual_dir}: manual_dir not found; put the videos there")
        records, class_names = _folder_records(manual_dir)
        self.info.features["label"].names = class_names
        records = self.with_actors(records, manual_dir)
        splits = {}
        for split in sorted({r.split for r in records}):
            split_records = [r for r in records if r.split == split]
            splits[split] = self._generate_examples(split_records, manual_dir)
        return splits

    def _generate_examples(self, records, manual_dir):
        yield from video_examples(records, manual_dir, skipped=self.skipped)
