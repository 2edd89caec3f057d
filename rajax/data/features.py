"""The feature store: per-region I3D features written by extraction, read by head training.

On disk, a directory::

    store/
      meta.json        {"format": "rajax-features", "version": 2, "region_names": [...],
                        "num_positions": T', "channels": C, "dtype": "float16",
                        "class_names": [...] or null, "settings": {...}}
      index.jsonl      one line per stored video, in the order written:
                        {"video_id": ..., "label": int, "split": str or null, "file": "features/....npy"}
      features/<name>.npy   the features of one video: [R, T', C] in meta's dtype, regions in
                            meta's region order

Crash safety and resuming: a video's ``.npy`` is written to a temporary file and renamed into
place, then its index line is appended with one ``write`` and ``fsync``. A video is "done" when its
index line is there, so an interrupted extraction loses at most the video in progress; rerunning
skips done videos (``video_id in writer``). A last index line cut short by a crash is ignored and
cut off when the store is opened for writing again. ``meta.json`` is itself written atomically and
is checked on reopening: a store is never extended with features of another shape, and never
reused for features computed another way. ``settings`` records everything else that changes a
video's features (sampling, crop size, extraction mode, the backbone's digest ...: see
``rajax.train.extraction.feature_settings``); reopening with other settings is an error naming
each setting that differs, and so is training a head on a store made for another config.

float16 is the default dtype: it halves the store (1.4 MB per Breakfast video of 11 x 63 x 1024)
and the heads train in float32 anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rajax.errors import RajaxError
from rajax.files import atomic_write, atomic_write_text

FORMAT = "rajax-features"
VERSION = 2
META_FILE = "meta.json"
INDEX_FILE = "index.jsonl"
FEATURES_DIR = "features"
_PAD_ID = "<padding>"
# NumPy parses a .npy header with ast.literal_eval, and CPython 3.11's AST constructor is not safe
# when threads (tf.data's readers) parse at once: it raises "SystemError: AST constructor recursion
# depth mismatch" (python/cpython#106905). Headers are parsed one at a time; the data is read freely.
_NPY_HEADER_LOCK = threading.Lock()


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """A plain (non-object) ``.npy`` array, safe to call from many threads at once."""
    with open(path, "rb") as file:
        with _NPY_HEADER_LOCK:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
        if dtype.hasobject:
            raise RajaxError(f"{path}: holds Python objects, not numbers; refusing to read it")
        count = math.prod(shape)
        data = np.fromfile(file, dtype=dtype, count=count)
    if data.size != count:
        raise RajaxError(f"{path}: cut short ({data.size} of {count} values)")
    return data.reshape(shape, order="F" if fortran_order else "C")


def feature_file_name(video_id: str) -> str:
    """A file name safe on every file system, unique per id (readable part + short hash)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id).strip("._")[:80] or "video"
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}.npy"


