"""tf.data pipelines from videos to the batches the model eats: decoded frames, nothing more.

The host decodes each video's sampled frames once, takes their central square and hands the
device uint8 squares on a fixed canvas plus the integer boxes of the regions; cropping, antialiased
resizing and scaling to [-1, 1] happen in the compiled step (``rajax.data.crops``). No per-region
work and no float conversion on the host: an 11-region extraction decodes its video once, like a
training clip.

The canvas: every square is ``frame_side`` pixels at most (``config.data.frame_side``). A larger
square is shrunk while decoding (FFmpeg converts each wanted frame straight to the smaller size);
a smaller one is kept as it is, in the top-left corner of a zero canvas of ``frame_side`` pixels,
so that every element has the same static shape and no pixel is resampled twice. Boxes address the
real square only, so the padding never reaches a crop. Actor squares (in the pixels of the
video's own square) are scaled with the frames.

The videos come as a :class:`~rajax.data.sources.VideoSource` (or what it is built from): a list of
:class:`~rajax.data.records.VideoRecord` (video files, decoded with PyAV by a pool of worker
processes, ``rajax.data.decoders``, several videos at once: threads of one process would contend for
the GIL) or a TFDS ``breakfast``/``video_folder`` split through
:func:`~rajax.data.sources.tfds_videos` (JPEG frames of the stored squares, decoded by TensorFlow in
the graph: only the sampled frames, in parallel, outside the GIL). From either:

- :func:`training_dataset` (Multi-Regional fine-tuning): for one epoch, every video gives ONE region
  drawn at random among ``regions``. Batches: ``{"frames": uint8 [B, T*L, F, F, 3], "boxes": int32
  [B, 1, 3] (the drawn region's box), "region": int32 [B] (index into regions), "label": int32
  [B], "video_id": string [B], "mask": float32 [B]}``.
- :func:`evaluation_dataset` (feature extraction, evaluation): every region, in the fixed order.
  Batches: ``{"frames": uint8 [B, T*L, F, F, 3], "boxes": int32 [B, R, 3], "label", "video_id",
  "mask"}``.
- Stored features for head training: ``rajax.data.features.features_dataset``.

Randomness (region choice, random timesteps, shuffled timesteps) is a pure function of
``(seed, epoch, video_id)``: reproducible, different each epoch, and the same whatever the number of
hosts or the order of decoding. The order of videos in an epoch is a permutation drawn from
``(seed, epoch)``.

Multi-host: each host reads the videos ``i`` with ``i % process_count == process_index`` (of the
epoch's permutation when training) and every host yields the same number of batches, so collective
steps never wait for a host that ran out. A video that cannot be decoded does not stop the epoch: it
(file source) is logged, appended to the caller's ``skipped`` list, and comes out as zeros with ``mask`` 0; the
padding that completes the last evaluation batch has ``mask`` 0 as well. Losses and metrics must be
weighted by ``mask``; then every readable video counts exactly once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Sequence

import numpy as np

from rajax.data import regions as regions_lib
from rajax.data import decoders, sampling, video
from rajax.data.records import VideoRecord
from rajax.data.sources import VideoSource

logger = logging.getLogger(__name__)

_PAD_ID = "<padding>"


def _tf():
    import tensorflow as tf

    return tf


# ---------------------------------------------------------------------------------------------
# Per-video elements (their fields: rajax.data.sources)


def _padding_like(dataset, count: int):
    """``count`` padding elements with the element spec of ``dataset`` (``valid`` False)."""
    tf = _tf()

    def blank(name, spec):
        if name == "video_id":
            return tf.constant(_PAD_ID)
        shape = [0 if d is None else d for d in spec.shape.as_list()]
        return tf.zeros(shape, spec.dtype) if spec.dtype != tf.string else tf.fill(shape, "")

    element = {name: blank(name, spec) for name, spec in dataset.element_spec.items()}
    return tf.data.Dataset.from_tensors(element).repeat(count)


def resolve_shard(shard: tuple[int, int] | str | None) -> tuple[int, int]:
    """``(process_index, process_count)``: ``"auto"`` asks JAX, ``None`` means a single host."""
    if shard is None:
        return 0, 1
    if shard == "auto":
        import jax

        return jax.process_index(), jax.process_count()
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} not in [0, {count})")
    return int(index), int(count)


def _stable_hash(video_id: str) -> int:
    """A 56-bit integer per video id, the same in every run (unlike Python's salted hash())."""
    return int.from_bytes(hashlib.blake2b(video_id.encode("utf-8"), digest_size=7).digest(), "big")


def video_rng(seed: int, epoch: int, video_id: str) -> np.random.Generator:
    """The random generator of one video in one epoch: region choice, then timestep sampling."""
    return np.random.default_rng([seed, epoch, _stable_hash(video_id)])


def choose_region(seed: int, epoch: int, video_id: str, num_regions: int) -> int:
    """The region a video contributes to epoch ``epoch`` of Multi-Regional fine-tuning."""
    return int(video_rng(seed, epoch, video_id).integers(num_regions))


# ---------------------------------------------------------------------------------------------
# Loading


def _as_str(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class LoadPlan:
    """What to load of each video: the sampling and region settings of one pipeline (epoch included)."""

    regions: tuple[str, ...]
    num_timesteps: int
    timestep_length: int
    sampling_mode: str
    shuffled: bool
    seed: int
    epoch: int
    one_region: bool  # training: one random region per video; else every region
    frame_side: int  # the canvas: squares are shrunk to at most this side, then padded to it

    @property
    def num_frames_out(self) -> int:
        return self.num_timesteps * self.timestep_length

    @property
    def num_boxes(self) -> int:
        return 1 if self.one_region else len(self.regions)

    def sample(self, video_id: str, num_frames: int) -> tuple[np.ndarray, int]:
        """Frame indices [T*L] and region index, from the video's generator for this epoch."""
        rng = video_rng(self.seed, self.epoch, video_id)
        region = int(rng.integers(len(self.regions))) if self.one_region else 0
        indices = sampling.sample_timesteps(
            self.sampling_mode, num_frames, self.num_timesteps, self.timestep_length, shuffled=self.shuffled, rng=rng
        ).reshape(-1)
        return indices, region

    def boxes(self, side: int, region: int, actor_square) -> np.ndarray:
        names = (self.regions[region],) if self.one_region else self.regions
        return regions_lib.region_boxes(side, names, actor_square)

    def empty_frames(self) -> np.ndarray:
        return np.zeros((self.num_frames_out, self.frame_side, self.frame_side, 3), np.uint8)

    def empty_boxes(self) -> np.ndarray:
        return np.tile(np.array([[0, 0, self.frame_side]], np.int32), (self.num_boxes, 1))


def _central_squares(path: str, indices: np.ndarray, frame_side: int, data=None):
    """The central squares (views) of the distinct frames at ``indices``, at most ``frame_side``
    pixels (shrunk while decoding), their side, and the scale from the video's own square."""
    decoded = video.frames_by_index(path, indices, max_side=frame_side, data=data)
    height, width = next(iter(decoded.values())).shape[:2]
    left, top, side = regions_lib.central_square_box(height, width)
    info = video.probe(path, data=data)
    squares = {index: frame[top : top + side, left : left + side] for index, frame in decoded.items()}
    return squares, side, side / min(info.height, info.width)


def _scaled_square(actor_square, scale: float):
    if actor_square is None or scale == 1.0:
        return actor_square
    return tuple(float(v) * scale for v in actor_square)


def square_frames(path: str, indices: np.ndarray, frame_side: int, actor_square=None, *, data=None):
    """The central squares of a video's frames at ``indices``, at most ``frame_side`` pixels
    (shrunk while decoding), and the actor square scaled to them: ``(uint8 [N, s, s, 3], square)``."""
    squares, _, scale = _central_squares(path, indices, frame_side, data)
    return np.stack([squares[int(i)] for i in indices]), _scaled_square(actor_square, scale)


def on_canvas(frames: np.ndarray, frame_side: int) -> np.ndarray:
    """Square frames ``[N, s, s, 3]`` (``s <= frame_side``) in the top-left corner of a zero canvas."""
    side = frames.shape[1]
    if side == frame_side:
        return np.ascontiguousarray(frames)
    canvas = np.zeros((len(frames), frame_side, frame_side, 3), np.uint8)
    canvas[:, :side, :side] = frames
    return canvas


def load_file_video(plan: LoadPlan, video_id: str, path: str, actor_square, num_frames: int, *, allocate=np.empty):
    """One video file as a pipeline element: ``(frames uint8 [T*L, F, F, 3] on the canvas, (boxes
    int32 [K, 3], region))``, the canvas from ``allocate(shape)``. Runs in a decoder process."""
    if not num_frames:
        num_frames = video.probe(path).num_frames
    indices, region = plan.sample(video_id, int(num_frames))
    squares, side, scale = _central_squares(path, indices, plan.frame_side)
    canvas = allocate((plan.num_frames_out, plan.frame_side, plan.frame_side, 3), np.uint8)
    for position, index in enumerate(indices.tolist()):  # each square written once, onto the canvas
        canvas[position, :side, :side] = squares[index]
    if side < plan.frame_side:
        canvas[:, side:] = 0
        canvas[:, :side, side:] = 0
    return canvas, (plan.boxes(side, region, _scaled_square(actor_square, scale)), region)


def _file_loader(plan: LoadPlan, skipped: list | None, decode_processes: int):
    """(video_id, path, actor_square, has_actor, num_frames, valid) ->
    (frames uint8 [T*L, F, F, 3] on the canvas, boxes int32 [K, 3], region int32, ok), decoded by
    the process-wide pool of ``decode_processes`` workers (0: one per core; ``rajax.data.decoders``)."""

    def failed():
        return plan.empty_frames(), plan.empty_boxes(), np.int32(0), False

    def load(video_id, path, actor_square, has_actor, num_frames, valid):
        if not valid:
            return failed()
        video_id, path = _as_str(video_id), _as_str(path)
        square = tuple(int(v) for v in actor_square) if has_actor else None
        try:
            pool = decoders.shared_pool(decode_processes)
            frames, (boxes, region) = pool.run(load_file_video, plan, video_id, path, square, int(num_frames))
        except decoders.PoolClosed:  # the process is exiting while this pipeline decodes ahead: no video's fault
            return failed()
        except RuntimeError as error:  # a bad video (or one that crashed its decoder) must not end the epoch
            message = str(error) if path in str(error) else f"{path}: {error}"
            logger.warning("skipping video %s: %s", video_id, message)
            if skipped is not None:
                skipped.append(message)
            return failed()
        return frames, boxes, np.int32(region), True

    return load


def _jpeg_planner(plan: LoadPlan):
    """(video_id, num_frames, square_side, actor_square, has_actor, valid) ->
    (frame indices int64 [T*L], boxes int32 [K, 3], region int32). Cheap: no pixels in Python."""

    def plan_video(video_id, num_frames, square_side, actor_square, has_actor, valid):
        if not valid:
            return np.zeros(plan.num_frames_out, np.int64), plan.empty_boxes(), np.int32(0)
        indices, region = plan.sample(_as_str(video_id), int(num_frames))
        side = min(int(square_side), plan.frame_side)
        square = None
        if has_actor:  # stored in the stored square's pixels; scaled with the frames if shrunk
            square = tuple(float(v) * side / int(square_side) for v in actor_square)
        return indices.astype(np.int64), plan.boxes(side, region, square), np.int32(region)

    return plan_video


def _decode_jpegs(element, indices, frame_side: int):
    """The sampled frames of a TFDS element on the canvas: each distinct frame decoded once (short
    videos repeat frames), in the TF graph (no GIL); shrunk only when stored larger than the canvas."""
    tf = _tf()
    unique, position = tf.unique(indices)
    encoded = tf.gather(element["jpeg_frames"], unique)
    decoded = tf.map_fn(lambda data: tf.io.decode_jpeg(data, channels=3), encoded, fn_output_signature=tf.uint8)
    frames = tf.gather(decoded, position)
    side = tf.shape(frames)[1]

    def shrink():
        resized = tf.image.resize(frames, (frame_side, frame_side), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    frames = tf.cond(side > frame_side, shrink, lambda: frames)
    pad = frame_side - tf.minimum(side, frame_side)
    return tf.pad(frames, [[0, 0], [0, pad], [0, pad], [0, 0]])


def _load(dataset, plan: LoadPlan, *, deterministic: bool, skipped, decode_processes: int):
    """Per-video elements -> ``{frames, boxes, label, region, video_id, mask}`` (decoded, on the canvas)."""
    tf = _tf()
    from_jpeg = "jpeg_frames" in dataset.element_spec
    load = _jpeg_planner(plan) if from_jpeg else _file_loader(plan, skipped, decode_processes)
    empty = tf.zeros([plan.num_frames_out, plan.frame_side, plan.frame_side, 3], tf.uint8)

    def load_element(element):
        if from_jpeg:
            indices, boxes, region = tf.numpy_function(
                load,
                [element[k] for k in ("video_id", "num_frames", "square_side", "actor_square", "has_actor", "valid")],
                [tf.int64, tf.int32, tf.int32],
                stateful=False,
            )
            indices.set_shape([plan.num_frames_out])
            frames = tf.cond(element["valid"], lambda: _decode_jpegs(element, indices, plan.frame_side),
                             lambda: empty)
            ok = element["valid"]
        else:
            frames, boxes, region, ok = tf.numpy_function(
                load,
                [element[k] for k in ("video_id", "path", "actor_square", "has_actor", "num_frames", "valid")],
                [tf.uint8, tf.int32, tf.int32, tf.bool],
                stateful=False,
            )
        frames.set_shape([plan.num_frames_out, plan.frame_side, plan.frame_side, 3])
        boxes.set_shape([plan.num_boxes, 3])
        region.set_shape([])
        ok.set_shape([])
        return {
            "frames": frames,  # uint8 [N, F, F, 3]
            "boxes": boxes,  # int32 [K, 3]
            "label": element["label"],
            "region": region,
            "video_id": element["video_id"],
            "mask": tf.cast(ok, tf.float32),
        }

    return dataset.map(load_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _check_args(regions, sampling_mode, batch_size, frame_side):
    regions = regions_lib.resolve_regions(regions)
    if sampling_mode not in sampling.SAMPLING_MODES:
        raise ValueError(f"unknown sampling mode {sampling_mode!r}; choose one of {sampling.SAMPLING_MODES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if frame_side < 1:
        raise ValueError(f"frame_side must be >= 1, got {frame_side}")
    return regions


def _options(dataset, deterministic: bool):
    tf = _tf()
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return dataset.with_options(options)


def training_steps(num_videos: int, batch_size: int, process_count: int = 1) -> int:
    """Batches per epoch on every host: the last partial batch of each host is dropped."""
    return (num_videos // process_count) // batch_size


def training_dataset(
    videos: VideoSource | Sequence[VideoRecord],
    *,
    epoch: int,
    batch_size: int,
    seed: int = 0,
    regions: int | str | Sequence[str] | None = None,
    num_timesteps: int = 64,
    timestep_length: int = 8,
    sampling_mode: str = "uniform",
    shuffled_timesteps: bool = False,
    frame_side: int = regions_lib.DEFAULT_FRAME_SIDE,
    shard: tuple[int, int] | str | None = "auto",
    deterministic: bool = False,
    num_videos: int | None = None,
    shuffle_buffer: int = 256,
    prefetch: int = 2,
    skipped: list | None = None,
    decode_processes: int = 0,
):
    """One epoch of Multi-Regional fine-tuning batches (see the module docstring for the layout).

    ``videos``: a :class:`VideoSource`, a list of records, or a dataset of video elements
    (:func:`rajax.data.sources.tfds_videos`; shuffled with a buffer of ``shuffle_buffer`` instead of a full
    permutation; pass ``num_videos`` when its length is unknown). Every host yields
    ``training_steps(N, batch_size, process_count)`` full batches.
    """
    regions = _check_args(regions, sampling_mode, batch_size, frame_side)
    process_index, process_count = resolve_shard(shard)
    source = VideoSource.of(videos, num_videos)
    total = source.count
    steps = training_steps(total, batch_size, process_count)
    if steps == 0:
        raise ValueError(
            f"{total} videos give no full batch of {batch_size} per host ({process_count} hosts)"
        )
    dataset = source.epoch_elements(seed, epoch, process_index, process_count, shuffle_buffer)
    dataset = dataset.take(steps * batch_size)
    plan = LoadPlan(regions, num_timesteps, timestep_length, sampling_mode, shuffled_timesteps, seed, epoch, True,
                 frame_side)
    dataset = _load(dataset, plan, deterministic=deterministic, skipped=skipped,
                    decode_processes=decode_processes)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(prefetch)
    return _options(dataset, deterministic)


def evaluation_steps(num_videos: int, batch_size: int, process_count: int = 1) -> int:
    """Batches every host yields so that all videos fit: ceil(ceil(N / hosts) / batch_size)."""
    return math.ceil(math.ceil(num_videos / process_count) / batch_size)


def evaluation_dataset(
    videos: VideoSource | Sequence[VideoRecord],
    *,
    batch_size: int = 1,
    regions: int | str | Sequence[str] | None = None,
    num_timesteps: int = 64,
    timestep_length: int = 8,
    sampling_mode: str = "uniform",
    shuffled_timesteps: bool = False,
    seed: int = 0,
    frame_side: int = regions_lib.DEFAULT_FRAME_SIDE,
    shard: tuple[int, int] | str | None = "auto",
    deterministic: bool = True,
    num_videos: int | None = None,
    prefetch: int = 1,
    skipped: list | None = None,
    decode_processes: int = 0,
):
    """Every region of every video (in order), padded so each host yields the same full batches.

    ``videos``: a :class:`VideoSource`, a list of records, or a dataset of video elements
    (:func:`rajax.data.sources.tfds_videos`; pass ``num_videos`` when its length is unknown).

    Batches: ``frames uint8 [B, T*L, F, F, 3]`` (decoded once per video, every region cut on the
    device from it), ``boxes int32 [B, R, 3]``, ``label [B]``, ``video_id [B]`` (``"<padding>"`` on
    padding), ``mask [B]`` (1 for a decoded video, 0 for padding and skipped videos).
    """
    regions = _check_args(regions, sampling_mode, batch_size, frame_side)
    process_index, process_count = resolve_shard(shard)
    source = VideoSource.of(videos, num_videos)
    per_host = evaluation_steps(source.count, batch_size, process_count) * batch_size
    dataset = source.host_elements(process_index, process_count)
    dataset = dataset.concatenate(_padding_like(dataset, per_host)).take(per_host)
    plan = LoadPlan(regions, num_timesteps, timestep_length, sampling_mode, shuffled_timesteps, seed, 0, False,
                 frame_side)
    dataset = _load(dataset, plan, deterministic=deterministic, skipped=skipped,
                    decode_processes=decode_processes)
    dataset = dataset.map(lambda e: {k: v for k, v in e.items() if k != "region"})
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(prefetch)
    return _options(dataset, deterministic)


def load_video_frames(
    path: str,
    *,
    regions: int | str | Sequence[str] | None = None,
    actor_square: Sequence[int] | None = None,
    num_timesteps: int = 64,
    timestep_length: int = 8,
    sampling_mode: str = "uniform",
    frame_side: int = regions_lib.DEFAULT_FRAME_SIDE,
) -> tuple[np.ndarray, np.ndarray]:
    """One video as the pipelines give it, without tf.data (prediction on one file): its sampled
    frames on the canvas ``uint8 [T*L, F, F, 3]`` and its region boxes ``int32 [R, 3]``.

    Raises VideoError for a bad file instead of skipping it.
    """
    regions = regions_lib.resolve_regions(regions)
    info = video.probe(path)
    indices = sampling.sample_timesteps(sampling_mode, info.num_frames, num_timesteps, timestep_length).reshape(-1)
    frames, square = square_frames(path, indices, frame_side, actor_square)
    return on_canvas(frames, frame_side), regions_lib.region_boxes(frames.shape[1], regions, square)
