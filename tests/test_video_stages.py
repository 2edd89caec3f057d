"""The stages on real video files: fine-tune, extract, I3D alone, head, end-to-end, predict.

Videos are written by PyAV (two classes told apart by brightness, plus one broken file that every
stage must report, skip and count); the network is the thin random-weight I3D of configs/tiny.py.
The commands run in this process through ``rajax.cli.main``; YOLO runs in its own process.
"""

import json
from pathlib import Path

import av
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from rajax import cli
from rajax.data.features import load_features, read_index, read_meta
from rajax.data.regions import REGION_NAMES, central_square_crop, region_boxes
from rajax.data.sampling import uniform_timesteps
from rajax.data.video import probe, read_frames
from rajax.train import backbone, checkpoints
from rajax.train.config import apply_overrides, load_config
from test_crops import tf_crop_resize

CLASSES = ("cereals", "coffee")
COUNTS = (("train", 8), ("validation", 4), ("test", 4))


def write_video(path: Path, label: int, seed: int, frames=20) -> None:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(frames):
            frame = np.full((48, 64, 3), 40 + 160 * label, np.uint8)
            frame[:, (t * 3) % 56:(t * 3) % 56 + 8] = 255
            frame += rng.integers(0, 20, frame.shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_stages_one_and_two(root: Path) -> dict:
    """Videos, a CSV, and stages 1 and 2 run in ROOT/run."""
    rows = ["path,label,split"]
    for split, count in COUNTS:
        for i in range(count):
            write_video(root / f"{split}_{i}.mp4", i % 2, seed=len(rows))
            rows.append(f"{split}_{i}.mp4,{CLASSES[i % 2]},{split}")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    rows.append("broken.mp4,coffee,test")
    (root / "videos.csv").write_text("\n".join(rows) + "\n")
    workdir = root / "run"
    options = [f"--config.data.csv={root / 'videos.csv'}", "--config.eval_batch_size=4", "--no-progress"]
    assert cli.main(["train", "tiny", "--workdir", str(workdir), "--config.stage=finetune", *options]) == 0
    assert cli.main(["extract", "tiny", "--workdir", str(workdir), *options]) == 1  # 1: broken.mp4 skipped
    return {"root": root, "workdir": workdir, "options": options,
            "config": apply_overrides(load_config("tiny"), {"data.csv": str(root / "videos.csv")})}


def flat(tree):
    return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def check_finetuning_trains_the_top_blocks_and_exports_the_best_backbone(experiment):
    config, workdir = experiment["config"], experiment["workdir"]
    import rajax

    model, exported = rajax.load_i3d(workdir / "finetune" / backbone.EXPORT_DIR)
    assert model.num_classes == 10 and model.width_multiplier == 0.125
    start = backbone.random_variables(backbone.i3d_model(config, 10), config.seed)  # where training began
    best = checkpoints.restore_tree(workdir / "finetune" / checkpoints.BEST_DIR)
    for path, value in flat(exported["params"]).items():
        np.testing.assert_array_equal(value, flat(best["params"])[path])  # the export is the best state
        top = path.split("/")[0] in ("Mixed_4f", "Mixed_5b", "Mixed_5c", "Logits")
        changed = not np.array_equal(value, flat(start["params"])[path])
        assert changed == top or (top and path.endswith("beta")), path
    report = json.loads((workdir / "finetune/eval/test.json").read_text())
    assert report["num_examples"] == 4  # the broken test video was skipped, not counted


def check_extraction_stores_every_region_of_every_readable_video(experiment, capsys):
    config, workdir = experiment["config"], experiment["workdir"]
    store = workdir / "features"
    meta = read_meta(store)
    assert meta["region_names"] == list(REGION_NAMES)
    assert (meta["num_positions"], meta["channels"]) == (1, 128)  # T=2 -> 1 position (VALID pool)
    index = read_index(store)
    assert sorted(e["video_id"] for e in index) == sorted(f"{s}_{i}" for s, n in COUNTS for i in range(n))
    assert {e["split"] for e in index} == {"train", "validation", "test"}
    # The stored features are the fine-tuned backbone's, computed here independently.
    # Independently: decoded here, regions cut and resized by TensorFlow on the host (test_crops).
    model, variables = backbone.load_backbone(config, workdir)
    path = str(experiment["root"] / "test_1.mp4")
    square = central_square_crop(read_frames(path, uniform_timesteps(probe(path).num_frames, 2, 8)))
    clips = np.stack([tf_crop_resize(square, box, 32) for box in region_boxes(square.shape[1])]) / 127.5 - 1.0
    expected = np.asarray(jax.jit(lambda v, x: model.apply(v, x, output="features"))(variables, clips))
    np.testing.assert_allclose(load_features(store, "test_1"), expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    # Rerunning resumes: nothing is recomputed, the bad video is reported again.
    capsys.readouterr()
    assert cli.main(["extract", "tiny", "--workdir", str(workdir), *experiment["options"]]) == 1
    out = capsys.readouterr().out
    assert "0 video(s) written" in out and "16 already there, 1 unreadable, skipped" in out
    assert "broken.mp4" in out


def check_features_made_another_way_are_never_reused(experiment, capsys):
    workdir, options = experiment["workdir"], experiment["options"]
    capsys.readouterr()
    # Extracting with another crop size into the same store: refused, not "0 written, 16 there".
    assert cli.main(["extract", "tiny", "--workdir", str(workdir), "--config.data.crop_size=48", *options]) == 2
    assert "crop_size: 32 (store) vs 48" in capsys.readouterr().err
    # A head with another T, or the classes in another order, on these features: refused.
    assert cli.main(["train", "tiny", "--workdir", str(workdir), "--config.data.num_timesteps=3", *options]) == 2
    assert "num_timesteps: 2 (store) vs 3" in capsys.readouterr().err
    swapped = "coffee,cereals,friedegg,juice,milk,pancake,salat,sandwich,scrambledegg,tea"
    assert cli.main(["train", "tiny", "--workdir", str(workdir), f"--config.classes={swapped}", *options]) == 2
    assert "class_names: ['cereals', 'coffee', 'friedegg'" in capsys.readouterr().err
    assert not (workdir / "train_head").exists()  # failed commands wrote no record


def check_i3d_alone_on_stored_features_equals_stage_one_on_videos(experiment):
    workdir = experiment["workdir"]
    on_videos = json.loads((workdir / "finetune/eval/test.json").read_text())
    assert cli.main(["evaluate", "tiny", "--workdir", str(workdir), "--stage", "finetune",
                     *experiment["options"][:-1]]) == 0
    on_features = json.loads((workdir / "finetune/eval/test.json").read_text())
    assert on_features["num_examples"] == on_videos["num_examples"] == 4
    assert on_features["loss"] == pytest.approx(on_videos["loss"], rel=1e-4)
    assert on_features["confusion_matrix"] == on_videos["confusion_matrix"]


def test_one_at_a_time_features_are_each_timestep_alone():
    config = apply_overrides(load_config("tiny"), {"data.num_timesteps": "3", "backbone.finetuned": "false"})
    model, variables = backbone.load_backbone(config, "unused")  # random weights: no stage 1 needed
    clips = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 24, 32, 32, 3)).astype(np.float32))
    features = jax.jit(lambda v, x: backbone.extract_features(model, v, x, "one_at_a_time", 8))(variables, clips)
    assert features.shape == (2, 3, 128)
    # The middle timestep through I3D on its own: the frames around it must not matter.
    alone = jax.jit(lambda v, x: model.apply(v, x, output="features"))(variables, clips[:, 8:16])
    np.testing.assert_allclose(features[:, 1], alone[:, 0], rtol=1e-5, atol=1e-6)


