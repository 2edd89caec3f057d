"""`rajax regions` on a real video, with and without an actor-record file."""

import json
import os

import numpy as np
from PIL import Image

from rajax.cli import main
from rajax.commands.regions import find_actor_square
from rajax.data import video


def write_actor_file(path, video_path, square, fallback=False):
    record = {
        "path": str(video_path),
        "resolved_path": os.path.realpath(video_path),
        "actor_square": list(square),
        "fallback": fallback,
    }
    path.write_text(json.dumps(record) + "\n")
    return path


def test_regions_png_with_actor(tmp_path, capsys):
    frames = np.zeros((12, 60, 80, 3), np.uint8)
    frames[:, 20:50, 30:45] = (0, 200, 0)  # a green "person"
    clip = video.write_video(tmp_path / "clip.mkv", frames)
    actors = write_actor_file(tmp_path / "actors.jsonl", clip, (10, 15, 36))
    output = tmp_path / "regions.png"
    assert main(["regions", str(clip), "--actors", str(actors), "--output", str(output), "--size", "32"]) == 0
    assert "actor square [10, 15, 36]" in capsys.readouterr().err
    image = np.asarray(Image.open(output).convert("RGB"))
    assert image.shape[1] > image.shape[0] > 300  # the frame on the left, the crops beside it
    red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
    assert red.sum() > 500  # the actor box and the actor crop's frame are drawn in red
    green = (image[..., 1] > 150) & (image[..., 0] < 80)
    assert green.sum() > 2000  # the person shows in the frame and in the crops


def test_regions_without_actor_file_and_bad_frame(tmp_path, capsys):
    clip = video.write_video(tmp_path / "clip.mkv", np.full((5, 40, 40, 3), 90, np.uint8))
    output = tmp_path / "out.png"
    assert main(["regions", str(clip), "--output", str(output), "--regions", "full,grid_1_1"]) == 0
    assert output.is_file() and "actor region = full frame" in capsys.readouterr().err
    assert main(["regions", str(clip), "--output", str(output), "--frame", "5"]) == 2
    assert "--frame 5" in capsys.readouterr().err
    assert main(["regions", str(tmp_path / "missing.mp4"), "--output", str(output)]) == 2
    assert "missing.mp4: no such file" in capsys.readouterr().err


def test_find_actor_square(tmp_path):
    clip = tmp_path / "v.mkv"
    other = tmp_path / "other.mkv"
    actors = write_actor_file(tmp_path / "a.jsonl", clip, (1, 2, 3))
    assert find_actor_square(str(clip), str(actors))[0] == (1, 2, 3)
    assert find_actor_square(str(other), str(actors)) == (None, f"{other} not in {actors}: actor region = full frame")
    fallback = write_actor_file(tmp_path / "b.jsonl", clip, (0, 0, 40), fallback=True)
    assert find_actor_square(str(clip), str(fallback))[0] is None
    assert find_actor_square(str(clip), None)[0] is None
