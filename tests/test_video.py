"""Decoding real video files written here with PyAV, the real GIF sample and the dancer video."""

import io
import struct
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


# GIFs without TensorFlow ---------------------------------------------------------------------


def _lzw_data(indices: np.ndarray) -> bytes:
    """The LZW minimum code size byte and data sub-blocks of one frame's palette indices, encoded by
    Pillow (a one-frame GIF with a full 256-colour table, whose image data is cut out)."""
    from PIL import Image

    image = Image.fromarray(indices, "P")
    image.putpalette(list(range(256)) * 3)
    buffer = io.BytesIO()
    image.save(buffer, "GIF", optimize=False)
    data = buffer.getvalue()
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # header, screen, global table
    while data[pos] == 0x21:  # skip extensions
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C and not data[pos + 9] & 0x80
    return data[pos + 10 : -1]


def write_gif_by_hand(path, screen, palette, frames):
    """A GIF whose every frame says where it goes, what is transparent, how it is disposed, whether
    it has its own colour table and is interlaced: what optimised GIFs do and Pillow's own reader
    composites differently from TensorFlow's."""
    width, height = screen
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7, 0, 0) + palette.tobytes())
    for frame in frames:
        indices = frame["indices"]
        h, w = indices.shape
        transparency = frame.get("transparency")
        flags = (frame.get("disposal", 0) << 2) | (transparency is not None)
        out += b"!\xf9\x04" + struct.pack("<BHB", flags, 4, transparency or 0) + b"\x00"
        local = frame.get("palette")
        interlaced = frame.get("interlaced", False)
        descriptor = (0x40 if interlaced else 0) | (0x87 if local is not None else 0)
        out += b"," + struct.pack("<HHHHB", frame["left"], frame["top"], w, h, descriptor)
        if local is not None:
            out += local.tobytes()
        if interlaced:  # rows stored in the four interlace passes
            order = [r for start, step in ((0, 8), (4, 8), (2, 4), (1, 2)) for r in range(start, h, step)]
            indices = indices[order]
        out += _lzw_data(np.ascontiguousarray(indices))
    path.write_bytes(bytes(out + b";"))
    return path


def tricky_gif(path):
    rng = np.random.default_rng(7)

    def indices(h, w):
        return rng.integers(0, 256, (h, w), dtype=np.uint8)

    first, later = indices(20, 30), indices(14, 3)
    frames = [
        # Offset on a 30x22 screen and transparent in places: TF draws it at the offset, black
        # around it and where transparent, on a canvas as large as the largest frame (20x30 here,
        # 25x30 with the last frame), not the screen.
        {"indices": first, "left": 2, "top": 1, "transparency": int(first[0, 0])},
        {"indices": indices(9, 19), "left": 1, "top": 6, "disposal": 1, "interlaced": True,
         "palette": rng.integers(0, 256, 768, dtype=np.uint8)},
        # Restore-to-background: TF does not dispose, the next frame is drawn over this one.
        {"indices": later, "left": 14, "top": 2, "transparency": int(later[0, 0]), "disposal": 2},
        {"indices": indices(7, 14), "left": 7, "top": 11, "disposal": 3, "interlaced": True},
        {"indices": indices(25, 12), "left": 25, "top": 0},  # overflows the canvas: clipped
    ]
    return write_gif_by_hand(path, (30, 22), rng.integers(0, 256, 768, dtype=np.uint8), frames)


