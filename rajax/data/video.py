"""Reading videos into RGB uint8 frames.

Containers (mp4, avi, mkv, webm, mov ...) are decoded with PyAV; GIFs with Pillow, composited
to the very frames TensorFlow's ``tf.io.decode_gif`` gives (``rajax.data.gif``). Nothing here
imports TensorFlow (the detection process imports torchvision, which crashes when TensorFlow was
imported first); PyAV and Pillow are imported lazily.

Every frame comes back as ``uint8 [H, W, 3]`` RGB, whatever the source pixel format (grayscale,
palette, 10-bit ...), and turned upright when the container carries rotation metadata (phone
videos), so ``VideoInfo.height``/``width`` are the size of the frames as returned.

``read_frames(..., max_side=S)`` and ``iter_frames(..., max_side=S)`` return frames whose shorter
side is ``S`` (when it was larger; ``scaled_size`` says the size): FFmpeg's swscale converts each
wanted frame straight from the decoder's pixel format to RGB at that size (area averaging, in C,
without the GIL), so a full-size RGB frame never exists. A 4K frame is 25 MB in RGB; at 256 it is
under 0.2 MB.

Frame indices count decoded frames from 0 in presentation order. ``probe`` counts the frames by
demuxing the packets (no decoding, about 10 ms per minute of video) rather than trusting the
container header, which is often off by one or missing altogether (mkv, webm).

Every problem with a file (missing, empty, truncated, not a video, too few frames) raises
:class:`rajax.errors.VideoError` with the file name in the message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rajax.data import gif
from rajax.errors import VideoError

# Decoding may fall this many frames short of the packet count (a trailing packet that does not
# decode, a dropped B-frame) before the file counts as truncated; missing frames at the end are then
# filled with the last decoded frame.
_MISSING_FRAMES_TOLERATED = 2


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns about a video without decoding it all.

    ``height`` and ``width`` are those of the frames ``read_frames`` returns (after rotation);
    ``rotation`` is the counter-clockwise angle in degrees (0, 90, 180 or 270) applied to the stored
    frames to make them upright.
    """

    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    rotation: int = 0


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    return path


def _upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    # np.rot90 turns counter-clockwise for positive k, the same sense as the display matrix angle.
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=k)) if k else frame


