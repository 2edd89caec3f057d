"""Temporal sampling against hand-computed indices."""

import numpy as np
import pytest

from rajax.data import sampling


def windows(*starts, length=8):
    return np.array([np.arange(s, s + length) for s in starts])


def test_uniform_windows_centred_on_equal_segments():
    # 100 frames, 4 segments of 25: centres 12.5, 37.5, 62.5, 87.5; starts = centre - 4, half up.
    np.testing.assert_array_equal(sampling.uniform_timesteps(100, 4, 8), windows(9, 34, 59, 84))


def test_uniform_tiles_a_video_of_exactly_t_times_l_frames():
    np.testing.assert_array_equal(sampling.uniform_timesteps(32, 4, 8), np.arange(32).reshape(4, 8))
    np.testing.assert_array_equal(sampling.uniform_timesteps(512, 64, 8), np.arange(512).reshape(64, 8))


def test_uniform_overlaps_on_short_videos():
    # 10 frames: centres 1.25, 3.75, 6.25, 8.75 -> starts -2.75, -0.25, 2.25, 4.75 -> half up
    # -3, 0, 2, 5 -> kept inside [0, 10 - 8 = 2].
    np.testing.assert_array_equal(sampling.uniform_timesteps(10, 4, 8), windows(0, 0, 2, 2))


def test_uniform_repeats_the_last_frame_of_a_video_shorter_than_a_timestep():
    expected = np.array([[0, 1, 2, 3, 4, 4, 4, 4]] * 3)
    np.testing.assert_array_equal(sampling.uniform_timesteps(5, 3, 8), expected)
    np.testing.assert_array_equal(sampling.uniform_timesteps(1, 2, 4), np.zeros((2, 4), int))


def test_uniform_single_timestep_is_centred():
    np.testing.assert_array_equal(sampling.uniform_timesteps(100, 1, 8), windows(46))


def test_uniform_on_a_long_video():
    steps = sampling.uniform_timesteps(1571, 64, 8)
    assert steps.shape == (64, 8) and steps.dtype == np.int64
    # First: 0.5 * 1571 / 64 - 4 = 8.27 -> 8. Last: 63.5 * 1571 / 64 - 4 = 1554.73 -> 1555.
    assert steps[0, 0] == 8 and steps[-1, 0] == 1555
    assert (np.diff(steps, axis=1) == 1).all()  # consecutive frames inside a timestep
    assert (np.diff(steps[:, 0]) > 0).all()
    assert steps.max() <= 1570


def test_equally_spaced_frames_by_hand():
    np.testing.assert_array_equal(sampling.equally_spaced_frames(10, 4), [1, 3, 6, 8])
    np.testing.assert_array_equal(sampling.equally_spaced_frames(3, 6), [0, 0, 1, 1, 2, 2])
    frames = sampling.equally_spaced_frames(1571, 512)
    assert frames.shape == (512,) and frames[0] == 1 and frames[-1] == 1569
    assert (np.diff(frames) >= 3).all()  # 1571 / 512 = 3.07 frames apart


def test_random_timesteps_are_stratified_and_reproducible():
    # 100 frames, L=8: 93 valid starts cut into 4 parts of 23.25.
    bounds = [(0, 23), (23, 46), (46, 69), (69, 92)]
    starts = []
    for seed in range(300):
        steps = sampling.random_timesteps(100, 4, 8, np.random.default_rng(seed))
        assert (np.diff(steps, axis=1) == 1).all()
        for t, (low, high) in enumerate(bounds):
            assert low <= steps[t, 0] <= high
        starts.append(steps[:, 0])
    starts = np.array(starts)
    assert starts[:, 0].min() == 0 and starts[:, -1].max() == 92  # both ends of the video reachable
    np.testing.assert_array_equal(
        sampling.random_timesteps(100, 4, 8, 7), sampling.random_timesteps(100, 4, 8, 7)
    )
    assert len({tuple(s) for s in starts}) > 250  # really random


def test_random_timesteps_of_a_short_video():
    np.testing.assert_array_equal(
        sampling.random_timesteps(5, 2, 8, 0), np.array([[0, 1, 2, 3, 4, 4, 4, 4]] * 2)
    )


def test_shuffled_timesteps_keep_rows_intact():
    steps = sampling.uniform_timesteps(200, 16, 8)
    shuffled = sampling.shuffle_timesteps(steps, 3)
    assert not np.array_equal(shuffled, steps)
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, steps))


def test_sample_timesteps_by_mode_name():
    np.testing.assert_array_equal(
        sampling.sample_timesteps("uniform", 100, 4, 8), sampling.uniform_timesteps(100, 4, 8)
    )
    np.testing.assert_array_equal(
        sampling.sample_timesteps("equally_spaced", 10, 2, 2), np.array([[1, 3], [6, 8]])
    )
    np.testing.assert_array_equal(
        sampling.sample_timesteps("random", 100, 4, 8, rng=5), sampling.random_timesteps(100, 4, 8, 5)
    )
    shuffled = sampling.sample_timesteps("uniform", 100, 4, 8, shuffled=True, rng=1)
    np.testing.assert_array_equal(shuffled, sampling.shuffle_timesteps(sampling.uniform_timesteps(100, 4, 8), 1))
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sampling.sample_timesteps("dense", 100)


def test_invalid_counts():
    with pytest.raises(ValueError):
        sampling.uniform_timesteps(0, 4, 8)
    with pytest.raises(ValueError):
        sampling.equally_spaced_frames(10, 0)
