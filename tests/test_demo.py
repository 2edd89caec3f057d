"""`rajax demo`: the generated dataset, the detector fallback, and `--quick` end to end.

The end-to-end test runs the real command in a child process (real videos, the real YOLO11n-pose
checkpoint, the real Kinetics-400 I3D, real head training) and checks that its outputs agree with
each other and with independent recomputations; it takes about 4 minutes on 2 busy CPU cores.
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
    from rajax.data.records import attach_actor_squares, records_from_csv
    from rajax.demo.run import find_actors

    spec = generate.DatasetSpec(train_per_class=1, test_per_class=0, seconds=1.0)
    manifest = generate.generate_dataset(spec, tmp_path / "videos", progress=False)
    not_a_checkpoint = tmp_path / "broken.pt"
    not_a_checkpoint.write_text("not a YOLO checkpoint\n")
    detector = find_actors(manifest, tmp_path / "actors.jsonl", str(not_a_checkpoint), every=5, progress=False)
    assert detector["used"] is False and detector["fallback"] is True
    assert str(not_a_checkpoint) in detector["reason"]
    assert "NO PERSON DETECTOR" in capsys.readouterr().err
    # The file the stages read holds the generator's squares, matched to the videos by path.
    records, _ = records_from_csv(tmp_path / "videos" / generate.CSV_FILE, list(generate.ACTIVITY_NAMES))
    records, matched = attach_actor_squares(records, tmp_path / "actors.jsonl")
    assert matched == len(records) == len(manifest["videos"])
    squares = {Path(v["path"]).resolve(): tuple(v["actor_square"]) for v in manifest["videos"]}
    assert all(r.actor_square == squares[Path(r.path).resolve()] for r in records)


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
def test_quick_demo_reports_every_row_for_both_backbones_consistently(quick_demo):
    from rajax.recipe.rows import ROWS

    workdir, done, summary = quick_demo
    manifest = json.loads((workdir / "videos" / generate.MANIFEST_FILE).read_text())
    test_labels = sorted(v["label"] for v in manifest["videos"] if v["split"] == "test")
    counts = {key: summary["dataset"][key] for key in ("videos", "train_videos", "validation_videos", "test_videos")}
    assert counts == {"videos": 16, "train_videos": 8, "validation_videos": 4, "test_videos": 4}
    assert set(summary["results"]) == {f"{b}/{h}" for b in ("kinetics", "finetuned") for h in ROWS}
    for key, result in summary["results"].items():
        gain = {"gain_over_kinetics", "gain_over_kinetics_ci95"} if key.startswith("finetuned/") else set()
        assert set(result) == {"test_accuracy", "test_accuracy_ci95", "cv_accuracy_mean", "cv_accuracy_se"} | gain
        # The result is its report's, whose accuracy is recomputed below from the predictions.
        assert result["test_accuracy"] == summary["reports"][key]["accuracy"], key
        low, high = result["test_accuracy_ci95"]
        assert low <= result["test_accuracy"] <= high
        assert result["cv_accuracy_mean"] is None and result["cv_accuracy_se"] is None  # no CV in --quick
    for key, report in summary["reports"].items():
        # Each accuracy recomputed from the per-video predictions, on exactly the test videos.
        assert sorted(report["labels"]) == test_labels, key
        predictions, labels = np.array(report["predictions"]), np.array(report["labels"])
        assert report["accuracy"] == pytest.approx(np.mean(predictions == labels)), key
        assert np.trace(report["confusion_matrix"]) == np.sum(predictions == labels)
    assert summary["results"]["kinetics/i3d"]["test_accuracy"] == summary["results"]["kinetics/full_frame"]["test_accuracy"]
    assert summary["results"]["finetuned/i3d"]["test_accuracy"] == summary["reports"]["finetuned/i3d"]["accuracy"]
    # The table on stdout says the same.
    for head in ROWS:
        line = next(line for line in done.stdout.splitlines() if line.startswith(summary["titles"][head]))
        for backbone in ("kinetics", "finetuned"):
            assert f"{100 * summary['results'][f'{backbone}/{head}']['test_accuracy']:.1f}%" in line


@pytest.mark.slow
def test_quick_demo_ran_the_real_stages_with_the_detector(quick_demo, yolo_weights):
    from rajax.data.features import read_index, read_meta
    from rajax.detection import load_actor_records

    workdir, done, summary = quick_demo
    detector = summary["detector"]
    assert detector["used"] is True and detector["fallback"] is False
    assert Path(detector["weights"]).resolve() == Path(yolo_weights).resolve()
    assert detector["mean_iou_with_generator_boxes"] > 0.7  # the person YOLO found is the pasted one
    assert len(load_actor_records(workdir / "actors.jsonl")) == 16
    # Stage 1 ran and exported a fine-tuned backbone; stage 2 ran with each backbone; stage 3 runs
    # keep their own config and the settings of the features they learnt from.
    assert (workdir / "finetuned" / "finetune" / "backbone").is_dir()
    stores = {b: read_meta(workdir / b / "features") for b in ("kinetics", "finetuned")}
    for meta in stores.values():
        assert meta["region_names"] == list(REGION_NAMES) and meta["channels"] == 1024
    assert stores["kinetics"]["settings"]["backbone"] != stores["finetuned"]["settings"]["backbone"]
    assert len(read_index(workdir / "kinetics" / "features")) == 16
    trained_on = json.loads((workdir / "finetuned" / "region_attention" / "train_head" / "features.json").read_text())
    assert trained_on == stores["finetuned"]["settings"]
    head_config = json.loads((workdir / "kinetics" / "actor_only" / "train_head" / "config.json").read_text())
    assert head_config["data"]["regions"] == ["actor"] and head_config["head"]["name"] == "single_region"
    for stage in ("generate", "detect", "extract_kinetics", "finetune", "extract_finetuned", "heads", "pictures"):
        assert 0 <= summary["timings"][stage]["wall_s"] <= summary["timings"]["total"]["wall_s"]


@pytest.mark.slow
def test_quick_demo_pictures_are_written_and_not_blank(quick_demo):
    from PIL import Image

    workdir, _, summary = quick_demo
    assert {"regions", "finetune_curve"} <= set(summary["pictures"])
    assert sum(name.startswith("attention_") for name in summary["pictures"]) == 2
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
