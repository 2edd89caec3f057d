"""GIF files decoded to the very frames TensorFlow's ``tf.io.decode_gif`` gives, without TensorFlow.

``rajax.data.video`` reads GIFs through this module (``decode``, ``cached``); nothing here imports
TensorFlow, and Pillow is imported lazily.

The frames are built exactly as TensorFlow's ``tf.io.decode_gif`` (giflib) builds them, which the
project used before and which the GIF-trained numbers assume. Pillow's own animated-GIF reader
differs on optimised GIFs: it applies the disposal methods (TF ignores them: each frame is drawn
over the previous one), fills the canvas around a partial first frame and the transparent pixels
of the first frame with palette colours (TF: black), and its canvas is the logical screen, grown
for a frame that overflows it (TF's canvas is the largest frame height by the largest frame width,
whatever the screen and the offsets say, and frames are clipped to it). So the file's blocks are
parsed here, each frame's LZW data is decoded to palette indices by Pillow (a one-frame GIF of the
frame alone), and the frames are composited with TF's rules.

Every problem with a file raises :class:`rajax.errors.VideoError` with the file name in the message.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path

import numpy as np

from rajax.errors import VideoError

SUFFIXES = (".gif",)


def is_gif(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


@dataclasses.dataclass(frozen=True)
class GifFrame:
    """One image of a GIF file as its blocks describe it, its LZW data still encoded."""

    left: int
    top: int
    width: int
    height: int
    interlaced: bool
    color_table: bytes | None  # the local table, else the global one (RGB triples)
    transparency: int | None
    delay_ms: int
    data: bytes  # LZW minimum code size byte + data sub-blocks + terminator


def parse(path: Path, data: bytes) -> list[GifFrame]:
    """The frames of a GIF file's bytes."""

    def fail(reason: str):
        raise VideoError(f"{path}: cannot decode GIF ({reason})")

    if data[:6] not in (b"GIF87a", b"GIF89a"):
        fail("not a GIF file")
    if len(data) < 13:
        fail("truncated header")
    packed = data[10]
    pos = 13
    global_table = None
    if packed & 0x80:
        size = 3 << ((packed & 7) + 1)
        global_table = data[pos : pos + size]
        pos += size

    def skip_sub_blocks(pos: int) -> int:
        while True:
            if pos >= len(data):
                fail("truncated data")
            length = data[pos]
            pos += 1 + length
            if length == 0:
                return pos

    frames: list[GifFrame] = []
    transparency, delay_ms = None, 0  # from the graphic control extension before each image
    while pos < len(data):
        kind = data[pos]
        if kind == 0x3B:  # trailer
            break
        if kind == 0x21:  # extension
            if pos + 2 > len(data):
                fail("truncated data")
            label = data[pos + 1]
            if label == 0xF9 and pos + 3 < len(data) and data[pos + 2] >= 4 and pos + 7 <= len(data):
                flags = data[pos + 3]
                delay_ms = int.from_bytes(data[pos + 4 : pos + 6], "little") * 10
                transparency = data[pos + 6] if flags & 1 else None
            pos = skip_sub_blocks(pos + 2)
        elif kind == 0x2C:  # image descriptor
            if pos + 10 > len(data):
                fail("truncated data")
            left, top, frame_width, frame_height = (
                int.from_bytes(data[pos + i : pos + i + 2], "little") for i in (1, 3, 5, 7)
            )
            flags = data[pos + 9]
            pos += 10
            table = global_table
            if flags & 0x80:
                size = 3 << ((flags & 7) + 1)
                table = data[pos : pos + size]
                pos += size
            start = pos
            pos = skip_sub_blocks(pos + 1)  # + the LZW minimum code size byte
            frames.append(
                GifFrame(
                    left, top, frame_width, frame_height, bool(flags & 0x40), table, transparency,
                    delay_ms, data[start:pos],
                )
            )
            transparency, delay_ms = None, 0
        else:
            fail(f"unknown block type 0x{kind:02x} at byte {pos}")
    if not frames:
        raise VideoError(f"{path}: GIF has no frames")
    return frames


