"""Which frames of a video make up a sample: pure functions of the frame count.

A sample is ``T`` timesteps of ``L`` consecutive frames (the paper: T=64, L=8, 512 frames), returned
as an int array ``[T, L]`` of frame indices in ``[0, num_frames)``. Flattened row by row it is the
``T*L`` frames that I3D reads; I3D's temporal stride of 8 then gives one feature per timestep.

- ``uniform_timesteps``: the video is cut into ``T`` equal segments and each timestep is the
  ``L``-frame window centred on its segment's centre (moved inside the video at the ends). A short
  video gives overlapping windows; a video of exactly ``T*L`` frames is tiled without overlap. A
  video shorter than ``L`` frames repeats its last frame.
- ``equally_spaced_frames``: ``n`` single frames at the segment centres (the paper's "512 equally
  spaced frames" ablation: no run of consecutive frames at all).
- ``random_timesteps``: training augmentation. Window starts are stratified: the range of valid
  starts is cut into ``T`` equal parts and each timestep starts at a uniformly random point of its
  part, so the timesteps stay in temporal order and still cover the whole video.
- ``shuffle_timesteps``: the same windows in a random order (the "shuffled timesteps" ablation).

Rounding is half-up (``floor(x + 0.5)``), never NumPy's round-half-to-even, so the indices are easy
to compute by hand.
"""

from __future__ import annotations

import numpy as np

SAMPLING_MODES = ("uniform", "equally_spaced", "random")


def _half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def _check(num_frames: int, num_timesteps: int, timestep_length: int = 1) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_timesteps < 1 or timestep_length < 1:
        raise ValueError(
            f"num_timesteps and timestep_length must be >= 1, got {num_timesteps}, {timestep_length}"
        )


def _windows(starts: np.ndarray, num_frames: int, timestep_length: int) -> np.ndarray:
    # Clipping to the last frame only matters when the video is shorter than one window.
    windows = starts[:, None] + np.arange(timestep_length)[None, :]
    return np.minimum(windows, num_frames - 1).astype(np.int64)


def uniform_timesteps(num_frames: int, num_timesteps: int = 64, timestep_length: int = 8) -> np.ndarray:
    """``[T, L]`` frame indices: ``T`` windows of ``L`` frames centred on ``T`` equal segments."""
    _check(num_frames, num_timesteps, timestep_length)
    centres = (np.arange(num_timesteps) + 0.5) * num_frames / num_timesteps
    starts = _half_up(centres - timestep_length / 2)
    starts = np.clip(starts, 0, max(num_frames - timestep_length, 0))
    return _windows(starts, num_frames, timestep_length)


def equally_spaced_frames(num_frames: int, n: int = 512) -> np.ndarray:
    """``[n]`` frame indices, one per segment of ``num_frames / n`` frames (its centre frame)."""
    _check(num_frames, n)
    indices = np.floor((np.arange(n) + 0.5) * num_frames / n).astype(np.int64)
    return np.minimum(indices, num_frames - 1)


def random_timesteps(
    num_frames: int,
    num_timesteps: int = 64,
    timestep_length: int = 8,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """``[T, L]`` frame indices with stratified random window starts, in temporal order."""
    _check(num_frames, num_timesteps, timestep_length)
    rng = np.random.default_rng(rng)
    num_starts = max(num_frames - timestep_length + 1, 1)  # valid starts: 0 .. num_starts - 1
    part = num_starts / num_timesteps
    starts = np.floor((np.arange(num_timesteps) + rng.random(num_timesteps)) * part).astype(np.int64)
    starts = np.minimum(starts, num_starts - 1)
    return _windows(starts, num_frames, timestep_length)


def shuffle_timesteps(timesteps: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """The rows of ``timesteps`` ([T, L]) in a random order; frames inside a timestep keep theirs."""
    rng = np.random.default_rng(rng)
    return np.asarray(timesteps)[rng.permutation(len(timesteps))]


def sample_timesteps(
    mode: str,
    num_frames: int,
    num_timesteps: int = 64,
    timestep_length: int = 8,
    *,
    shuffled: bool = False,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """``[T, L]`` frame indices for a sampling mode named in ``SAMPLING_MODES``.

    ``equally_spaced`` gives ``T*L`` single equally spaced frames, grouped ``L`` to a row so every
    mode has the same shape. ``shuffled`` permutes the rows. ``rng`` (a Generator or a seed) drives
    ``random`` and ``shuffled``; the other modes ignore it.
    """
    rng = np.random.default_rng(rng)
    if mode == "uniform":
        timesteps = uniform_timesteps(num_frames, num_timesteps, timestep_length)
    elif mode == "equally_spaced":
        timesteps = equally_spaced_frames(num_frames, num_timesteps * timestep_length).reshape(
            num_timesteps, timestep_length
        )
    elif mode == "random":
        timesteps = random_timesteps(num_frames, num_timesteps, timestep_length, rng)
    else:
        raise ValueError(f"unknown sampling mode {mode!r}; choose one of {', '.join(SAMPLING_MODES)}")
    return shuffle_timesteps(timesteps, rng) if shuffled else timesteps
