"""`rajax run` end to end on a tiny real-video CSV with groups: 8 UCF101 clips of 2 classes, the real
YOLO detector and Kinetics-400 I3D, small crops. Checks the summary against its own per-video
predictions and intervals, the splits and folds against the groups, the log of a run whose output
is not a terminal, and that a rerun under other splits is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rajax.data.records import records_from_csv
from rajax.recipe.report import bootstrap_interval, paired_difference_interval
from rajax.recipe.rows import BACKBONES, ROWS

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# (clip, group): two clips of ApplyEyeMakeup made one group (as if cut from one longer video), so
# that the folds and splits have a group of two to keep whole.
CLIPS = (
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4", "eye_g01"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mp4", "eye_g08"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c04.mp4", "eye_g08"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g18_c01.mp4", "eye_g18"),
    ("Archery/v_Archery_g04_c04.mp4", "archery_g04"),
    ("Archery/v_Archery_g05_c02.mp4", "archery_g05"),
    ("Archery/v_Archery_g15_c01.mp4", "archery_g15"),
    ("Archery/v_Archery_g22_c04.mp4", "archery_g22"),
)
SMALL = ("--config.data.num_timesteps=2", "--config.data.crop_size=64", "--config.finetune.num_epochs=1",
         "--config.finetune.batch_size=2", "--config.train_head.num_epochs=10",
         "--config.train_head.batch_size=2", "--config.run.cv_folds=2",
         "--config.run.bootstrap_samples=500", "--config.classes=ApplyEyeMakeup,Archery")


def run_rajax(*args, timeout=900):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAJAX_PROGRESS_SECONDS": "0.2",
           # One device: the tiny batches need not split over the test session's 4.
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.run([sys.executable, "-m", "rajax", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, ucf101_subset, yolo_weights):
    root = tmp_path_factory.mktemp("run")
    csv_file = root / "clips.csv"
    csv_file.write_text("path,label,group\n" + "".join(
        f"{ucf101_subset / clip},{clip.split('/')[0]},{group}\n" for clip, group in CLIPS))
    workdir = root / "work"
    # Split 1's rule on these groups: g01-g07 test; a validation group drawn from each class's others.
    done = run_rajax("run", "ucf101_subset", "--workdir", workdir, "--detector-weights", yolo_weights,
                     f"--config.data.csv={csv_file}", "--config.data.folder=", "--config.data.group_pattern=",
                     r"--config.data.test_groups=_g0[1-7]$", *SMALL)
    assert done.returncode == 0, done.stderr[-4000:]
    return root, workdir, done, json.loads((workdir / "summary.json").read_text())


@pytest.mark.slow
def test_every_row_on_both_backbones_with_intervals_that_match_the_predictions(tiny_run):
    _, workdir, done, summary = tiny_run
    assert set(summary["results"]) == {f"{b}/{row}" for b in BACKBONES for row in ROWS}
    test_videos = summary["dataset"]["test_videos"]
    assert test_videos == 3 and summary["dataset"]["train_videos"] + summary["dataset"]["validation_videos"] == 5
    for key, result in summary["results"].items():
        report = summary["reports"][key]
        correct = np.array(report["predictions"]) == np.array(report["labels"])
        assert len(correct) == test_videos, key
        assert result["test_accuracy"] == pytest.approx(correct.mean()), key
        low, high = result["test_accuracy_ci95"]
        assert [low, high] == pytest.approx(bootstrap_interval(correct, 500, summary["seed"])), key
        assert low <= result["test_accuracy"] <= high
        if key.startswith("kinetics/"):
            folds = summary["cross_validation"][key.split("/")[1] if key != "kinetics/i3d" else "full_frame"]
            assert result["cv_accuracy_mean"] == pytest.approx(np.mean(folds["fold_accuracies"]))
            assert result["cv_accuracy_se"] == pytest.approx(np.std(folds["fold_accuracies"], ddof=1) / np.sqrt(2))
        else:
            assert result["cv_accuracy_mean"] is None and result["cv_accuracy_se"] is None
            # The gain over the Kinetics features on the same clips, paired.
            kinetics = summary["reports"]["kinetics/" + key.split("/")[1]]
            theirs = np.array(kinetics["predictions"]) == np.array(kinetics["labels"])
            assert result["gain_over_kinetics"] == pytest.approx(correct.mean() - theirs.mean())
            assert result["gain_over_kinetics_ci95"] == pytest.approx(
                list(paired_difference_interval(correct, theirs, 500, summary["seed"])))
    # Kinetics' I3D alone is its full-frame head; the fine-tuned one its own classifier.
    assert summary["results"]["kinetics/i3d"] == summary["results"]["kinetics/full_frame"]
    assert (workdir / "finetuned" / "finetune" / "backbone").is_dir()
    for row in ROWS.values():  # the table on stdout shows every row's two accuracies
        line = next(line for line in done.stdout.splitlines() if line.startswith(row.title))
        for backbone in BACKBONES:
            assert f"{100 * summary['results'][f'{backbone}/{row.key}']['test_accuracy']:.1f}%" in line


@pytest.mark.slow
def test_no_group_is_split_between_training_and_test_nor_across_folds(tiny_run):
    root, workdir, _, summary = tiny_run
    records, _ = records_from_csv(workdir / "videos.csv", ["ApplyEyeMakeup", "Archery"])
    groups = {split: {r.group for r in records if r.split == split} for split in ("train", "validation", "test")}
    assert groups["test"] == {"eye_g01", "archery_g04", "archery_g05"}
    assert not groups["test"] & (groups["train"] | groups["validation"])
    assert not groups["train"] & groups["validation"]
    group_of = {Path(r.path).name: r.group for r in records}
    folds = summary["cv_folds_of_videos"]
    assert len(folds) == len(CLIPS)
    for group in set(group_of.values()):
        assert len({fold for video_id, fold in folds.items() if group_of[video_id.split("/")[-1] + ".mp4"] == group}) == 1


@pytest.mark.slow
def test_a_log_gets_plain_progress_lines_not_carriage_returns(tiny_run):
    _, _, done, _ = tiny_run
    log = done.stdout + done.stderr
    assert "\r" not in log
    for stage in ("detect actors", "extract train", "finetune epoch 1/1"):
        assert any(line.startswith(f"{stage}:") for line in done.stderr.splitlines()), stage
    assert any(line.startswith("extract test: done, ") for line in done.stderr.splitlines())


@pytest.mark.slow
def test_a_rerun_with_other_splits_is_refused_before_anything_runs(tiny_run, yolo_weights):
    root, workdir, _, _ = tiny_run
    before = (workdir / "summary.json").stat().st_mtime_ns
    done = run_rajax("run", "ucf101_subset", "--workdir", workdir, "--detector-weights", yolo_weights,
                     f"--config.data.csv={root / 'clips.csv'}", "--config.data.folder=",
                     "--config.data.group_pattern=", r"--config.data.test_groups=_g0[1-4]$", *SMALL, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"rajax run: error: {workdir / 'videos.csv'}: the videos")
    assert (workdir / "summary.json").stat().st_mtime_ns == before