def scaled_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """``(height, width)`` of a ``height`` x ``width`` frame read with ``max_side``.

    When the shorter side is larger than ``max_side`` it becomes ``max_side`` and the other side
    keeps the aspect ratio, rounded to the nearest integer (halves up); otherwise, or when
    ``max_side`` is None, the size is unchanged (frames are never enlarged). Pass the upright size
    (``VideoInfo.height``, ``VideoInfo.width``); box coordinates on full-size frames scale by
    ``new_height / height`` and ``new_width / width``.
    """
    if max_side is None:
        return height, width
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    shorter = min(height, width)
    if shorter <= max_side:
        return height, width

    def scale(side: int) -> int:  # round(side * max_side / shorter), halves up, exactly
        return max(1, (2 * side * max_side + shorter) // (2 * shorter))

    return (max_side, scale(width)) if height <= width else (scale(height), max_side)


def _output_size(info: VideoInfo, max_side: int | None) -> tuple[int, int] | None:
    """The upright size to scale to, or None when frames come back at full size."""
    size = scaled_size(info.height, info.width, max_side)
    return None if size == (info.height, info.width) else size


def _to_rgb(frame, rotation: int, size: tuple[int, int] | None) -> np.ndarray:
    """An ``av.VideoFrame`` as upright RGB, at the upright ``size`` (None: full size).

    With a size, swscale scales while converting (area averaging); the stored frame is scaled to
    the size turned back by the rotation, so that the upright result has the size asked for.
    """
    # One swscale thread: its automatic threading (one per core, libswscale 9) splits each small
    # frame over threads that wait on one another, three to four times the CPU of one thread on a
    # 2-core host and the same pixels; videos are decoded in parallel by processes instead.
    if size is None:
        return _upright(frame.to_ndarray(format="rgb24", threads=1), rotation)
    height, width = size if rotation in (0, 180) else size[::-1]
    rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA", threads=1)
    return _upright(rgb, rotation)


def _resize_rgb(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``uint8 [N, H, W, 3]`` frames resized to ``size`` with Pillow's box (area) filter."""
    if size is None:
        return frames
    from PIL import Image

    height, width = size
    out = np.empty((len(frames), height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BOX))
    return out


def _normalise_rotation(degrees: float | int | None) -> int:
    if not degrees:
        return 0
    return int(round(float(degrees) / 90.0)) * 90 % 360


# ---------------------------------------------------------------------------------------------
# Containers (PyAV)


def _open_container(path: Path, data: bytes | None = None):
    import av

    try:
        container = av.open(str(path) if data is None else io.BytesIO(data), mode="r")
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: not a readable video ({_ffmpeg_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: not a video file (no video stream)")
    return container


def _ffmpeg_reason(error: Exception) -> str:
    reason = getattr(error, "strerror", None) or str(error)
    return reason.split(":")[0].strip() if reason else type(error).__name__


def _stream_duration_seconds(stream) -> float | None:
    """The video stream's own duration from the header (not the container's: audio may be longer)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    text = (stream.metadata or {}).get("DURATION")  # Matroska/WebM: "HH:MM:SS.nnnnnnnnn"
    if text:
        try:
            hours, minutes, seconds = text.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    return None


def _frames_from_duration(duration: float | None, fps: float) -> int:
    return int(round(duration * fps)) if duration and fps > 0 else 0


def _probe_container(path: Path, data: bytes | None = None) -> VideoInfo:
    import av

    container = _open_container(path, data)
    try:
        stream = container.streams.video[0]
        header_frames = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        stream_duration = _stream_duration_seconds(stream)
        try:
            # Counting non-empty packets is exact for every codec whose packets hold one frame each
            # (all common video codecs) and needs no decoding.
            packets = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: truncated or corrupt video ({_ffmpeg_reason(error)})") from None
    finally:
        container.close()
    # A fresh container for the first frame: seeking back after demuxing is unreliable in AVI.
    container = _open_container(path, data)
    first = None
    try:
        for frame in container.decode(container.streams.video[0]):
            first = frame
            break
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: cannot decode video ({_ffmpeg_reason(error)})") from None
    finally:
        container.close()
    if first is None or packets == 0:
        raise VideoError(f"{path}: video stream has no frames")
    expected = header_frames or _frames_from_duration(stream_duration, fps)
    if expected and packets < expected - max(_MISSING_FRAMES_TOLERATED, expected // 50):
        raise VideoError(f"{path}: truncated video: the header promises {expected} frames, {packets} present")
    rotation = _normalise_rotation(getattr(first, "rotation", 0))
    height, width = first.height, first.width
    if rotation in (90, 270):
        height, width = width, height
    if fps <= 0 and stream_duration:
        fps = packets / stream_duration
    return VideoInfo(str(path), packets, fps or 25.0, height, width, rotation)


@functools.lru_cache(maxsize=4096)
def _cached_probe(path: str, mtime_ns: int, size: int) -> VideoInfo:
    path_ = Path(path)
    if gif.is_gif(path_):
        frames, fps = gif.cached(path_)
        n, h, w = frames.shape[:3]
        return VideoInfo(path, int(n), fps, int(h), int(w), 0)
    return _probe_container(path_)


def probe(path: str | os.PathLike, *, data: bytes | None = None) -> VideoInfo:
    """Frame count, frame rate, upright frame size and rotation of a video (cached per file).

    The cache is keyed by path, modification time and size, so a rewritten file is probed again.
    With ``data`` (the encoded file's bytes, as a TFDS dataset stores them) nothing is read from
    disk and nothing is cached; ``path`` then only names the video in errors and tells GIF apart.
    """
    if data is not None:
        return _probe_bytes(Path(path), data)
    path = _check_file(path)
    stat = path.stat()
    return _cached_probe(str(path), stat.st_mtime_ns, stat.st_size)


def _probe_bytes(path: Path, data: bytes) -> VideoInfo:
    if len(data) == 0:
        raise VideoError(f"{path}: empty video data (0 bytes)")
    if gif.is_gif(path):
        n, h, w = gif.decode(path, data)[0].shape[:3]
        return VideoInfo(str(path), int(n), 25.0, int(h), int(w), 0)
    return _probe_container(path, data)


def _decoded_frames(path: Path, data: bytes | None = None) -> Iterator[tuple[int, Any]]:
    """``(index, av.VideoFrame)`` in decoding order; an FFmpeg error becomes a VideoError saying
    how far decoding got. Close it (``contextlib.closing``) when stopping early."""
    import av

    # No frame threading: several videos already decode in parallel (rajax.data.decoders), and
    # FFmpeg's frame threads only contend with those (twice slower on 2 busy cores).
    container = _open_container(path, data)
    index = -1
    try:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            yield index, frame
    except av.error.FFmpegError as error:
        raise VideoError(
            f"{path}: decoding failed after {index + 1} frames ({_ffmpeg_reason(error)})"
        ) from None
    finally:
        container.close()


def _decode_container(
    path: Path,
    wanted: np.ndarray | None,
    info: VideoInfo,
    data: bytes | None = None,
    size: tuple[int, int] | None = None,
) -> dict[int, np.ndarray]:
    """Decodes frames in order, converting to RGB only those in ``wanted`` (all when None), at the
    upright ``size`` (None: full size)."""
    last_wanted = info.num_frames - 1 if wanted is None else int(wanted.max())
    wanted_set = None if wanted is None else set(wanted.tolist())
    frames: dict[int, np.ndarray] = {}
    last = None
    index = -1
    with contextlib.closing(_decoded_frames(path, data)) as decoded_frames:
        for index, frame in decoded_frames:
            if wanted_set is None or index in wanted_set:
                frames[index] = _to_rgb(frame, info.rotation, size)
            last = frame
            if index >= last_wanted:
                break
    decoded = index + 1
    if decoded <= last_wanted:
        if last is None or decoded < info.num_frames - _MISSING_FRAMES_TOLERATED:
            raise VideoError(
                f"{path}: truncated video: only {decoded} of {info.num_frames} frames decode"
            )
        # A frame or two short of the packet count: repeat the last decoded frame.
        filler = _to_rgb(last, info.rotation, size)
        for i in range(decoded, last_wanted + 1):
            if wanted_set is None or i in wanted_set:
                frames[i] = filler
    return frames


def _checked_indices(path: Path, indices, info: VideoInfo) -> np.ndarray | None:
    if indices is None:
        return None
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= info.num_frames):
        raise VideoError(
            f"{path}: frame index {int(indices.max() if indices.max() >= info.num_frames else indices.min())}"
            f" out of range: the video has {info.num_frames} frames"
        )
    return indices


def frames_by_index(
    path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    *,
    data: bytes | None = None,
    max_side: int | None = None,
) -> dict[int, np.ndarray]:
    """The distinct frames at ``indices``, each decoded once: ``{index: uint8 [H, W, 3]}``, sized
    as ``read_frames`` sizes them. For callers that place frames themselves (the pipelines write
    central squares straight onto their canvas) without a stacked copy of the whole sample."""
    path = Path(path) if data is not None else _check_file(path)
    info = probe(path, data=data)
    indices = _checked_indices(path, indices, info)
    if indices.size == 0:
        return {}
    size = _output_size(info, max_side)
    if gif.is_gif(path):
        frames = gif.cached(path)[0] if data is None else gif.decode(path, data)[0]
        distinct = np.unique(indices)
        resized = frames[distinct] if size is None else _resize_rgb(frames[distinct], size)
        return {int(i): frame for i, frame in zip(distinct, resized)}
    return _decode_container(path, indices, info, data, size)


def read_frames(
    path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    data: bytes | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """Decodes the frames at ``indices`` (all frames when None) as ``uint8 [N, H, W, 3]`` RGB.

    ``indices`` may repeat and come in any order; the result follows it. An index outside
    ``[0, num_frames)`` raises VideoError (sampling functions never produce one). With ``data``
    the encoded bytes are decoded instead of the file (see ``probe``).

    With ``max_side``, frames whose shorter side (upright) is larger come back at
    ``scaled_size(info.height, info.width, max_side)``: containers are scaled by swscale while
    converting to RGB (area averaging), never at full size in RGB; GIFs are resized with Pillow's
    box filter. Smaller frames come back unchanged.
    """
    path = Path(path) if data is not None else _check_file(path)
    info = probe(path, data=data)
    size = _output_size(info, max_side)
    indices = _checked_indices(path, indices, info)
    if indices is not None and indices.size == 0:
        return np.zeros((0, *(size or (info.height, info.width)), 3), np.uint8)
    if indices is None and gif.is_gif(path):
        frames = gif.cached(path)[0] if data is None else gif.decode(path, data)[0]
        return np.array(frames) if size is None else _resize_rgb(frames, size)
    if indices is None:
        decoded = _decode_container(path, None, info, data, size)
        return np.stack([decoded[i] for i in range(info.num_frames)])
    decoded = frames_by_index(path, indices, data=data, max_side=max_side)
    return np.stack([decoded[int(i)] for i in indices])


def iter_frames(
    path: str | os.PathLike, every: int = 1, *, max_side: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(index, frame)`` for every ``every``-th frame (0, every, 2*every, ...), one at a time.

    Memory stays at one frame for containers, so this suits detection over long videos.
    ``max_side`` scales frames as in ``read_frames``.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    path = _check_file(path)
    info = probe(path)
    size = _output_size(info, max_side)
    if gif.is_gif(path):
        frames = gif.cached(path)[0]
        for index in range(0, frames.shape[0], every):
            yield index, (np.array(frames[index]) if size is None else _resize_rgb(frames[index : index + 1], size)[0])
        return
    index = -1
    with contextlib.closing(_decoded_frames(path)) as decoded_frames:
        for index, frame in decoded_frames:
            if index % every == 0:
                yield index, _to_rgb(frame, info.rotation, size)
    if index + 1 < info.num_frames - _MISSING_FRAMES_TOLERATED:
        raise VideoError(f"{path}: truncated video: only {index + 1} of {info.num_frames} frames decode")


def require_frames(path: str | os.PathLike, minimum: int) -> VideoInfo:
    """``probe(path)``, raising VideoError when the video has fewer than ``minimum`` frames."""
    info = probe(path)
    if info.num_frames < minimum:
        raise VideoError(f"{path}: too few frames: {info.num_frames}, at least {minimum} needed")
    return info


# ---------------------------------------------------------------------------------------------
# Writing

# Codec and pixel format by file suffix. ffv1 in .mkv is lossless (bgr0 keeps RGB exactly), the
# right choice for test videos whose pixel values encode the frame index.
_WRITE_DEFAULTS = {
    ".mkv": ("ffv1", "bgr0"),
    ".avi": ("mpeg4", "yuv420p"),
    ".mp4": ("mpeg4", "yuv420p"),  # libx264 refuses odd frame sizes in yuv420p
    ".webm": ("libvpx-vp9", "yuv420p"),
    ".gif": ("gif", "rgb8"),
}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 25.0,
    *,
    codec: str | None = None,
    pix_fmt: str | None = None,
    rotation: int = 0,
    bit_rate: int | None = None,
) -> Path:
    """Encodes ``uint8 [N, H, W, 3]`` RGB (or ``[N, H, W]`` gray) frames into ``path``.

    Codec and pixel format default by suffix (``.mkv``: lossless ffv1; ``.avi`` and ``.mp4``:
    MPEG-4 part 2; ``.webm``: VP9; ``.gif``: 8-bit RGB palette). ``rotation`` stores display-rotation metadata (degrees
    counter-clockwise, as ``VideoInfo.rotation`` reads it back); ``bit_rate`` (bits/s) replaces
    the lossy encoders' default. Missing folders are created; the
    file is written under a temporary name and renamed when complete, so a reader never sees half
    a video.
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    gray = frames.ndim == 3
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (not gray and frames.shape[-1] != 3):
        raise ValueError(f"frames must be uint8 [N, H, W, 3] or [N, H, W], got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames to write")
    default_codec, default_pix_fmt = _WRITE_DEFAULTS.get(path.suffix.lower(), ("mpeg4", "yuv420p"))
    codec = codec or default_codec
    pix_fmt = pix_fmt or ("gray" if gray and codec == "ffv1" else default_pix_fmt)
    height, width = frames.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with av.open(str(tmp), mode="w", format=None if path.suffix else "matroska") as container:
            stream = container.add_stream(codec, rate=round(fps) if float(fps).is_integer() else fps)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            if rotation:
                stream.set_display_rotation(rotation)
            if bit_rate:
                stream.bit_rate = bit_rate
            for frame in frames:
                av_frame = av.VideoFrame.from_ndarray(frame, format="gray" if gray else "rgb24")
                for packet in stream.encode(av_frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