def frame_indices(path: Path, number: int, frame: GifFrame) -> np.ndarray:
    """The palette indices ``uint8 [height, width]`` of one frame, LZW-decoded by Pillow."""
    from PIL import Image

    # A GIF holding this frame alone, at (0, 0) and without a colour table: Pillow reads it as an
    # 8-bit image whose values are the indices themselves (and de-interlaces it).
    single = b"".join(
        (
            b"GIF89a",
            frame.width.to_bytes(2, "little"),
            frame.height.to_bytes(2, "little"),
            b"\x00\x00\x00,\x00\x00\x00\x00",
            frame.width.to_bytes(2, "little"),
            frame.height.to_bytes(2, "little"),
            b"\x40" if frame.interlaced else b"\x00",
            frame.data,
            b";",
        )
    )
    try:
        with Image.open(io.BytesIO(single)) as image:
            image.load()
            indices = np.asarray(image)
    except Exception as error:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError ...
        raise VideoError(f"{path}: cannot decode GIF (frame {number}: {error})") from None
    if indices.shape != (frame.height, frame.width):
        raise VideoError(f"{path}: cannot decode GIF (frame {number} has the wrong size)")
    return indices


def decode(path: Path, data: bytes | None = None) -> tuple[np.ndarray, float]:
    """``(frames uint8 [N, H, W, 3], fps)`` of a GIF file (or of its bytes ``data``), composited as
    ``tf.io.decode_gif`` does; the rate comes from the first frame's delay (25 when none)."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise VideoError(f"{path}: cannot read ({error.strerror or error})") from None
    frames = parse(path, data)
    # TF's canvas, not the logical screen (module docstring).
    height, width = max(f.height for f in frames), max(f.width for f in frames)
    if width == 0 or height == 0:
        raise VideoError(f"{path}: cannot decode GIF (empty frames {width}x{height})")
    out = np.zeros((len(frames), height, width, 3), np.uint8)
    for k, frame in enumerate(frames):
        if k > 0:
            out[k] = out[k - 1]  # what the frame does not cover (or leaves transparent) stays
        if frame.color_table is None:
            raise VideoError(f"{path}: cannot decode GIF (missing color map for frame {k})")
        # Clip to the canvas, as TF does.
        top, left = min(frame.top, height), min(frame.left, width)
        bottom, right = min(frame.top + frame.height, height), min(frame.left + frame.width, width)
        if bottom <= top or right <= left:
            continue
        indices = frame_indices(path, k, frame)[: bottom - frame.top, : right - frame.left]
        palette = np.frombuffer(frame.color_table, np.uint8).reshape(-1, 3)
        if indices.size and int(indices.max()) >= len(palette):
            raise VideoError(
                f"{path}: cannot decode GIF (frame {k}: color index {int(indices.max())} outside"
                f" the {len(palette)}-color map)"
            )
        region = out[k, top:bottom, left:right]
        if frame.transparency is None:
            region[...] = palette[indices]
        else:
            opaque = indices != frame.transparency
            region[opaque] = palette[indices[opaque]]
    delay_ms = frames[0].delay_ms
    return out, (1000.0 / delay_ms if delay_ms > 0 else 25.0)


@functools.lru_cache(maxsize=4)  # decoded GIFs are kept whole: a few only
def _cached(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, float]:
    frames, fps = decode(Path(path))
    frames.setflags(write=False)
    return frames, fps


def cached(path: Path) -> tuple[np.ndarray, float]:
    """``decode(path)``, kept for the file as it is now (keyed by modification time and size);
    the frames are read-only."""
    stat = path.stat()
    return _cached(str(path), stat.st_mtime_ns, stat.st_size)
