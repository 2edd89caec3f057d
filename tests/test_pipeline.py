"""tf.data pipelines end to end on real (tiny, lossless) video files written here."""

import numpy as np
import pytest

from rajax.data import pipeline, regions, sampling, video
from rajax.data.records import VideoRecord

T, L = 2, 4
SIDE = 24  # the test videos' central square (24 x 32 frames)
CANVAS = 32  # frame_side: the squares travel padded to 32


def frame_index_video(path, num_frames, height=24, width=32):
    """Channel 0 = 4 * frame index everywhere; channels 1, 2 = a coordinate pattern (y, x)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = (4 * np.arange(num_frames))[:, None, None]
    frames[..., 1] = (7 * np.arange(height))[None, :, None]
    frames[..., 2] = (7 * np.arange(width))[None, None, :]
    return video.write_video(path, frames, fps=10)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    out = []
    for i, num_frames in enumerate([20, 27, 33, 40, 45, 52, 6]):
        path = frame_index_video(root / f"v{i}.mkv", num_frames)
        actor = (3, 5, 12) if i == 2 else None
        out.append(VideoRecord(f"video_{i}", str(path), label=i % 3, actor_square=actor))
    return out


@pytest.fixture(scope="module")
def bad_record(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "broken.mkv"
    path.write_bytes(b"\x1a\x45\xdf\xa3 definitely not a video" * 20)
    return VideoRecord("broken", str(path), label=1)


def decoded_indices(frames_uint8):
    """Frame indices read back from channel 0 of [N, S, S, 3] uint8 frames."""
    values = frames_uint8[:, :, :, 0].reshape(len(frames_uint8), -1)
    assert (values == values[:, :1]).all()  # channel 0 is flat in every frame
    return values[:, 0].astype(int) // 4


def check_on_canvas(frames, record, indices):
    """The element's frames are the video's central squares at ``indices``, zero-padded to the canvas."""
    assert frames.shape == (T * L, CANVAS, CANVAS, 3) and frames.dtype == np.uint8
    expected = regions.central_square_crop(video.read_frames(record.path, indices))
    np.testing.assert_array_equal(frames[:, :SIDE, :SIDE], expected)
    assert not frames[:, SIDE:].any() and not frames[:, :, SIDE:].any()


def batches(dataset):
    return list(dataset.as_numpy_iterator())


def common(**overrides):
    return {"num_timesteps": T, "timestep_length": L, "frame_side": CANVAS, "shard": None, **overrides}


def test_training_epoch(records):
    by_id = {r.video_id: r for r in records}
    dataset = pipeline.training_dataset(records, epoch=3, batch_size=2, seed=11, deterministic=True, **common())
    out = batches(dataset)
    assert len(out) == pipeline.training_steps(7, 2) == 3  # the last partial batch is dropped
    seen = []
    for batch in out:
        assert batch["frames"].shape == (2, T * L, CANVAS, CANVAS, 3) and batch["boxes"].shape == (2, 1, 3)
        np.testing.assert_array_equal(batch["mask"], [1.0, 1.0])
        for frames, boxes, label, region, video_id in zip(batch["frames"], batch["boxes"], batch["label"],
                                                           batch["region"], batch["video_id"]):
            record = by_id[video_id.decode()]
            assert label == record.label
            assert region == pipeline.choose_region(11, 3, record.video_id, 11)
            num_frames = video.probe(record.path).num_frames
            indices = decoded_indices(frames[:, :SIDE, :SIDE])
            np.testing.assert_array_equal(indices, sampling.uniform_timesteps(num_frames, T, L).reshape(-1))
            check_on_canvas(frames, record, indices)
            name = regions.REGION_NAMES[region]
            np.testing.assert_array_equal(boxes, regions.region_boxes(SIDE, (name,), record.actor_square))
            seen.append(record.video_id)
    assert len(set(seen)) == 6
    # The order is the epoch's permutation of (seed, epoch).
    order = np.random.default_rng([11, 3]).permutation(7)[:6]
    assert seen == [records[i].video_id for i in order]


def test_a_larger_square_is_shrunk_while_decoding_and_its_actor_box_scaled(tmp_path):
    path = frame_index_video(tmp_path / "big.mkv", 12, height=48, width=64)  # a 48-pixel square
    record = VideoRecord("big", str(path), label=0, actor_square=(6, 12, 24))
    (batch,) = batches(pipeline.evaluation_dataset([record], **common(frame_side=32)))
    frames, boxes = batch["frames"][0], batch["boxes"][0]
    indices = sampling.uniform_timesteps(12, T, L).reshape(-1)
    expected = regions.central_square_crop(video.read_frames(path, indices, max_side=32))
    assert expected.shape[1:3] == (32, 32)
    np.testing.assert_array_equal(frames, expected)  # the whole canvas: no padding left
    np.testing.assert_array_equal(boxes, regions.region_boxes(32, regions.REGION_NAMES, (4, 8, 16)))


def test_training_is_reproducible_and_changes_each_epoch(records):
    def run(epoch):
        dataset = pipeline.training_dataset(
            records, epoch=epoch, batch_size=3, seed=0, deterministic=True, **common()
        )
        return batches(dataset)

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["frames"], b["frames"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["region"], b["region"])
    regions_of = lambda out: {v: r for b in out for v, r in zip(b["video_id"], b["region"])}  # noqa: E731
    ids_of = lambda out: [v for b in out for v in b["video_id"]]  # noqa: E731
    assert regions_of(first) != regions_of(other) or ids_of(first) != ids_of(other)
    assert first[0]["frames"].dtype == np.uint8  # no float conversion on the host
    # Regions are drawn over all 11 across epochs.
    drawn = {pipeline.choose_region(0, e, r.video_id, 11) for e in range(30) for r in records}
    assert drawn == set(range(11))


def test_random_and_shuffled_sampling_in_training(records):
    dataset = pipeline.training_dataset(
        records[:6],
        epoch=0,
        batch_size=6,
        sampling_mode="random",
        shuffled_timesteps=True,
        regions=("full",),
        **common(num_timesteps=4, timestep_length=2),
    )
    (batch,) = batches(dataset)
    assert set(batch["region"]) == {0}
    orders = []
    for frames, video_id in zip(batch["frames"], batch["video_id"]):
        record = next(r for r in records if r.video_id == video_id.decode())
        steps = decoded_indices(frames[:, :SIDE, :SIDE]).reshape(4, 2)
        assert (np.diff(steps, axis=1) == 1).all()  # consecutive frames within a timestep
        num_frames = video.probe(record.path).num_frames
        assert steps.min() >= 0 and steps.max() < num_frames
        orders.append(np.all(np.diff(steps[:, 0]) >= 0))
    assert not all(orders)  # some video's timesteps came out of temporal order


def test_bad_video_is_skipped_counted_and_masked(records, bad_record, caplog):
    skipped = []
    dataset = pipeline.training_dataset(
        [records[0], bad_record, records[1], records[3]], epoch=0, batch_size=4, skipped=skipped, **common()
    )
    (batch,) = batches(dataset)
    masks = dict(zip((v.decode() for v in batch["video_id"]), batch["mask"]))
    assert masks == {"video_0": 1.0, "broken": 0.0, "video_1": 1.0, "video_3": 1.0}
    assert len(skipped) == 1 and bad_record.path in skipped[0]
    broken = list(masks).index("broken")
    assert not batch["frames"][broken].any()  # zeros: nothing of another video leaks in


def test_evaluation_every_region_in_order_with_padding(records, bad_record):
    videos = records + [bad_record]  # 8 videos, batches of 3: 3 batches, one padding element
    skipped = []
    dataset = pipeline.evaluation_dataset(videos, batch_size=3, skipped=skipped, **common())
    out = batches(dataset)
    assert len(out) == pipeline.evaluation_steps(8, 3) == 3
    ids = [v.decode() for b in out for v in b["video_id"]]
    masks = np.concatenate([b["mask"] for b in out])
    assert ids == [r.video_id for r in videos] + ["<padding>"]
    np.testing.assert_array_equal(masks, [1, 1, 1, 1, 1, 1, 1, 0, 0])
    assert len(skipped) == 1
    frames = np.concatenate([b["frames"] for b in out])
    boxes = np.concatenate([b["boxes"] for b in out])
    assert frames.shape == (9, T * L, CANVAS, CANVAS, 3) and boxes.shape == (9, 11, 3)
    for i in (0, 2, 6):  # no actor, an actor square, a video shorter than T*L frames
        record = videos[i]
        num_frames = video.probe(record.path).num_frames
        check_on_canvas(frames[i], record, sampling.uniform_timesteps(num_frames, T, L).reshape(-1))
        np.testing.assert_array_equal(boxes[i], regions.region_boxes(SIDE, regions.REGION_NAMES, record.actor_square))
    np.testing.assert_array_equal(boxes[0, 10], boxes[0, 0])  # no actor square: actor = full
    assert not np.array_equal(boxes[2, 10], boxes[2, 0])
    labels = np.concatenate([b["label"] for b in out])[:7]
    np.testing.assert_array_equal(labels, [r.label for r in records])


def test_evaluation_shards_count_every_video_once(records):
    per_host = []
    for host in range(3):
        dataset = pipeline.evaluation_dataset(records, batch_size=2, regions=1, **common(shard=(host, 3)))
        out = batches(dataset)
        assert out[0]["frames"].shape == (2, T * L, CANVAS, CANVAS, 3) and out[0]["boxes"].shape == (2, 1, 3)
        per_host.append(out)
    assert {len(out) for out in per_host} == {pipeline.evaluation_steps(7, 2, 3)}  # same on every host
    counted = [v.decode() for out in per_host for b in out for v, m in zip(b["video_id"], b["mask"]) if m]
    assert sorted(counted) == sorted(r.video_id for r in records)


def test_training_shards_are_disjoint_and_equal(records):
    ids = []
    for host in range(2):
        dataset = pipeline.training_dataset(
            records, epoch=5, batch_size=1, regions="no_actor", **common(shard=(host, 2))
        )
        out = batches(dataset)
        assert len(out) == pipeline.training_steps(7, 1, 2) == 3
        assert all(b["region"][0] < 10 for b in out)
        ids.append({b["video_id"][0] for b in out})
    assert not ids[0] & ids[1]


def test_auto_shard_asks_jax():
    assert pipeline.resolve_shard("auto") == (0, 1)
    assert pipeline.resolve_shard(None) == (0, 1)
    with pytest.raises(ValueError):
        pipeline.resolve_shard((2, 2))


def test_load_video_frames_matches_the_pipeline(records):
    record = records[2]
    frames, boxes = pipeline.load_video_frames(record.path, actor_square=record.actor_square, num_timesteps=T,
                                               timestep_length=L, frame_side=CANVAS)
    (batch,) = batches(pipeline.evaluation_dataset([record], **common()))
    np.testing.assert_array_equal(frames, batch["frames"][0])
    np.testing.assert_array_equal(boxes, batch["boxes"][0])


def test_argument_errors(records):
    with pytest.raises(ValueError, match="sampling"):
        pipeline.training_dataset(records, epoch=0, batch_size=2, sampling_mode="dense", **common())
    with pytest.raises(ValueError, match="no full batch"):
        pipeline.training_dataset(records, epoch=0, batch_size=8, **common())
    with pytest.raises(ValueError, match="frame_side"):
        pipeline.evaluation_dataset(records, **common(frame_side=0))