def read_meta(store: str | os.PathLike) -> dict:
    path = Path(store) / META_FILE
    if not path.is_file():
        raise RajaxError(f"{store}: not a feature store (no {META_FILE})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise RajaxError(f"{path}: unreadable ({error})") from None
    if meta.get("format") != FORMAT:
        raise RajaxError(f"{path}: not a rajax feature store (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise RajaxError(f"{path}: feature store version {meta.get('version')}, this rajax reads {VERSION}; "
                         "extract the features again into a new directory")
    return meta


def settings_differences(stored: dict, wanted: dict, keys=None) -> list[str]:
    """``'key: stored value (store) vs wanted value'`` for every setting (of ``keys``) that differs."""
    keys = sorted(set(stored) | set(wanted)) if keys is None else keys
    return [f"{key}: {stored.get(key)!r} (store) vs {wanted.get(key)!r}" for key in keys
            if stored.get(key) != wanted.get(key)]


def _parse_index(path: Path) -> tuple[list[dict], int]:
    """Entries of index.jsonl and the byte length of its intact part."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    entries, intact = [], 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        if line.strip():
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or "video_id" not in entry or "file" not in entry:
                    raise ValueError("not an index entry")
            except ValueError:
                if last:
                    break  # cut short by an interruption: that video is not done
                raise RajaxError(f"{path}: line {number} is not a feature index entry") from None
            entries.append(entry)
        intact += len(line) + (0 if last else 1)
    return entries, intact


def read_index(store: str | os.PathLike, split: str | None = None) -> list[dict]:
    """The index entries (video_id, label, split, file), optionally of one split; last entry of an
    id wins."""
    entries, _ = _parse_index(Path(store) / INDEX_FILE)
    by_id = {entry["video_id"]: entry for entry in entries}
    return [e for e in by_id.values() if split is None or e.get("split") == split]


def load_features(store: str | os.PathLike, entry: dict | str) -> np.ndarray:
    """The ``[R, T', C]`` features of one index entry (or video id)."""
    if isinstance(entry, str):
        matches = [e for e in read_index(store) if e["video_id"] == entry]
        if not matches:
            raise RajaxError(f"{store}: no features for video {entry!r}")
        entry = matches[0]
    return read_npy(Path(store) / entry["file"])


class FeatureWriter:
    """Appends per-video features to a store, creating it or resuming it.

    >>> writer = FeatureWriter(dir, region_names, num_positions=63, channels=1024)
    >>> if video_id not in writer: writer.write(video_id, label, split, features)
    """

    def __init__(
        self,
        store: str | os.PathLike,
        region_names: Sequence[str],
        num_positions: int,
        channels: int,
        dtype: str = "float16",
        class_names: Sequence[str] | None = None,
        settings: dict | None = None,
    ):
        self.store = Path(store)
        if self.store.exists() and not self.store.is_dir():
            raise RajaxError(f"{self.store}: exists and is not a directory")
        if np.dtype(dtype).kind != "f":
            raise ValueError(f"dtype must be a float type, got {dtype}")
        self.meta = {
            "format": FORMAT,
            "version": VERSION,
            "region_names": list(region_names),
            "num_positions": int(num_positions),
            "channels": int(channels),
            "dtype": np.dtype(dtype).name,
            "class_names": list(class_names) if class_names is not None else None,
            "settings": dict(settings or {}),
        }
        (self.store / FEATURES_DIR).mkdir(parents=True, exist_ok=True)
        meta_path = self.store / META_FILE
        if meta_path.exists():
            existing = read_meta(self.store)
            differences = settings_differences(
                existing, self.meta, ("region_names", "num_positions", "channels", "dtype", "class_names"))
            differences += settings_differences(existing.get("settings", {}), self.meta["settings"])
            if differences:
                raise RajaxError(f"{self.store}: the store holds features made another way ("
                                 + "; ".join(differences) + "); use another directory or delete it")
            self.meta = existing
        else:
            text = json.dumps(self.meta, indent=2) + "\n"
            atomic_write_text(meta_path, text)
        index_path = self.store / INDEX_FILE
        entries, intact = _parse_index(index_path)
        if index_path.exists() and intact < index_path.stat().st_size:
            with open(index_path, "r+b") as handle:  # drop a line cut short by a crash
                handle.truncate(intact)
        if index_path.exists() and intact and not index_path.read_bytes().endswith(b"\n"):
            with open(index_path, "ab") as handle:
                handle.write(b"\n")
        self._done = {entry["video_id"] for entry in entries}

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.meta["region_names"]), self.meta["num_positions"], self.meta["channels"]

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._done

    def __len__(self) -> int:
        return len(self._done)

    def write(self, video_id: str, label: int, split: str | None, features: np.ndarray) -> None:
        """Stores ``features [R, T', C]`` of one video (overwrites an earlier write of the same id)."""
        features = np.asarray(features)
        if features.shape != self.shape:
            raise ValueError(f"features of {video_id!r} have shape {features.shape}, the store {self.shape}")
        if not np.isfinite(features).all():  # a diverged backbone: never stored as features
            raise RajaxError(f"{self.store}: the features of {video_id!r} contain NaN or infinity; the "
                             "backbone's weights are broken (a diverged fine-tuning?)")
        relative = f"{FEATURES_DIR}/{feature_file_name(video_id)}"
        stored = features.astype(self.meta["dtype"])
        atomic_write(self.store / relative, lambda handle: np.save(handle, stored, allow_pickle=False))
        line = json.dumps({"video_id": video_id, "label": int(label), "split": split, "file": relative})
        with open(self.store / INDEX_FILE, "ab") as handle:
            handle.write((line + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        self._done.add(video_id)


def split_view(store: str | os.PathLike, splits: dict[str, str], target: str | os.PathLike) -> Path:
    """A store at ``target`` holding the videos of ``store`` named in ``splits`` (video id -> split),
    under those splits, without copying a feature: its files are hard links (symbolic links across
    file systems). For cross-validation: each fold is a view with its own train and test splits.
    """
    store, target = Path(store), Path(target)
    meta = read_meta(store)
    by_id = {entry["video_id"]: entry for entry in read_index(store)}
    missing = sorted(set(splits) - set(by_id))
    if missing:
        raise RajaxError(f"{store}: no features for {len(missing)} video(s) of the view, e.g. {missing[0]!r}")
    if target.exists():
        import shutil

        shutil.rmtree(target)
    (target / FEATURES_DIR).mkdir(parents=True)
    lines = []
    for video_id, split in splits.items():
        entry = by_id[video_id]
        source, link = store / entry["file"], target / entry["file"]
        try:
            os.link(source, link)
        except OSError:
            os.symlink(source.resolve(), link)
        lines.append(json.dumps({**entry, "split": split}))
    atomic_write_text(target / INDEX_FILE, "".join(line + "\n" for line in lines))
    atomic_write_text(target / META_FILE, json.dumps(meta, indent=2) + "\n")
    return target


@dataclasses.dataclass(frozen=True)
class _BatchPlan:
    """Which stored videos this host batches for one pass over a split, in order."""

    entries: list[dict]  # this host's videos, in batch order
    num_pad: int  # padding rows completing the last batch (mask 0)
    region_index: np.ndarray  # positions of the selected regions among the stored ones
    shape: tuple[int, int, int]  # [R, T', C] of one video's selected features


def _plan(store, *, batch_size, split, regions, shuffle, seed, epoch, drop_remainder, shard) -> _BatchPlan:
    from rajax.data import regions as regions_lib
    from rajax.data.pipeline import resolve_shard

    meta = read_meta(store)
    stored = list(meta["region_names"])
    if regions is None:
        selected = stored
    else:
        selected = list(regions_lib.resolve_regions(regions))
        missing = [name for name in selected if name not in stored]
        if missing:
            raise RajaxError(f"{store}: regions {missing} are not stored (stored: {', '.join(stored)})")
    region_index = np.array([stored.index(name) for name in selected], np.int64)
    entries = read_index(store, split)
    if not entries:
        raise RajaxError(f"{store}: no stored features" + (f" for split {split!r}" if split else ""))
    if shuffle:
        entries = [entries[i] for i in np.random.default_rng([seed, epoch]).permutation(len(entries))]
    process_index, process_count = resolve_shard(shard)
    if drop_remainder:
        steps = (len(entries) // process_count) // batch_size
        if steps == 0:
            raise ValueError(f"{len(entries)} videos give no full batch of {batch_size} per host")
    else:
        steps = math.ceil(math.ceil(len(entries) / process_count) / batch_size)
    mine = entries[process_index::process_count][: steps * batch_size]
    shape = (len(selected), meta["num_positions"], meta["channels"])
    return _BatchPlan(mine, steps * batch_size - len(mine), region_index, shape)


def features_dataset(
    store: str | os.PathLike,
    *,
    batch_size: int,
    split: str | None = None,
    regions: Sequence[str] | int | str | None = None,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = False,
    shard: tuple[int, int] | str | None = "auto",
    dtype: str = "float32",
    deterministic: bool = True,
    prefetch: int = 2,
):
    """Batches ``{"features": [B, R, T', C], "label": int32 [B], "mask": float32 [B],
    "video_id": string [B]}`` from a store, as a tf.data dataset reading the files as it goes.

    ``regions`` selects stored regions by name (default: all stored, in stored order). Shuffling is
    a permutation drawn from ``(seed, epoch)``. Without ``drop_remainder`` the last batch is padded
    (``mask`` 0, zero features, ``video_id`` ``"<padding>"``) and every host yields the same number
    of batches, so each video counts exactly once; with it, training steps are all full batches.
    :class:`FeatureSplit` gives the same batches from memory.
    """
    import tensorflow as tf

    plan = _plan(store, batch_size=batch_size, split=split, regions=regions, shuffle=shuffle, seed=seed,
                 epoch=epoch, drop_remainder=drop_remainder, shard=shard)
    mine, num_pad, shape = plan.entries, plan.num_pad, plan.shape
    root = Path(store)

    def load(file):
        array = read_npy(root / file.decode("utf-8"))
        return np.ascontiguousarray(array[plan.region_index], dtype=np.float32)

    files = [e["file"] for e in mine] + [""] * num_pad
    columns = {
        "file": tf.constant(files, tf.string),
        "label": tf.constant([int(e["label"]) for e in mine] + [0] * num_pad, tf.int32),
        "video_id": tf.constant([e["video_id"] for e in mine] + [_PAD_ID] * num_pad, tf.string),
        "mask": tf.constant([1.0] * len(mine) + [0.0] * num_pad, tf.float32),
    }
    out_dtype = tf.dtypes.as_dtype(dtype)

    def to_element(row):
        features = tf.cond(
            row["mask"] > 0,
            lambda: tf.numpy_function(load, [row["file"]], tf.float32, stateful=False),
            lambda: tf.zeros(shape, tf.float32),
        )
        features = tf.ensure_shape(features, shape)
        return {
            "features": tf.cast(features, out_dtype),
            "label": row["label"],
            "mask": row["mask"],
            "video_id": row["video_id"],
        }

    dataset = tf.data.Dataset.from_tensor_slices(columns)
    dataset = dataset.map(to_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options)


class FeatureSplit:
    """A split of a store held in memory, batched exactly as :func:`features_dataset` batches it.

    Head training reads the same few thousand videos every epoch: reading them once and batching
    with NumPy costs nothing per epoch, where a tf.data pipeline is rebuilt and traced each time
    (most of the time of a small head's epoch). Memory: the selected regions of the split in the
    store's dtype (Breakfast's training split, 11 regions x 63 x 1024 in float16: 1.9 GB).
    """

    def __init__(self, store: str | os.PathLike, split: str | None, regions=None):
        self.store, self.split, self.regions = Path(store), split, regions
        self._arrays: dict[str, np.ndarray] = {}

    def _features(self, entry: dict, region_index: np.ndarray) -> np.ndarray:
        if entry["video_id"] not in self._arrays:
            array = read_npy(self.store / entry["file"])
            self._arrays[entry["video_id"]] = np.ascontiguousarray(array[region_index])
        return self._arrays[entry["video_id"]]

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_remainder: bool = False, shard: tuple[int, int] | str | None = "auto"):
        """Yields ``{"features" float32, "label", "mask", "video_id"}`` batches (numpy)."""
        plan = _plan(self.store, batch_size=batch_size, split=self.split, regions=self.regions, shuffle=shuffle,
                     seed=seed, epoch=epoch, drop_remainder=drop_remainder, shard=shard)
        rows = [(self._features(e, plan.region_index), int(e["label"]), 1.0, e["video_id"]) for e in plan.entries]
        rows += [(np.zeros(plan.shape, np.float32), 0, 0.0, _PAD_ID)] * plan.num_pad
        for start in range(0, len(rows), batch_size):
            features, labels, mask, ids = zip(*rows[start:start + batch_size])
            yield {"features": np.stack(features).astype(np.float32), "label": np.array(labels, np.int32),
                   "mask": np.array(mask, np.float32), "video_id": np.array(ids, object)}
