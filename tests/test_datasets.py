"""TFDS builders built for real on small videos written here, then read through the pipeline."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from rajax.data import pipeline, sources, video
from rajax.data.records import VideoRecord, records_from_csv, records_from_folder
from rajax.datasets import breakfast
from rajax.data.regions import central_square_crop, resize_square
from rajax.datasets.video_folder import MAX_SQUARE_SIDE, VideoFolder, _folder_records
from rajax.errors import RajaxError

T, L, CANVAS = 2, 4, 32


def smooth_frames(num_frames, height, width, value=0):
    """Gradients moving with the frame index: content JPEG keeps to within a few levels."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frames[i, ..., 0] = 150 * x // width + 6 * i  # at most 240 for 16 frames: no wrap-around edge
        frames[i, ..., 1] = 150 * y // height + 4 * i
        frames[i, ..., 2] = 60 + 10 * value
    return frames


def write_clip(path, num_frames=10, value=0, height=24, width=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    return video.write_video(path, smooth_frames(num_frames, height, width, value), fps=15)


def decode_jpegs(frames):
    import tensorflow as tf

    return np.stack([tf.io.decode_jpeg(f).numpy() for f in frames])


def assert_close_pixels(a, b, mean=3.0):
    difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
    assert a.shape == b.shape and difference.mean() < mean, difference.mean()


def build(builder_cls, manual_dir, data_dir, **kwargs):
    builder = builder_cls(data_dir=str(data_dir), **kwargs)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


# Breakfast ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def breakfast_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakfast") / "BreakfastII_15fps_qvga_sync"
    files = [
        "P03/cam01/P03_cereals.avi",
        "P03/stereo/P03_cereals_ch0.avi",
        "P03/stereo/P03_cereals_ch1.avi",
        "P20/webcam01/P20_salat.avi",
        "P20/stereo/P20_tea_ch1.avi",  # channel 0 missing: channel 1 is kept
        "P42/cam02/P42_scrambledegg.avi",
        "P47/cam01/P47_pancake.avi",
        "P54/webcam02/P54_coffee.avi",
    ]
    for i, name in enumerate(files):
        write_clip(root / name, num_frames=8 + i, value=i)
    write_clip(root / "P01/cam01/P01_tea.avi")  # not one of the 52 actors
    (root / "P03/cam01/P03_cereals.avi.labels").write_text("1-8 SIL\n")
    (root / "P47/cam02").mkdir(parents=True)
    (root / "P47/cam02/P47_juice.avi").write_bytes(b"RIFF....AVI broken")  # unreadable: skipped
    actors = [
        {"path": str(root / "P03/cam01/P03_cereals.avi"), "actor_square": [2, 3, 12], "fallback": False},
        {"path": str(root / "P47/cam01/P47_pancake.avi"), "actor_square": [0, 0, 24], "fallback": True},
    ]
    for record in actors:
        record["resolved_path"] = os.path.realpath(record["path"])
    # detect-actors output, where the builder looks for it by default: manual_dir/actors.jsonl
    (root.parent / "actors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in actors))
    return root


def test_find_breakfast_videos_stereo_choice(breakfast_dir):
    both = {r.video_id: r for r in breakfast.find_breakfast_videos(breakfast_dir)}
    plain = [
        "P03/cam01/P03_cereals",
        "P20/webcam01/P20_salat",
        "P42/cam02/P42_scrambledegg",
        "P47/cam01/P47_pancake",
        "P47/cam02/P47_juice",
        "P54/webcam02/P54_coffee",
    ]
    # Both stereo channels, each its own video (the paper's protocol: 1989 videos).
    assert sorted(both) == sorted(plain + ["P03/stereo/P03_cereals_ch0", "P03/stereo/P03_cereals_ch1",
                                           "P20/stereo/P20_tea_ch1"])
    assert both["P03/stereo/P03_cereals_ch0"].path.endswith("P03_cereals_ch0.avi")
    assert both["P03/stereo/P03_cereals_ch1"].path.endswith("P03_cereals_ch1.avi")
    assert both["P03/stereo/P03_cereals_ch1"].label == both["P03/stereo/P03_cereals_ch0"].label == 0
    assert both["P20/webcam01/P20_salat"].label == breakfast.LABELS.index("salat") == 6
    assert both["P54/webcam02/P54_coffee"].label == 1
    # Channel 0 only: no channel 1 file, even where channel 0 is missing (P20 tea).
    ch0 = {r.video_id: r for r in breakfast.find_breakfast_videos(breakfast_dir, stereo="ch0")}
    assert sorted(ch0) == sorted(plain + ["P03/stereo/P03_cereals_ch0"])
    assert ch0["P03/stereo/P03_cereals_ch0"].path == both["P03/stereo/P03_cereals_ch0"].path
    with pytest.raises(RajaxError, match="stereo"):
        breakfast.find_breakfast_videos(breakfast_dir, stereo="ch1")


def test_breakfast_split_configs():
    assert breakfast.ACTORS[0] == "P03" and breakfast.ACTORS[-1] == "P54" and len(breakfast.ACTORS) == 52
    paper = breakfast.PAPER_SPLITS
    assert (len(paper["train"]), len(paper["validation"]), len(paper["test"])) == (39, 5, 8)
    assert paper["train"] + paper["validation"] == breakfast.ACTORS[:44]  # first 44 actors
    assert paper["test"] == breakfast.ACTORS[44:] == tuple(f"P{n}" for n in range(47, 55))
    configs = breakfast.CONFIGS_BY_NAME
    assert sorted(configs) == sorted(f"{stereo}{suffix}" for stereo in ("both", "ch0")
                                     for suffix in ("", "_s1", "_s2", "_s3", "_s4"))
    assert breakfast.Breakfast.DEFAULT_CONFIG_NAME == "both"  # the paper's protocol
    for stereo in ("both", "ch0"):
        assert (configs[stereo].stereo, configs[stereo].protocol, configs[stereo].splits) == (stereo, "paper", paper)
        tests = {}
        for n in range(1, 5):
            config = configs[f"{stereo}_s{n}"]
            assert config.stereo == stereo and config.protocol == f"s{n}"
            train, test = config.splits["train"], config.splits["test"]
            assert len(test) == 13 and sorted(train + test) == list(breakfast.ACTORS)
            tests[config.protocol] = (test[0], test[-1])
        assert tests == {"s1": ("P03", "P15"), "s2": ("P16", "P28"), "s3": ("P29", "P41"), "s4": ("P42", "P54")}
    # The reference counts agree: the paper's split and s1..s4 all hold Breakfast's 1989 files, and s4
    # trains on the paper's training actors (P03..P41) and tests on its validation + test actors.
    assert sum(breakfast.reference_counts("paper").values()) == 1989 == breakfast.TOTAL_COUNT
    assert breakfast.reference_counts("s4") == {"train": 1322, "test": 256 + 411}
    assert breakfast.reference_counts("s1") == {"train": 1989 - 284, "test": 284}


def test_breakfast_count_report():
    assert breakfast.count_report("both", {"train": 1322, "validation": 256, "test": 411}) == [
        "breakfast/both paper split: train 1322 (paper 1322), validation 256 (paper 256), test 411 (paper 411)"
    ]
    assert breakfast.count_report("breakfast/both_s3", {"train": 1457, "test": 532}) == [
        "breakfast/both_s3 standard split s3: train 1457 (official 1457), test 532 (official 532)"
    ]
    # A partial copy (the fake tree's counts): one warning line per differing split, not an error.
    lines = breakfast.count_report("both", {"train": 5, "validation": 1, "test": 2}, skipped=1)
    assert lines[0] == "breakfast/both paper split: train 5 (paper 1322), validation 1 (paper 256), test 2 (paper 411)"
    assert [line.split(":")[0] for line in lines[1:]] == ["warning"] * 4
    assert lines[1].startswith("warning: breakfast/both train has 5 videos where the paper has 1322")
    assert lines[2].startswith("warning: breakfast/both validation has 1 video where the paper has 256")
    assert lines[3].startswith("warning: breakfast/both test has 2 videos where the paper has 411")
    assert lines[4] == "warning: 1 unreadable video left out of breakfast/both"
    lines = breakfast.count_report("both_s2", {"train": 1483, "test": 500})
    assert len(lines) == 2
    assert lines[1].startswith("warning: breakfast/both_s2 test has 500 videos where the official s2 has 506")
    # One stereo channel: the references (for both channels) are shown, no mismatch warnings.
    assert breakfast.count_report("ch0", {"train": 4, "validation": 1, "test": 2}) == [
        (
            "breakfast/ch0 paper split: train 4, validation 1, test 2 (stereo channel 0 only; the paper's counts, "
            "train 1322, validation 256, test 411, are for breakfast/both)"
        )
    ]
    with pytest.raises(RajaxError, match="no Breakfast config"):
        breakfast.count_report("paper", {"train": 1})


def test_breakfast_builder_end_to_end(breakfast_dir, tmp_path, capsys):
    builder = build(breakfast.Breakfast, breakfast_dir.parent, tmp_path / "tfds")
    assert builder.builder_config.name == "both"  # the default: the paper's protocol
    # The build reports its counts beside the paper's; the fake tree's differ: warnings, no error.
    report = [
        "breakfast/both paper split: train 5 (paper 1322), validation 1 (paper 256), test 2 (paper 411)",
        (
            "warning: breakfast/both train has 5 videos where the paper has 1322: "
            "this copy of Breakfast does not match the protocol (a partial copy?)"
        ),
    ]
    printed = capsys.readouterr().out.splitlines()
    assert report[0] in printed and report[1] in printed
    assert "warning: 1 unreadable video left out of breakfast/both" in printed
    assert builder.count_report()[:2] == report
    assert builder.info.features["label"].names == list(breakfast.LABELS)
    splits = {name: list(builder.as_dataset(split=name).as_numpy_iterator()) for name in ("train", "validation", "test")}
    ids = {name: sorted(e["video_id"].decode() for e in examples) for name, examples in splits.items()}
    assert ids == {
        "train": [  # both stereo channels, two videos
            "P03/cam01/P03_cereals", "P03/stereo/P03_cereals_ch0", "P03/stereo/P03_cereals_ch1",
            "P20/stereo/P20_tea_ch1", "P20/webcam01/P20_salat",
        ],
        "validation": ["P42/cam02/P42_scrambledegg"],
        "test": ["P47/cam01/P47_pancake", "P54/webcam02/P54_coffee"],  # the broken P47 juice is left out
    }
    assert len(builder.skipped) == 1 and "P47_juice.avi" in builder.skipped[0]
    examples = {e["video_id"].decode(): e for split in splits.values() for e in split}
    cereals = examples["P03/cam01/P03_cereals"]
    assert cereals["actor"] == b"P03" and cereals["camera"] == b"cam01"
    assert cereals["has_actor"] and list(cereals["actor_square"]) == [2, 3, 12]
    assert not examples["P47/cam01/P47_pancake"]["has_actor"]  # detection fell back to the full frame
    assert not examples["P03/stereo/P03_cereals_ch0"]["has_actor"]  # no detection at all
    assert examples["P03/stereo/P03_cereals_ch1"]["file_name"].endswith(b"P03/stereo/P03_cereals_ch1.avi")
    assert examples["P03/stereo/P03_cereals_ch1"]["num_frames"] == 10  # not channel 0's 9 frames
    tea = examples["P20/stereo/P20_tea_ch1"]
    assert tea["file_name"] == b"BreakfastII_15fps_qvga_sync/P20/stereo/P20_tea_ch1.avi"
    assert tea["label"] == breakfast.LABELS.index("tea")
    path = breakfast_dir / "P20/stereo/P20_tea_ch1.avi"
    assert (tea["num_frames"], tea["height"], tea["width"], tea["fps"]) == (12, 24, 32, 15.0)
    assert tea["square_side"] == 24 and len(tea["frames"]) == 12
    # Every frame stored: the JPEG of its central square.
    assert_close_pixels(decode_jpegs(tea["frames"]), central_square_crop(video.read_frames(path)))

    # The pipeline reads the TFDS split exactly like the files themselves.
    train = builder.as_dataset(split="train", shuffle_files=False)
    def evaluation_batches(videos):  # 5 videos in batches of 3: the second batch ends in padding
        dataset = pipeline.evaluation_dataset(
            videos, batch_size=3, num_timesteps=T, timestep_length=L, frame_side=CANVAS, shard=None
        )
        keys = ("frames", "boxes", "label", "video_id", "mask")
        return {k: np.concatenate([b[k] for b in dataset.as_numpy_iterator()]) for k in keys}

    batch = evaluation_batches(sources.tfds_videos(train))
    records = [
        VideoRecord(
            e["video_id"].decode(), str(breakfast_dir.parent / e["file_name"].decode()), int(e["label"]),
            tuple(e["actor_square"]) if e["has_actor"] else None,
        )
        for e in train.as_numpy_iterator()
    ]
    expected = evaluation_batches(records)
    # Same frames, regions and order; only JPEG's small loss differs.
    assert_close_pixels(batch["frames"], expected["frames"])
    np.testing.assert_array_equal(batch["boxes"], expected["boxes"])
    np.testing.assert_array_equal(batch["video_id"], expected["video_id"])
    np.testing.assert_array_equal(batch["label"], expected["label"])
    np.testing.assert_array_equal(batch["mask"], [1, 1, 1, 1, 1, 0])
    assert batch["video_id"][-1] == b"<padding>" and (batch["frames"][-1] == 0).all()

    # Training from TFDS: one region per video, drawn like the file pipeline draws it.
    settings = dict(epoch=2, seed=4, batch_size=1, num_timesteps=T, timestep_length=L, frame_side=CANVAS,
                    shard=None)
    from_tfds = list(pipeline.training_dataset(sources.tfds_videos(train), **settings).as_numpy_iterator())
    from_files = list(pipeline.training_dataset(records, **settings).as_numpy_iterator())
    flatten = lambda out: {  # noqa: E731
        v.decode(): (f, r, x) for b in out for v, f, r, x in zip(b["video_id"], b["frames"], b["region"], b["boxes"])
    }
    tfds_elements, file_elements = flatten(from_tfds), flatten(from_files)
    assert len(tfds_elements) == len(file_elements) == 5
    for video_id, (frames, region, boxes) in tfds_elements.items():
        assert region == pipeline.choose_region(4, 2, video_id, 11) == file_elements[video_id][1]
        assert_close_pixels(frames, file_elements[video_id][0])
        np.testing.assert_array_equal(boxes, file_elements[video_id][2])


def test_breakfast_ch0_config_keeps_channel_0_only(breakfast_dir, tmp_path, capsys):
    builder = tfds.builder("breakfast/ch0", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(breakfast_dir.parent)))
    assert (builder.builder_config.name, builder.builder_config.stereo) == ("ch0", "ch0")
    ids = {
        split: sorted(e["video_id"].decode() for e in builder.as_dataset(split=split).as_numpy_iterator())
        for split in ("train", "validation", "test")
    }
    assert ids == {
        "train": ["P03/cam01/P03_cereals", "P03/stereo/P03_cereals_ch0", "P20/webcam01/P20_salat"],
        "validation": ["P42/cam02/P42_scrambledegg"],
        "test": ["P47/cam01/P47_pancake", "P54/webcam02/P54_coffee"],
    }
    printed = capsys.readouterr().out.splitlines()
    assert (
        "breakfast/ch0 paper split: train 3, validation 1, test 2 (stereo channel 0 only; the paper's counts, "
        "train 1322, validation 256, test 411, are for breakfast/both)"
    ) in printed
    assert not [line for line in printed if line.startswith("warning: breakfast/ch0")]  # no mismatch warnings


# video_folder ---------------------------------------------------------------------------------


def test_folder_layouts(tmp_path):
    classes = tmp_path / "classes"
    write_clip(classes / "waving/a.mp4")
    write_clip(classes / "jumping/sub/b.avi", value=1)
    (classes / "jumping/readme.txt").write_text("not a video")
    records, names = records_from_folder(classes)
    assert names == ["jumping", "waving"]
    assert [(r.video_id, r.label) for r in records] == [("jumping/sub/b", 0), ("waving/a", 1)]

    splits = tmp_path / "splits"
    write_clip(splits / "train/waving/a.mkv")
    write_clip(splits / "test/jumping/b.mkv", value=1)
    records, names = _folder_records(splits)
    assert names == ["jumping", "waving"]
    assert [(r.video_id, r.label, r.split) for r in records] == [("jumping/b", 0, "test"), ("waving/a", 1, "train")]


def test_video_folder_builder_from_class_folders(tmp_path):
    manual = tmp_path / "manual"
    write_clip(manual / "waving/a.mkv", num_frames=9)
    write_clip(manual / "waving/b.mkv", num_frames=11, value=1)
    write_clip(manual / "jumping/c.mkv", num_frames=7, value=2)
    builder = build(VideoFolder, manual, tmp_path / "tfds")
    assert builder.info.features["label"].names == ["jumping", "waving"]
    examples = {e["video_id"].decode(): e for e in builder.as_dataset(split="train").as_numpy_iterator()}
    assert {k: (int(v["label"]), int(v["num_frames"])) for k, v in examples.items()} == {
        "waving/a": (1, 9),
        "waving/b": (1, 11),
        "jumping/c": (0, 7),
    }
    stored = decode_jpegs(examples["jumping/c"]["frames"])
    assert_close_pixels(stored, central_square_crop(video.read_frames(manual / "jumping/c.mkv")))


def test_large_frames_are_stored_shrunk_with_their_actor_square(tmp_path):
    manual = tmp_path / "manual"
    big = write_clip(manual / "dancing/big.mkv", num_frames=3, height=300, width=400)
    actors_file = tmp_path / "actors.jsonl"
    actors_file.write_text(json.dumps({"path": str(big), "actor_square": [30, 60, 150], "fallback": False}) + "\n")
    builder = build(VideoFolder, manual, tmp_path / "tfds", actors_file=actors_file)
    (example,) = builder.as_dataset(split="train").as_numpy_iterator()
    assert (example["height"], example["width"], example["square_side"]) == (300, 400, MAX_SQUARE_SIDE)
    # 256 / 300 of (30, 60, 150) = (25.6, 51.2, 128) -> rounded half up.
    assert list(example["actor_square"]) == [26, 51, 128]
    frames = decode_jpegs(example["frames"])
    expected = resize_square(central_square_crop(video.read_frames(big)), MAX_SQUARE_SIDE, output="uint8")
    assert frames.shape == (3, 256, 256, 3)
    assert_close_pixels(frames, expected)


def test_video_folder_builder_from_csv(tmp_path):
    manual = tmp_path / "manual"
    write_clip(manual / "clips/one.mkv")
    write_clip(manual / "clips/two.mkv", value=1)
    write_clip(manual / "clips/three.mkv", value=2)
    (manual / "videos.csv").write_text(
        "path,label,split\nclips/one.mkv,stir,train\nclips/two.mkv,pour,train\nclips/three.mkv,stir,test\n"
    )
    records, names = records_from_csv(manual / "videos.csv")
    assert names == ["pour", "stir"] and [r.split for r in records] == ["train", "train", "test"]
    actors = [{"path": str(manual / "clips/two.mkv"), "actor_square": [1, 2, 10], "fallback": False}]
    actors_file = tmp_path / "actors.jsonl"
    actors_file.write_text(json.dumps(actors[0]) + "\n")
    builder = build(VideoFolder, manual, tmp_path / "tfds", actors_file=actors_file)
    train = {e["video_id"].decode(): e for e in builder.as_dataset(split="train").as_numpy_iterator()}
    test = {e["video_id"].decode(): e for e in builder.as_dataset(split="test").as_numpy_iterator()}
    assert sorted(train) == ["clips/one", "clips/two"] and list(test) == ["clips/three"]
    assert int(train["clips/two"]["label"]) == 0 and int(test["clips/three"]["label"]) == 1
    assert train["clips/two"]["has_actor"] and list(train["clips/two"]["actor_square"]) == [1, 2, 10]
    assert not train["clips/one"]["has_actor"]