def test_gifs_decode_without_tensorflow_exactly_as_tensorflow_does(cricket_gif, tmp_path):
    tricky = tricky_gif(tmp_path / "tricky.gif")
    decoded = tmp_path / "decoded.npz"
    code = (
        "import sys, numpy as np; from rajax.data import video;"
        f"cricket = video.read_frames({str(cricket_gif)!r});"
        f"tricky = video.read_frames({str(tricky)!r});"
        f"iterated = np.stack([f for _, f in video.iter_frames({str(cricket_gif)!r})]);"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported';"
        f"np.savez({str(decoded)!r}, cricket=cricket, tricky=tricky, iterated=iterated)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT, timeout=120)
    ours = np.load(decoded)

    import tensorflow as tf  # the independent reference

    for name, path in (("cricket", cricket_gif), ("tricky", tricky)):
        reference = tf.io.decode_gif(tf.io.read_file(str(path))).numpy()
        assert ours[name].shape == reference.shape, name
        for k in range(len(reference)):
            assert np.array_equal(ours[name][k], reference[k]), f"{name} frame {k}"
    assert ours["cricket"].shape == (79, 224, 224, 3) and ours["tricky"].shape == (5, 25, 30, 3)
    np.testing.assert_array_equal(ours["iterated"], ours["cricket"])


def test_broken_gifs_are_video_errors(cricket_gif, tmp_path):
    data = Path(cricket_gif).read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.gif"
    text.write_text("not a GIF at all\n" * 20)
    for path, problem in ((cut, "cannot decode GIF (truncated"), (text, "cannot decode GIF (not a GIF")):
        with pytest.raises(VideoError) as error:
            video.read_frames(path, [0])
        assert str(path) in str(error.value) and problem in str(error.value)


# Decoding straight to a working size ---------------------------------------------------------


def test_scaled_size():
    assert video.scaled_size(496, 518, 256) == (256, 267)  # 518 * 256 / 496 = 267.35
    assert video.scaled_size(1080, 1920, 256) == (256, 455)  # 455.1
    assert video.scaled_size(568, 320, 128) == (227, 128)  # portrait: 227.2
    assert video.scaled_size(100, 150, 50) == (50, 75)
    assert video.scaled_size(100, 153, 50) == (50, 77)  # 76.5: halves round up
    assert video.scaled_size(300, 300, 224) == (224, 224)
    assert video.scaled_size(200, 300, 200) == (200, 300)  # never enlarged
    assert video.scaled_size(200, 300, None) == (200, 300)
    with pytest.raises(ValueError):
        video.scaled_size(200, 300, 0)


def box_resize(frames, size):
    from PIL import Image

    return np.stack(
        [np.asarray(Image.fromarray(f).resize(size[::-1], Image.Resampling.BOX)) for f in frames]
    )


def test_max_side_scales_while_decoding(dancer_video, cricket_gif):
    indices = [3, 400, 250]
    full = video.read_frames(dancer_video, indices)
    small = video.read_frames(dancer_video, indices, max_side=256)
    assert small.shape == (3, 256, 267, 3) and small.dtype == np.uint8
    # swscale's area averaging from YUV against Pillow's box filter over the full-size RGB frames:
    # about 1 grey level apart on average (a few at sharp chroma edges).
    difference = np.abs(small.astype(int) - box_resize(full, (256, 267)))
    assert difference.mean() < 3, difference.mean()
    assert len({frame.tobytes() for frame in small}) == 3
    # A max_side at or above the shorter side changes nothing.
    np.testing.assert_array_equal(video.read_frames(dancer_video, indices, max_side=496), full)
    assert video.read_frames(dancer_video, [], max_side=256).shape == (0, 256, 267, 3)
    # GIFs: Pillow's box filter on the decoded frames.
    gif = video.read_frames(cricket_gif, [0, 40], max_side=112)
    assert gif.shape == (2, 112, 112, 3)
    np.testing.assert_array_equal(gif, box_resize(video.read_frames(cricket_gif, [0, 40]), (112, 112)))
    np.testing.assert_array_equal(next(video.iter_frames(cricket_gif, max_side=112))[1], gif[0])


def test_rotated_phone_video_comes_out_upright_at_the_scaled_size(input_path):
    phone = input_path("data/odd_videos/video_90.mov")
    info = video.probe(phone)
    assert info.rotation in (90, 270) and (info.height, info.width) == (568, 320)
    full = video.read_frames(phone, [0, 2])
    small = video.read_frames(phone, [0, 2], max_side=128)
    assert small.shape == (2, 227, 128, 3)
    difference = np.abs(small.astype(int) - box_resize(full, (227, 128)))
    assert difference.mean() < 4, difference.mean()
    # Upside down or mirrored would be far off.
    assert np.abs(small.astype(int) - box_resize(full[:, ::-1, ::-1], (227, 128))).mean() > 4 * difference.mean()
    np.testing.assert_array_equal(next(video.iter_frames(phone, max_side=128))[1], small[0])


def test_rotation_is_honoured_at_the_scaled_size(tmp_path):
    frames = indexed_frames(2, height=48, width=64)  # red marker at the top-left corner
    path = video.write_video(tmp_path / "rot90.mkv", frames, rotation=90)
    small = video.read_frames(path, max_side=24)  # upright 64x48 -> 32x24
    assert small.shape == (2, 32, 24, 3)
    expected = box_resize(np.rot90(frames, k=1, axes=(1, 2)), (32, 24))
    assert np.abs(small.astype(int) - expected).max() <= 2


_MEMORY_PROBE = """
import sys
from rajax.data import video

def peak_kib():  # this process's peak resident memory (ru_maxrss would count the parent's too)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

path, max_side = sys.argv[1], (int(sys.argv[2]) if sys.argv[2] != "none" else None)
video.probe(path)
video.read_frames(path, [0], max_side=max_side)  # the decoder's own buffers, set up once
before = peak_kib()
frames = video.read_frames(path, max_side=max_side)
print(peak_kib() - before, frames.shape)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_max_side_never_holds_full_size_rgb_frames(tmp_path):
    # 12 frames of 1080p: 75 MB in full-size RGB, 4 MB at max_side 256.
    n, height, width = 12, 1080, 1920
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = (x + 40 * i) % 256
        frames[i, ..., 1] = y % 256
        frames[i, ..., 2] = ((x // 64 + y // 64 + i) % 2) * 200
    path = video.write_video(tmp_path / "hd.mp4", frames, codec="mpeg4")
    del frames, x, y
    full_bytes = n * height * width * 3

    def peak_growth_kib(max_side):
        run = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, str(path), str(max_side).lower()],
            check=True, cwd=PROJECT_ROOT, timeout=180, capture_output=True, text=True,
        )
        growth, shape = run.stdout.strip().split(" ", 1)
        return int(growth), shape

    small_kib, small_shape = peak_growth_kib(256)
    full_kib, full_shape = peak_growth_kib("none")
    print(f"peak RSS growth: max_side=256 {small_kib} KiB, full size {full_kib} KiB")
    assert small_shape == "(12, 256, 455, 3)" and full_shape == "(12, 1080, 1920, 3)"
    assert full_kib * 1024 > full_bytes  # the measurement sees full-size frames when they exist
    assert small_kib * 1024 < full_bytes / 2
