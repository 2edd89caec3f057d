"""The pipeline benchmark's inputs: the generated Breakfast-format video, and for each input its
manual folder, TFDS build (cached by content key) and ``--videos`` symlinks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def breakfast_frames(num_frames: int, height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """Synthetic Breakfast-format frames: a scrolling blocky texture, four moving discs and
    per-pixel noise, so that MPEG-4 spends a realistic number of bits on them."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(40, 216, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    texture = texture.repeat(8, 0).repeat(8, 1)[:height, :width].astype(np.int16)
    y, x = np.mgrid[0:height, 0:width]
    colours = np.array([[200, 60, 40], [40, 180, 90], [230, 220, 60], [60, 90, 210]], np.int16)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frame = np.roll(texture, (i // 3, i // 2), axis=(0, 1))
        for k in range(4):
            cx = width / 2 + width / 3 * np.sin(i / 40 + 1.7 * k)
            cy = height / 2 + height / 3 * np.cos(i / 55 + k)
            frame[(x - cx) ** 2 + (y - cy) ** 2 < (18 + 8 * k) ** 2] = colours[k]
        frame = frame + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
        frames[i] = np.clip(frame, 0, 255)
    return frames


def breakfast_video(cache: Path, num_frames: int) -> Path:
    from rajax.data import video

    path = cache / f"breakfast_format_{num_frames}" / "manual" / "clip" / "breakfast_format.avi"
    if not path.exists():
        print(f"writing a Breakfast-format video ({num_frames} frames, 320x240, 15 fps) to {path}", flush=True)
        video.write_video(path, breakfast_frames(num_frames), fps=15)
    return path


def prepare_input(name: str, path: Path, cache: Path, args) -> dict:
    """The input's manual folder, TFDS build (cached by content key) and ``--videos`` symlinks."""
    import tensorflow_datasets as tfds

    from rajax.data import video
    from rajax.datasets.video_folder import VideoFolder

    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha1(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache / f"{name}_{key}"
    manual = folder / "manual"
    if not (manual / "clip" / path.name).exists():
        (manual / "clip").mkdir(parents=True, exist_ok=True)
        (manual / "clip" / path.name).symlink_to(path)
    data_dir = folder / "tfds"
    builder = VideoFolder(data_dir=str(data_dir))
    if not builder.is_prepared():
        print(f"building the TFDS frames of {path.name} in {data_dir}", flush=True)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    links = folder / "links"
    links.mkdir(exist_ok=True)
    paths = []
    for i in range(args.videos):
        link = links / f"v{i:03d}{path.suffix}"
        if not link.is_symlink():
            link.symlink_to(path)
        paths.append(str(link))
    info = video.probe(path)
    return {
        "name": name,
        "path": str(path),
        "bytes": stat.st_size,
        "num_frames": info.num_frames,
        "size": f"{info.width}x{info.height}",
        "fps": info.fps,
        "links": paths,
        "tfds_data_dir": str(data_dir),
        "probe_dir": str(folder / "probe"),
    }
