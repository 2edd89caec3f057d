"""Decoding real video files written here with PyAV, the real GIF sample and the dancer video."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rajax.data import sampling, video
from rajax.errors import VideoError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def indexed_frames(n, height=24, width=32):
    """Frames whose pixel value encodes the frame index (3*i), plus a bright top-left marker."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i] = (3 * i) % 256
        frames[i, 0:4, 0:6] = (255, 0, 0)  # a red marker in the top-left corner
    return frames


@pytest.fixture(scope="module")
def lossless(tmp_path_factory):
    frames = indexed_frames(40)
    path = video.write_video(tmp_path_factory.mktemp("video") / "indexed.mkv", frames, fps=12)
    return path, frames


def test_probe_reads_count_rate_and_size(lossless):
    path, frames = lossless
    info = video.probe(path)
    assert (info.num_frames, info.fps, info.height, info.width, info.rotation) == (40, 12.0, 24, 32, 0)
    assert info.path == str(path)
    assert video.probe(path) is info  # cached


def test_probe_cache_notices_a_rewritten_file(tmp_path):
    path = video.write_video(tmp_path / "v.mkv", indexed_frames(10))
    assert video.probe(path).num_frames == 10
    video.write_video(path, indexed_frames(14))
    assert video.probe(path).num_frames == 14


def test_read_frames_follows_indices_in_any_order_with_repeats(lossless):
    path, frames = lossless
    indices = [5, 0, 39, 5, 17, 17, 2]
    out = video.read_frames(path, indices)
    assert out.dtype == np.uint8 and out.shape == (7, 24, 32, 3)
    np.testing.assert_array_equal(out, frames[indices])


def test_read_all_frames_and_iter_frames_agree(lossless):
    path, frames = lossless
    np.testing.assert_array_equal(video.read_frames(path), frames)
    seen = list(video.iter_frames(path, every=3))
    assert [i for i, _ in seen] == list(range(0, 40, 3))
    for index, frame in seen:
        np.testing.assert_array_equal(frame, frames[index])


def test_encoded_bytes_decode_like_the_file(lossless):
    path, frames = lossless
    data = Path(path).read_bytes()
    assert video.probe("anything.mkv", data=data).num_frames == 40
    np.testing.assert_array_equal(video.read_frames("anything.mkv", [3, 30], data=data), frames[[3, 30]])