def check_head_then_predict_on_the_dancer_with_yolo(experiment, dancer_video, yolo_weights, capsys):
    workdir = experiment["workdir"]
    assert cli.main(["train", "tiny", "--workdir", str(workdir), "--config.train_head.batch_size=4",
                     "--config.train_head.num_epochs=2", *experiment["options"]]) == 0
    assert json.loads((workdir / "train_head/eval/test.json").read_text())["num_examples"] == 4
    # A later command with another head in its config must not change what predict uses.
    assert cli.main(["extract", "tiny", "--workdir", str(workdir), "--config.head.name=region_mean",
                     *experiment["options"]]) == 1
    capsys.readouterr()
    picture = experiment["root"] / "attention.png"
    assert cli.main(["predict", str(dancer_video), "--workdir", str(workdir), "--json", "--visualize",
                     str(picture), "--detector-weights", str(yolo_weights), "--detect-every", "150"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in result["regions"]] == list(REGION_NAMES)
    assert sum(r["weight"] for r in result["regions"]) == pytest.approx(1.0, abs=1e-4)
    assert all(0 < r["score"] < 1 for r in result["regions"])
    assert (result["head"], result["scorer"]) == ("region_attention", "linear scorer, sigmoid scores")
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["activity"] == max(result["probabilities"], key=result["probabilities"].get)
    # YOLO found the dancer: an actor square smaller than the 496-pixel square frame.
    x0, y0, side = result["actor_square"]
    assert 0 < side < 496 and 0 <= x0 <= 496 - side and 0 <= y0 <= 496 - side
    assert picture.stat().st_size > 10_000


def check_end_to_end_trains_backbone_top_blocks_and_head_together(experiment):
    workdir = experiment["workdir"]
    assert cli.main(["train", "tiny", "--workdir", str(workdir), "--stage", "end_to_end",
                     *experiment["options"]]) == 0
    trained = checkpoints.restore_tree(workdir / "end_to_end" / checkpoints.LATEST_DIR)
    import rajax

    _, start = rajax.load_i3d(workdir / "finetune" / backbone.EXPORT_DIR)
    start_params, start_stats = flat(start["params"]), flat(start["batch_stats"])
    for path, value in flat(trained["params"]["backbone"]).items():
        top = path.split("/")[0] in ("Mixed_4f", "Mixed_5b", "Mixed_5c")
        assert (not np.array_equal(value, start_params[path])) == top or path.endswith("beta"), path
    for path, value in flat(trained["batch_stats"]["backbone"]).items():
        if path.split("/")[0] not in ("Mixed_4f", "Mixed_5b", "Mixed_5c"):
            np.testing.assert_array_equal(value, start_stats[path])
    head_start = checkpoints.restore_tree(workdir / "train_head" / checkpoints.BEST_DIR)["params"]
    assert flat(trained["params"]["head"]).keys() == flat(head_start).keys()
    report = json.loads((workdir / "end_to_end/eval/test.json").read_text())
    assert report["num_examples"] == 4 and len(report["mean_region_attention"]) == 11


def check_a_head_is_never_run_on_another_backbone(experiment, dancer_video):
    """Stage 1 exported another backbone since the head was trained: predict refuses."""
    import rajax
    from rajax.errors import RajaxError
    from rajax.train import inference

    workdir, config = experiment["workdir"], experiment["config"]
    export = workdir / "finetune" / backbone.EXPORT_DIR
    _, variables = rajax.load_i3d(export)
    variables = jax.tree.map(np.array, variables)  # writable host copies
    variables["params"]["Mixed_5c"]["Branch_0"]["Conv3d_0a_1x1"]["kernel"] += 0.01
    backbone.export_backbone(variables, export, config, source="another fine-tuning")
    with pytest.raises(RajaxError, match="the head was trained on features of backbone sha256:"):
        inference.predict_video(workdir, dancer_video, stage="train_head")


def test_the_stages_on_real_videos(tmp_path, capsys, dancer_video, yolo_weights):
    """One chain, in order (each step needs the one before): a test per stage would build stage 1
    again on every xdist worker that picks one up."""
    experiment = run_stages_one_and_two(tmp_path)
    check_finetuning_trains_the_top_blocks_and_exports_the_best_backbone(experiment)
    check_extraction_stores_every_region_of_every_readable_video(experiment, capsys)
    check_features_made_another_way_are_never_reused(experiment, capsys)
    check_i3d_alone_on_stored_features_equals_stage_one_on_videos(experiment)
    check_head_then_predict_on_the_dancer_with_yolo(experiment, dancer_video, yolo_weights, capsys)
    check_end_to_end_trains_backbone_top_blocks_and_head_together(experiment)
    check_a_head_is_never_run_on_another_backbone(experiment, dancer_video)
