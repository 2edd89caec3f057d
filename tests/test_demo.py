"""`rajax demo`: the generated dataset, the detector fallback, and `--quick` end to end.

The end-to-end test runs the real command in a child process (real videos, the real YOLO11n-pose
checkpoint, the real Kinetics-400 I3D, real head training) and checks that its outputs agree with
each other and with independent recomputations; it takes about 3 minutes on 2 busy CPU cores.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rajax.data.regions import REGION_NAMES
from rajax.demo import generate
from rajax.errors import RajaxError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEAD_KEYS = ("region_attention", "region_mean", "region_attention_no_actor", "full_frame", "actor_crop")


def run_rajax(*args, timeout=900):
    paths = (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run([sys.executable, "-m", "rajax", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# The generator


def test_every_plan_holds_its_activity_and_keeps_distractors_away_from_the_actor():
    spec = generate.DatasetSpec(seconds=10.0)
    _, _, side = spec.square
    for number in range(200):
        label = number % len(generate.ACTIVITY_NAMES)
        plan = generate.plan_video(np.random.default_rng([7, number]), spec, label, num_sprites=2)
        segments = plan["segments"]
        # Contiguous, covering the video, alternating the activity's two sub-actions.
        assert segments[0]["start"] == 0 and segments[-1]["end"] == spec.num_frames
        assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:]))
        names = [s["sub_action"] for s in segments]
        assert set(names) == set(generate.ACTIVITIES[plan["activity"]])
        assert all(a != b for a, b in zip(names, names[1:]))
        # Each sub-action lasts at least a quarter of the video (what the demo's T = 3 relies on),
        # so every one of them contains one of the window centres 1/6, 1/2, 5/6.
        assert all(s["end"] - s["start"] >= math.floor(0.25 * spec.num_frames) for s in segments)
        centres = [spec.num_frames * c for c in (1 / 6, 1 / 2, 5 / 6)]
        assert all(any(s["start"] <= c < s["end"] for c in centres) for s in segments)
        # The actor (and the props at their hands) stay in the square; distractors stay out of
        # the actor's region.
        actor = plan["actor"]
        reach = 0.62 * actor["height"]
        assert reach <= min(actor["x_start"], actor["x_end"]) and max(actor["x_start"], actor["x_end"]) <= side - reach
        for d in plan["distractors"]:
            left, right = min(actor["x_start"], actor["x_end"]), max(actor["x_start"], actor["x_end"])
            outside_x = d["x"] < left - reach or d["x"] > right + reach
            outside_y = d["y"] < actor["feet"] - 1.1 * actor["height"]
            assert outside_x or outside_y, (number, d, actor)


def test_the_person_sprites_are_cut_out_of_the_ultralytics_photograph():
    sprites = generate.load_people()
    assert len(sprites) == len(generate.PEOPLE) == 2
    for sprite, person in zip(sprites, generate.PEOPLE):
        height, width, channels = sprite.shape
        assert channels == 4 and sprite.dtype == np.uint8
        x0, y0, x1, y1 = person.box
        # Cropped to the person: about the detector's box, taller than wide.
        assert 0.8 * (y1 - y0) <= height <= (y1 - y0) + 24 and width <= (x1 - x0) + 24 and height > 1.5 * width
        alpha = sprite[..., 3]
        person_fraction = float(np.mean(alpha > 127))
        assert 0.3 < person_fraction < 0.9  # a cut-out, neither the whole box nor a sliver
        assert alpha.min() == 0 and alpha.max() == 255


def test_generation_is_deterministic_for_a_seed_and_reuses_its_folder(tmp_path):
    from rajax.data.video import probe, read_frames

    spec = generate.DatasetSpec(train_per_class=1, test_per_class=0, seconds=1.0, seed=3)
    first = generate.generate_dataset(spec, tmp_path / "a", progress=False)
    again = generate.generate_dataset(spec, tmp_path / "b", progress=False)
    other = generate.generate_dataset(
        generate.DatasetSpec(train_per_class=1, test_per_class=0, seconds=1.0, seed=4), tmp_path / "c", progress=False)
    assert len(first["videos"]) == len(generate.ACTIVITY_NAMES)

    def without_paths(manifest):
        return [{k: v for k, v in video.items() if k != "path"} for video in manifest["videos"]]

    assert without_paths(first) == without_paths(again)
    assert without_paths(first) != without_paths(other)
    for video_a, video_b, video_c in zip(first["videos"], again["videos"], other["videos"]):
        info = probe(video_a["path"])
        assert (info.num_frames, info.width, info.height) == (spec.num_frames, spec.width, spec.height)
        frames_a, frames_b = read_frames(video_a["path"]), read_frames(video_b["path"])
        assert np.array_equal(frames_a, frames_b)
        assert not np.array_equal(frames_a, read_frames(video_c["path"]))
        # The generator's actor square is the square of its mean person box (Actor Focus geometry).
        from rajax.detection import geometry

        assert video_a["actor_square"] == geometry.actor_square(video_a["actor_box_xyxy"], spec.height, spec.width)

    # The CSV is a dataset `rajax train --config.data.csv` can read.
    from rajax.data.records import records_from_csv

    records, classes = records_from_csv(tmp_path / "a" / generate.CSV_FILE, class_names=list(generate.ACTIVITY_NAMES))
    assert [r.label for r in records] == [v["label"] for v in first["videos"]]
    assert {r.split for r in records} == {"train"}

    # The same folder is reused as it is; another spec in it is refused, naming the folder.
    mtime = Path(first["videos"][0]["path"]).stat().st_mtime_ns
    assert without_paths(generate.generate_dataset(spec, tmp_path / "a", progress=False)) == without_paths(first)
    assert Path(first["videos"][0]["path"]).stat().st_mtime_ns == mtime
    with pytest.raises(RajaxError, match=str(tmp_path / "a")):
        generate.generate_dataset(generate.DatasetSpec(train_per_class=1, test_per_class=0, seconds=2.0, seed=3),
                                  tmp_path / "a", progress=False)


def test_without_a_loadable_detector_the_generator_boxes_are_used_and_said_so(tmp_path, capsys):
    from rajax.demo.run import find_actors

    spec = generate.DatasetSpec(train_per_class=1, test_per_class=0, seconds=1.0)
    manifest = generate.generate_dataset(spec, tmp_path / "videos", progress=False)
    not_a_checkpoint = tmp_path / "broken.pt"
    not_a_checkpoint.write_text("not a YOLO checkpoint\n")
    squares, detector = find_actors(manifest, tmp_path, str(not_a_checkpoint), every=5, progress=False)
    assert squares == {v["video_id"]: v["actor_square"] for v in manifest["videos"]}
    assert detector["used"] is False and detector["fallback"] is True
    assert str(not_a_checkpoint) in detector["reason"]
    assert "NO PERSON DETECTOR" in capsys.readouterr().err


def test_missing_detector_weights_is_a_one_line_error(tmp_path):
    done = run_rajax("demo", "--quick", "--workdir", tmp_path / "work", "--detector-weights", tmp_path / "none.pt",
                     timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"rajax demo: error: {tmp_path / 'none.pt'}: detector weights not found (--detector-weights)")
    assert not (tmp_path / "work").exists()


# ---------------------------------------------------------------------------------------------
# --quick end to end


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory, yolo_weights):
    workdir = tmp_path_factory.mktemp("demo") / "work"
    done = run_rajax("demo", "--quick", "--workdir", workdir, "--detector-weights", yolo_weights)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((workdir / "summary.json").read_text())
    return workdir, done, summary


@pytest.mark.slow
def test_quick_demo_reports_every_head_consistently(quick_demo):
    workdir, done, summary = quick_demo
    manifest = json.loads((workdir / "videos" / generate.MANIFEST_FILE).read_text())
    labels = {v["video_id"]: v["label"] for v in manifest["videos"]}
    test_ids = summary["test_video_ids"]
    assert sorted(test_ids) == sorted(v["video_id"] for v in manifest["videos"] if v["split"] == "test")
    truth = np.array([labels[i] for i in test_ids])
    assert summary["dataset"]["videos"] == 12 and len(test_ids) == 4 and summary["quick"] is True
    assert summary["chance_accuracy"] == pytest.approx(0.25)

    for key in HEAD_KEYS:
        report = summary["heads"][key]
        accuracy = summary["accuracy"][key]
        assert 0.0 <= accuracy <= 1.0 and 0.0 <= summary["mean_class_accuracy"][key] <= 1.0
        # Recomputed from the per-video predictions and the generator's labels.
        predictions = np.array(report["predictions"])
        assert accuracy == pytest.approx(np.mean(predictions == truth))
        matrix = np.array(report["confusion_matrix"])
        assert matrix.sum() == len(test_ids) and np.trace(matrix) == np.sum(predictions == truth)
        assert 0.0 <= report["train_accuracy"] <= 1.0 and math.isfinite(report["final_train_loss"])
        # The table printed on stdout says the same.
        assert f"{report['title']}" in done.stdout and f"{100 * accuracy:.1f}%" in done.stdout

    # Region Attention: a weight for every region of every test video, summing to 1 per video,
    # and their mean is what the summary reports.
    ra = summary["heads"]["region_attention"]
    weights = np.array(ra["region_weight_per_video"])
    assert weights.shape == (len(test_ids), len(REGION_NAMES))
    # The weights are the sigmoid scores divided by their sum plus 1e-6 (rajax.models.heads), so a
    # video sums to just under 1 when training has pushed every score close to 0.
    assert np.all(weights >= 0) and np.all(weights.sum(axis=1) <= 1 + 1e-4) and np.all(weights.sum(axis=1) > 0.9)
    assert list(summary["mean_region_attention"]) == list(REGION_NAMES)
    assert np.allclose([summary["mean_region_attention"][n] for n in REGION_NAMES], weights.mean(axis=0), atol=1e-4)
    assert all(0.0 <= s <= 1.0 for s in summary["mean_region_score"].values())  # sigmoid scores
    # Region Mean weighs every region equally; the single-region heads use their one region.
    mean_weights = summary["heads"]["region_mean"]["mean_region_attention"]
    assert np.allclose(list(mean_weights.values()), 1 / len(REGION_NAMES))
    assert summary["heads"]["actor_crop"]["regions"] == ["actor"]
    assert summary["heads"]["full_frame"]["regions"] == ["full"]
    assert "actor" not in summary["heads"]["region_attention_no_actor"]["regions"]


@pytest.mark.slow
def test_quick_demo_used_the_detector_and_the_kinetics_i3d(quick_demo, yolo_weights):
    from rajax.data.features import read_index, read_meta
    from rajax.detection import load_actor_records

    workdir, done, summary = quick_demo
    detector = summary["detector"]
    assert detector["used"] is True and detector["fallback"] is False
    assert Path(detector["weights"]).resolve() == Path(yolo_weights).resolve()
    assert detector["videos_without_person"] == [] and detector["videos_failed"] == []
    # The person YOLO found is the one the generator pasted.
    assert detector["mean_iou_with_generator_boxes"] > 0.75 and detector["min_iou_with_generator_boxes"] > 0.6
    records = load_actor_records(next(workdir.glob("actors_*.jsonl")))
    assert len(records) == 12 and not any(r["fallback"] for r in records.values())
    assert "NO PERSON DETECTOR" not in done.stderr and "NO DETECTOR" not in done.stdout

    backbone = summary["backbone"]
    assert backbone["pretrained_on"] == "Kinetics-400" and backbone["fine_tuned"] is False
    store = Path(backbone["feature_store"])
    meta = read_meta(store)
    assert meta["region_names"] == list(REGION_NAMES) and meta["channels"] == 1024
    index = read_index(store)
    assert len(index) == 12 and {e["split"] for e in index} == {"train", "test"}
    features = np.load(store / index[0]["file"])
    assert list(features.shape) == backbone["feature_shape_per_video"] == [11, 1, 1024]
    assert np.all(np.isfinite(features)) and np.all(features >= 0)  # averaged ReLU outputs
    assert not np.allclose(features[0], features[-1])  # the full frame and the actor crop differ

    for stage in ("generate", "detect", "extract", "train_and_test_heads", "pictures", "total"):
        assert summary["timings"][stage]["wall_s"] >= 0 and summary["timings"][stage]["cpu_s"] >= 0
    assert summary["timings"]["total"]["wall_s"] >= summary["timings"]["extract"]["wall_s"]


@pytest.mark.slow
def test_quick_demo_pictures_are_written_and_not_blank(quick_demo):
    from PIL import Image

    workdir, _, summary = quick_demo
    expected = {"regions", "attention"} | {f"confusion_{key}" for key in HEAD_KEYS}
    assert set(summary["pictures"]) == expected
    for name, path in summary["pictures"].items():
        path = Path(path)
        assert path.parent == workdir / "pictures"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = np.asarray(Image.open(path).convert("RGB"), np.float32)
        assert image.shape[0] >= 300 and image.shape[1] >= 300, name
        assert image.std() > 20, name  # drawn on, not a blank canvas
    # The regions picture shows video frames: many distinct colours, unlike a plain chart.
    regions = np.asarray(Image.open(summary["pictures"]["regions"]).convert("RGB"))
    assert len(np.unique(regions.reshape(-1, 3), axis=0)) > 5000
