"""``rajax detect-actors``: real YOLO on the real dancer video, the record file, resuming, failures.

The detector runs in its own process (rajax.detection.worker), so these tests never import torch
themselves. The detection tests share one run (``first_run``) over the dancer video, a plain-colour
video (no person: fallback) and a file that is not a video, with ``--every 130`` (13 frames of the
dancer) to stay fast on 2 CPU cores.
"""

import fcntl
import json
import math
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from rajax import actor_records, cli
from rajax.data import video
from rajax.detection import (
    detect_actors,
    find_videos,
    load_actor_records,
    summarize,
    video_key,
)
from rajax.errors import RajaxError, WeightsError

# Meant to keep this file on one worker under `pytest -n 2 --dist loadgroup` (see first_run).
pytestmark = pytest.mark.xdist_group("detect_actors")

EVERY = 130
PLAIN_HEIGHT, PLAIN_WIDTH = 96, 64  # portrait, so the square frame is offset vertically


def write_plain_video(path: Path, height: int, width: int, frames: int = 12) -> Path:
    """A video of one flat colour (no person anywhere), written with PyAV."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        image = np.zeros((height, width, 3), np.uint8)
        image[...] = (90, 160, 60)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def person_mask(frame: np.ndarray) -> np.ndarray:
    """Pixels of the dancer, independently of any detector: she stands in front of a blue wall.

    Background pixels are bright blue; the dancer's black clothes are dark and her skin and gloves
    are redder than they are blue.
    """
    red, blue = frame[..., 0].astype(int), frame[..., 2].astype(int)
    return (blue < 0.6 * np.median(blue)) | (red > blue)


def mask_box(mask: np.ndarray, min_pixels: int = 4) -> list[int]:
    """xyxy bounds of the rows and columns holding at least ``min_pixels`` mask pixels (no specks)."""
    rows = np.nonzero(mask.sum(axis=1) >= min_pixels)[0]
    cols = np.nonzero(mask.sum(axis=0) >= min_pixels)[0]
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


def _session_dir(tmp_path_factory) -> Path:
    """A folder shared by every xdist worker of this test session (the base temp dir otherwise)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, dancer_video, yolo_weights):
    """One detection run over the dancer, a plain video and a broken file, made once per session.

    The xdist_group mark above does not keep this file on one worker with pytest 9.2 and
    pytest-xdist 3.8 (pytest-dev/pytest-xdist#1386), so the workers share the run through a lock.
    """
    shared = _session_dir(tmp_path_factory)
    base = shared / "detect-actors-first-run"
    with open(shared / "detect-actors-first-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # The first worker runs the detection, the others wait.
        if not (base / "records.json").is_file():
            clips = base / "clips"
            clips.mkdir(parents=True, exist_ok=True)
            write_plain_video(clips / "plain.mp4", PLAIN_HEIGHT, PLAIN_WIDTH)
            (clips / "broken.mp4").write_text("this is not a video\n")
            (clips / "notes.txt").write_text("not a video suffix: ignored\n")
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("XDG_CACHE_HOME", str(base / "cache"))  # Ultralytics' settings file goes here
                records = detect_actors([dancer_video, clips], base / "actors.jsonl",
                                        detector_weights=yolo_weights, every=EVERY, progress=False)
            (base / "records.json").write_text(json.dumps(records))
    return {
        "records": json.loads((base / "records.json").read_text()),
        "output": base / "actors.jsonl",
        "content": (base / "actors.jsonl").read_bytes(),
        "dancer": str(dancer_video),
        "plain": str(base / "clips" / "plain.mp4"),
        "broken": str(base / "clips" / "broken.mp4"),
        "weights": str(yolo_weights),
        "cache": str(base / "cache"),
    }


@pytest.mark.slow
def test_first_run_reports_every_video_in_order(first_run):
    records = first_run["records"]
    assert [r["path"] for r in records] == [first_run["dancer"], first_run["broken"], first_run["plain"]]
    assert [r["status"] for r in records] == ["done", "failed", "done"]
    assert summarize(records) == {"videos": 3, "done": 2, "skipped": 0, "failed": 1, "fallbacks": 1}
    # The file holds the same records, minus the status, one per line.
    lines = first_run["content"].decode().splitlines()
    stored = [{key: value for key, value in r.items() if key != "status"} for r in records]
    assert [json.loads(line) for line in lines] == stored


@pytest.mark.slow
def test_dancer_actor_square_covers_the_dancer(first_run, dancer_video):
    record = load_actor_records(first_run["output"])[video_key(dancer_video)]
    info = video.probe(dancer_video)
    examined = list(range(0, info.num_frames, EVERY))
    assert record["num_frames"] == info.num_frames
    assert (record["height"], record["width"]) == (info.height, info.width) == (496, 518)
    assert record["frames_examined"] == len(examined) == math.ceil(info.num_frames / EVERY)
    assert record["frames_with_person"] >= len(examined) - 1
    assert record["fallback"] is False
    assert record["detector"] == first_run["weights"]

    # Where the dancer is, from the pixels of the same frames.
    frames = video.read_frames(dancer_video, examined)
    masks = [person_mask(frame) for frame in frames]
    expected_box = np.mean([mask_box(mask) for mask in masks], axis=0)
    np.testing.assert_allclose(record["mean_box_xyxy"], expected_box, atol=12)

    x0, y0, x1, y1 = record["actor_square_xyxy"]
    assert x1 - x0 == y1 - y0 == record["actor_square"][2]
    # The actor square holds the averaged silhouette box and nearly all the dancer's pixels ...
    assert x0 <= expected_box[0] + 3 and expected_box[2] - 3 <= x1
    assert y0 <= expected_box[1] + 3 and expected_box[3] - 3 <= y1
    inside = sum(int(mask[y0:y1, x0:x1].sum()) for mask in masks)
    assert inside >= 0.97 * sum(int(mask.sum()) for mask in masks)
    # ... and is not simply the whole frame.
    assert record["square_side"] == 496
    assert record["actor_square"][2] <= 0.85 * record["square_side"]
    # Square-frame coordinates are the original ones minus the central crop offset (11, 0).
    left, top, side = record["actor_square"]
    assert [left + 11, top, left + 11 + side, top + side] == record["actor_square_xyxy"]
    assert 0 <= left and left + side <= 496 and 0 <= top and top + side <= 496


@pytest.mark.slow
def test_plain_video_falls_back_to_the_full_square_frame(first_run):
    record = load_actor_records(first_run["output"])[video_key(first_run["plain"])]
    assert record["fallback"] is True
    assert record["frames_examined"] == 1 and record["frames_with_person"] == 0  # 12 frames, every 130th
    assert record["mean_box_xyxy"] is None and record["mean_confidence"] is None
    # Portrait 96x64: the square frame is 64 px, 16 px down from the top.
    assert record["square_side"] == 64
    assert record["actor_square"] == [0, 0, 64]
    assert record["actor_square_xyxy"] == [0, 16, 64, 80]


@pytest.mark.slow
def test_bad_video_is_reported_and_kept_out_of_the_records(first_run):
    failed = [r for r in first_run["records"] if r["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["path"] == first_run["broken"]
    assert first_run["broken"] in failed[0]["error"]  # the message names the file
    records = load_actor_records(first_run["output"])
    assert set(records) == {video_key(first_run["dancer"]), video_key(first_run["plain"])}


@pytest.mark.slow
def test_rerun_redoes_nothing_and_leaves_the_file_untouched(first_run, tmp_path, monkeypatch):
    output = tmp_path / "actors.jsonl"
    shutil.copy(first_run["output"], output)
    monkeypatch.setenv("XDG_CACHE_HOME", first_run["cache"])
    # The same videos by other spellings: a relative path and a symbolic link.
    monkeypatch.chdir(Path(first_run["plain"]).parent)
    link = tmp_path / "dancer-link.avi"
    link.symlink_to(first_run["dancer"])
    records = detect_actors([link, "plain.mp4"], output, detector_weights=first_run["weights"],
                            every=EVERY, progress=False)
    assert [r["status"] for r in records] == ["skipped", "skipped"]
    assert output.read_bytes() == first_run["content"]
    stored = load_actor_records(output)
    assert records[0]["actor_square"] == stored[video_key(first_run["dancer"])]["actor_square"]
    assert summarize(records) == {"videos": 2, "done": 0, "skipped": 2, "failed": 0, "fallbacks": 1}


@pytest.mark.slow
def test_cli_resumes_after_a_cut_off_last_line(first_run, tmp_path, monkeypatch, capfd):
    # As if the run had been killed while writing the plain video's record.
    dancer_line, _, plain_line = first_run["content"].decode().splitlines(keepends=True)
    output = tmp_path / "actors.jsonl"
    output.write_text(dancer_line + plain_line[: len(plain_line) // 2])
    monkeypatch.setenv("XDG_CACHE_HOME", first_run["cache"])
    argv = ["detect-actors", first_run["dancer"], first_run["plain"], first_run["broken"],
            "--output", str(output), "--detector-weights", first_run["weights"], "--every", str(EVERY),
            "--json"]
    status = cli.main(argv)
    out, err = capfd.readouterr()
    result = json.loads(out)  # stdout is the JSON document and nothing else, even from the worker
    assert f"skipping {first_run['broken']}" in err  # the bad video is reported as it is met
    assert "3 videos: 1 detected, 1 already in" in err and "1 failed" in err
    assert status == 1  # a video failed
    assert result["summary"] == {"videos": 3, "done": 1, "skipped": 1, "failed": 1, "fallbacks": 1}
    assert [r["status"] for r in result["records"]] == ["skipped", "done", "failed"]
    # The cut-off line is gone; every line is a whole record; the plain video was detected again.
    lines = output.read_text().splitlines()
    assert [json.loads(line)["path"] for line in lines] == [first_run["dancer"], first_run["plain"],
                                                            first_run["broken"]]
    assert lines[0] + "\n" == dancer_line and lines[1] + "\n" == plain_line
    assert set(load_actor_records(output)) == {video_key(first_run["dancer"]), video_key(first_run["plain"])}


@pytest.mark.slow
def test_default_detector_offline_asks_for_local_weights(first_run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    output = tmp_path / "actors.jsonl"
    with pytest.raises(WeightsError, match="--detector-weights"):
        detect_actors([first_run["plain"]], output, progress=False)
    assert not output.exists() or output.read_bytes() == b""
    assert not (tmp_path / "empty-cache" / "rajax" / "yolo11n.pt").exists()


@pytest.mark.slow
def test_unusable_device_stops_the_run_before_any_video(first_run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", first_run["cache"])
    output = tmp_path / "actors.jsonl"
    with pytest.raises(RajaxError, match="--device no-such-device"):
        detect_actors([first_run["plain"]], output, detector_weights=first_run["weights"],
                      device="no-such-device", progress=False)
    assert not output.exists() or output.read_bytes() == b""


# ---------------------------------------------------------------------------------------------
# Fast checks: argument errors, folder expansion, the record file.


def test_missing_weights_and_bad_every_are_reported_before_any_work(tmp_path, dancer_video):
    with pytest.raises(WeightsError, match="no-such.pt"):
        detect_actors([dancer_video], tmp_path / "out.jsonl", detector_weights=tmp_path / "no-such.pt")
    with pytest.raises(RajaxError, match="--every"):
        detect_actors([dancer_video], tmp_path / "out.jsonl", every=0)
    with pytest.raises(RajaxError, match="no videos"):
        detect_actors([tmp_path], tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_find_videos_searches_folders_and_drops_duplicates(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".cache").mkdir()
    for name in ["b/z.MP4", "b/a.avi", "top.gif", "notes.txt", ".hidden.mp4", ".cache/c.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    found = find_videos([tmp_path, tmp_path / "top.gif", "missing.mp4"])
    assert found == [str(tmp_path / "top.gif"), str(tmp_path / "b" / "a.avi"), str(tmp_path / "b" / "z.MP4"),
                     "missing.mp4"]


def record(path: str, **fields) -> dict:
    return {"path": path, "resolved_path": video_key(path), **fields}


def test_cut_off_last_line_is_ignored_then_removed_before_appending(tmp_path):
    path = tmp_path / "actors.jsonl"
    whole = json.dumps(record("/v/a.mp4", actor_square=[1, 2, 3])) + "\n"
    path.write_text(whole + json.dumps(record("/v/b.mp4"))[:20])
    assert [r["path"] for r in actor_records.read_records(path)] == ["/v/a.mp4"]
    assert [r["path"] for r in actor_records.prepare_output(path)] == ["/v/a.mp4"]
    assert path.read_text() == whole
    actor_records.append_record(path, record("/v/b.mp4", actor_square=[0, 0, 9]))
    assert list(load_actor_records(path)) == [video_key("/v/a.mp4"), video_key("/v/b.mp4")]


@pytest.mark.parametrize("tail", [
    b'{"pa',  # cut inside the record prefix
    b"{",
    b"\0" * 4096,  # a power loss: the size grew but the page never made it to the disk
    b'{"path": "/v/b.mp4", "resolved_pa' + b"\0" * 300,
], ids=["short-prefix", "brace", "nul-page", "record-then-nuls"])
def test_broken_last_line_is_dropped_with_a_note_and_the_run_goes_on(tmp_path, tail, capfd):
    path = tmp_path / "actors.jsonl"
    whole = json.dumps(record("/v/a.mp4", actor_square=[1, 2, 3])) + "\n"
    path.write_bytes(whole.encode() + tail)
    assert [r["path"] for r in actor_records.read_records(path)] == ["/v/a.mp4"]
    assert "ignoring a broken last line" in capfd.readouterr().err
    assert path.read_bytes() == whole.encode() + tail  # reading changes nothing
    assert [r["path"] for r in actor_records.prepare_output(path)] == ["/v/a.mp4"]
    note = capfd.readouterr().err
    assert f"{path}: dropped a broken last line ({len(tail)} bytes" in note
    assert path.read_text() == whole
    actor_records.append_record(path, record("/v/b.mp4", actor_square=[0, 0, 9]))
    assert list(load_actor_records(path)) == [video_key("/v/a.mp4"), video_key("/v/b.mp4")]


def test_zeros_after_a_whole_last_record_keep_the_record(tmp_path, capfd):
    path = tmp_path / "actors.jsonl"
    whole = json.dumps(record("/v/a.mp4", actor_square=[1, 2, 3]))
    path.write_bytes(whole.encode() + b"\0" * 100)  # its newline and what followed were lost
    assert [r["path"] for r in actor_records.prepare_output(path)] == ["/v/a.mp4"]
    assert "dropped a broken last line (100 bytes" in capfd.readouterr().err
    assert path.read_text() == whole + "\n"


def test_last_record_missing_only_its_newline_is_kept(tmp_path):
    path = tmp_path / "actors.jsonl"
    path.write_text(json.dumps(record("/v/a.mp4")))
    assert len(actor_records.prepare_output(path)) == 1
    actor_records.append_record(path, record("/v/b.mp4"))
    assert [r["path"] for r in actor_records.read_records(path)] == ["/v/a.mp4", "/v/b.mp4"]


def test_a_file_that_is_not_a_record_file_is_refused_and_left_alone(tmp_path):
    middle = tmp_path / "middle.jsonl"
    middle.write_text(json.dumps(record("/v/a.mp4")) + "\n{oops\n" + json.dumps(record("/v/b.mp4")) + "\n")
    with pytest.raises(RajaxError, match="line 2"):
        load_actor_records(middle)
    foreign = tmp_path / "video.avi"  # e.g. a video given as --output by mistake
    foreign.write_bytes(b"RIFF\x00\x01binary")
    with pytest.raises(RajaxError, match="video.avi"):
        actor_records.prepare_output(foreign)
    assert foreign.read_bytes() == b"RIFF\x00\x01binary"


def test_load_actor_records_keys_failures_and_repeats(tmp_path, monkeypatch):
    path = tmp_path / "actors.jsonl"
    monkeypatch.chdir(tmp_path)
    actor_records.append_record(path, record("clips/a.mp4", actor_square=[1, 1, 5]))
    actor_records.append_record(path, record("clips/b.mp4", error="clips/b.mp4: no such file"))
    actor_records.append_record(path, record("clips/a.mp4", actor_square=[2, 2, 6]))
    records = load_actor_records(path)
    assert list(records) == [os.path.realpath(tmp_path / "clips" / "a.mp4")]
    assert records[video_key("clips/a.mp4")]["actor_square"] == [2, 2, 6]  # the last one wins
    assert records[video_key(tmp_path / "clips" / ".." / "clips" / "a.mp4")]["path"] == "clips/a.mp4"
    with pytest.raises(RajaxError, match="no such"):
        load_actor_records(tmp_path / "missing.jsonl")