def test_grayscale_becomes_rgb(tmp_path):
    gray = indexed_frames(6)[..., 1]  # [N, H, W]
    path = video.write_video(tmp_path / "gray.mkv", gray)
    out = video.read_frames(path)
    assert out.shape == (6, 24, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_odd_frame_size_in_a_lossy_codec(tmp_path):
    frames = np.full((8, 21, 33, 3), 120, np.uint8)
    path = video.write_video(tmp_path / "odd.avi", frames)
    info = video.probe(path)
    assert (info.height, info.width, info.num_frames) == (21, 33, 8)
    out = video.read_frames(path)
    assert out.shape == (8, 21, 33, 3)
    assert np.abs(out.astype(int) - 120).max() <= 4  # MPEG-4 is lossy, but a flat frame stays flat


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    frames = indexed_frames(3)
    path = video.write_video(tmp_path / f"rot{rotation}.mkv", frames, rotation=rotation)
    info = video.probe(path)
    assert info.rotation == rotation
    expected = np.rot90(frames, k=rotation // 90, axes=(1, 2))  # counter-clockwise
    assert (info.height, info.width) == expected.shape[1:3]
    np.testing.assert_array_equal(video.read_frames(path), expected)
    np.testing.assert_array_equal(next(video.iter_frames(path))[1], expected[0])


def test_gif_frames(tmp_path):
    # A yellow bar moving right; the 8-bit GIF palette turns 255 into 252, so compare thresholded.
    frames = np.zeros((5, 16, 20, 3), np.uint8)
    for i in range(5):
        frames[i, :, 4 * i : 4 * i + 4] = (255, 255, 0)
    path = video.write_video(tmp_path / "moving.gif", frames, fps=10)
    info = video.probe(path)
    assert (info.num_frames, info.height, info.width) == (5, 16, 20)
    np.testing.assert_array_equal(video.read_frames(path, [4, 1]) > 128, frames[[4, 1]] > 128)
    np.testing.assert_array_equal(np.stack([f for _, f in video.iter_frames(path)]) > 128, frames > 128)


def test_real_kinetics_gif(cricket_gif):
    info = video.probe(cricket_gif)
    assert (info.num_frames, info.height, info.width) == (79, 224, 224)
    frames = video.read_frames(cricket_gif, [0, 78])
    assert frames.shape == (2, 224, 224, 3) and frames.std() > 10  # real content, not blank


def test_container_decoding_never_imports_tensorflow(lossless):
    # The detection process imports torchvision, which crashes after TensorFlow.
    path, _ = lossless
    code = (
        "import sys; from rajax.data import video, sampling, regions;"
        f"video.probe({str(path)!r}); video.read_frames({str(path)!r}, [1]);"
        f"list(video.iter_frames({str(path)!r}, every=10));"
        "regions.central_square_crop(video.read_frames(" + repr(str(path)) + ", [0]));"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT, timeout=120)


def test_dancer_video_at_length(dancer_video):
    info = video.probe(dancer_video)
    # The AVI header says 1572 frames; 1571 decode (the last packet is empty).
    assert (info.num_frames, info.fps, info.height, info.width) == (1571, 25.0, 496, 518)
    indices = sampling.uniform_timesteps(info.num_frames, 64, 8).reshape(-1)
    sampled = video.read_frames(dancer_video, indices)
    assert sampled.shape == (512, 496, 518, 3)
    # Check against the other decoding path (sequential iteration), on the first frame of every
    # 8th timestep and the whole last timestep, without keeping 512 full frames twice in memory.
    positions = list(range(0, 512, 64)) + list(range(504, 512))
    wanted = {int(indices[p]) for p in positions}
    by_index = {i: frame for i, frame in video.iter_frames(dancer_video) if i in wanted}
    assert set(by_index) == wanted
    for p in positions:
        np.testing.assert_array_equal(sampled[p], by_index[int(indices[p])])
    assert len({sampled[p].tobytes() for p in positions}) == len(positions)  # the dancer moves
    last = video.read_frames(dancer_video, [info.num_frames - 1])
    assert last.shape == (1, 496, 518, 3)


# Bad input ------------------------------------------------------------------------------------


def test_missing_empty_directory_and_non_video_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.avi"
    text.write_text("not a video at all\n" * 50)
    cases = {
        tmp_path / "missing.mp4": "no such file",
        empty: "empty file",
        tmp_path: "is a directory",
        text: "not a",
    }
    for path, problem in cases.items():
        with pytest.raises(VideoError) as error:
            video.read_frames(path, [0])
        assert str(path) in str(error.value) and problem in str(error.value)


@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".mp4"])
def test_truncated_videos(tmp_path, suffix):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (60, 32, 48, 3), dtype=np.uint8)  # noise: large packets
    data = video.write_video(tmp_path / f"full{suffix}", frames).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError) as error:
        video.read_frames(cut, [0])
    assert str(cut) in str(error.value)
    assert "truncated" in str(error.value) or "not a readable video" in str(error.value)


def test_too_few_frames_and_out_of_range_index(lossless):
    path, _ = lossless
    with pytest.raises(VideoError, match=r"too few frames: 40, at least 64"):
        video.require_frames(path, 64)
    assert video.require_frames(path, 40).num_frames == 40
    with pytest.raises(VideoError, match=r"frame index 40 out of range"):
        video.read_frames(path, [0, 40])


def test_write_video_leaves_no_partial_file(tmp_path):
    with pytest.raises(ValueError):
        video.write_video(tmp_path / "bad.mkv", np.zeros((0, 8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
