"""`rajax classify` end to end on the real Kinetics sample clip, and its handling of bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def classify(*args, weights_dir):
    env = {**os.environ, "RAJAX_WEIGHTS_DIR": str(weights_dir)}
    return subprocess.run(
        [sys.executable, "-m", "rajax", "classify", *map(str, args)], capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


def test_cricket_clip_is_playing_cricket_and_the_default_weights_are_converted_once(cricket_gif, weights_dir):
    done = classify(cricket_gif, "--json", "--top-k", "3", weights_dir=weights_dir)
    assert done.returncode == 0, done.stderr
    assert "Converting the Kinetics-400 I3D weights" in done.stderr
    assert (weights_dir / "i3d-kinetics-400" / "rajax_i3d.json").is_file()
    top = json.loads(done.stdout)
    assert [p["label"] for p in top][0] == "playing cricket"
    assert len(top) == 3 and set(top[0]) == {"label", "logit", "probability"}
    assert top[0]["probability"] > 0.9
    assert top[0]["logit"] >= top[1]["logit"] >= top[2]["logit"]

    text = classify(cricket_gif, "--top-k", "2", weights_dir=weights_dir)
    assert text.returncode == 0, text.stderr
    assert "Converting" not in text.stderr  # converted once, reused
    lines = text.stdout.strip().splitlines()
    assert "79 frames" in lines[0]
    assert lines[1].split()[:3] == ["1.", "playing", "cricket"]


def test_network_range_npy_gives_the_same_prediction_as_the_video(cricket_gif, weights_dir, tmp_path):
    from rajax.commands.classify import load_clip

    clip = load_clip(cricket_gif)
    assert clip.shape == (1, 79, 224, 224, 3) and clip.min() >= -1 and clip.max() <= 1
    np.save(tmp_path / "clip.npy", clip[0])  # [T, 224, 224, 3]
    done = classify(tmp_path / "clip.npy", "--json", "--top-k", "1", weights_dir=weights_dir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["label"] == "playing cricket"


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    wrong_shape = tmp_path / "wrong_shape.npy"
    np.save(wrong_shape, np.zeros((8, 112, 112, 3), np.float32))
    out_of_range = tmp_path / "pixels.npy"
    np.save(out_of_range, np.full((8, 224, 224, 3), 255.0, np.float32))
    no_frames = tmp_path / "no_frames.npy"
    np.save(no_frames, np.zeros((0, 224, 224, 3), np.float32))
    return {
        tmp_path / "missing.mp4": "no such file",
        text: "not a readable video",
        empty: "empty",
        wrong_shape: "expected shape [T, 224, 224, 3]",
        out_of_range: "values must lie in [-1, 1]",
        no_frames: "no frames",
    }


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, weights_dir):
    for path, problem in _bad_inputs(tmp_path).items():
        done = classify(path, weights_dir=weights_dir)
        assert done.returncode == 2, (path, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith(f"rajax classify: error: {path}"), lines[0]
        assert problem in lines[0], lines[0]


def test_shipped_label_list_is_deepminds(kinetics_labels_file):
    import rajax

    expected = [line.strip() for line in kinetics_labels_file.read_text().splitlines() if line.strip()]
    assert rajax.kinetics400_labels() == expected
    assert len(expected) == 400


def test_several_videos_and_a_folder_give_one_json_line_each_and_a_bad_one_its_own_error(
        cricket_gif, input_path, weights_dir, tmp_path):
    """Videos of three sizes and lengths, sampled to 32 frames: one program for all; a broken file
    in the folder is one error line and exit status 1, the others are classified."""
    folder = tmp_path / "clips"
    folder.mkdir()
    pancake = input_path("data/kinetics_clips/flipping_pancake.mkv")
    (folder / "pancake.mkv").symlink_to(pancake)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 8)
    wrestling = input_path("data/kinetics_clips/arm_wrestling.mp4")
    done = classify(cricket_gif, wrestling, folder, "--frames", "32", "--top-k", "2", weights_dir=weights_dir)
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(cricket_gif), str(wrestling), str(folder / "broken.mp4"),
                                                 str(folder / "pancake.mkv")]
    good = [line for line in lines if "error" not in line]
    assert [line["predictions"][0]["label"] for line in good] == ["playing cricket", "arm wrestling",
                                                                  "flipping pancake"]
    assert all(line["frames"] == 32 and len(line["predictions"]) == 2 for line in good)
    assert lines[2]["error"].startswith(str(folder / "broken.mp4"))
    assert done.stderr.strip().splitlines()[-1] == "rajax classify: 1 of 4 input(s) could not be classified"
    # The same 32 frames of one video, classified alone, give the same logits.
    alone = classify(wrestling, "--frames", "32", "--top-k", "2", "--json", weights_dir=weights_dir)
    assert alone.returncode == 0, alone.stderr
    for ours, theirs in zip(json.loads(alone.stdout), lines[1]["predictions"]):
        assert ours["label"] == theirs["label"] and ours["logit"] == pytest.approx(theirs["logit"], abs=1e-4)
    wrong = classify(wrestling, "--frames", "30", weights_dir=weights_dir)
    assert wrong.returncode == 2 and "--frames must be 'all' or a positive multiple of 8" in wrong.stderr
