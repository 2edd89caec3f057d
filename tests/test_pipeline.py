"""tf.data pipelines end to end on real (tiny, lossless) video files written here."""

import numpy as np
import pytest

from rajax.data import pipeline, regions, sampling, video
from rajax.data.records import VideoRecord

T, L, SIZE = 2, 4, 16


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


def reference_crops(record, indices, names):
    frames = regions.central_square_crop(video.read_frames(record.path, indices))
    return regions.crop_regions(frames, names, record.actor_square, SIZE, output="uint8")


def batches(dataset):
    return list(dataset.as_numpy_iterator())


def common(**overrides):
    return {"num_timesteps": T, "timestep_length": L, "size": SIZE, "shard": None, **overrides}


def test_training_epoch(records):
    by_id = {r.video_id: r for r in records}
    dataset = pipeline.training_dataset(
        records, epoch=3, batch_size=2, seed=11, dtype="uint8", deterministic=True, **common()
    )
    out = batches(dataset)
    assert len(out) == pipeline.training_steps(7, 2) == 3  # the last partial batch is dropped
    seen = []
    for batch in out:
        assert batch["frames"].shape == (2, T * L, SIZE, SIZE, 3) and batch["frames"].dtype == np.uint8
        np.testing.assert_array_equal(batch["mask"], [1.0, 1.0])
        for frames, label, region, video_id in zip(batch["frames"], batch["label"], batch["region"], batch["video_id"]):
            record = by_id[video_id.decode()]
            assert label == record.label
            assert region == pipeline.choose_region(11, 3, record.video_id, 11)
            num_frames = video.probe(record.path).num_frames
            indices = decoded_indices(frames)
            np.testing.assert_array_equal(indices, sampling.uniform_timesteps(num_frames, T, L).reshape(-1))
            name = regions.REGION_NAMES[region]
            np.testing.assert_array_equal(frames, reference_crops(record, indices, (name,))[0])
            seen.append(record.video_id)
    assert len(set(seen)) == 6
    # The order is the epoch's permutation of (seed, epoch).
    order = np.random.default_rng([11, 3]).permutation(7)[:6]
    assert seen == [records[i].video_id for i in order]


def test_training_is_reproducible_and_changes_each_epoch(records):
    def run(epoch):
        dataset = pipeline.training_dataset(
            records, epoch=epoch, batch_size=3, seed=0, deterministic=True, **common()
        )
        return batches(dataset)

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["frames"], b["frames"])
        np.testing.assert_array_equal(a["region"], b["region"])
    regions_of = lambda out: {v: r for b in out for v, r in zip(b["video_id"], b["region"])}  # noqa: E731
    ids_of = lambda out: [v for b in out for v in b["video_id"]]  # noqa: E731
    assert regions_of(first) != regions_of(other) or ids_of(first) != ids_of(other)
    batch = first[0]
    assert batch["frames"].dtype == np.float32
    assert batch["frames"].min() >= -1.0 and batch["frames"].max() <= 1.0
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
        dtype="uint8",
        regions=("full",),
        **common(num_timesteps=4, timestep_length=2),
    )
    (batch,) = batches(dataset)
    assert set(batch["region"]) == {0}
    orders = []
    for frames, video_id in zip(batch["frames"], batch["video_id"]):
        record = next(r for r in records if r.video_id == video_id.decode())
        steps = decoded_indices(frames).reshape(4, 2)
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
    assert (batch["frames"][broken] == -1.0).all()  # zeros: nothing of another video leaks in


def test_evaluation_every_region_in_order_with_padding(records, bad_record):
    videos = records + [bad_record]  # 8 videos, batches of 3: 3 batches, one padding element
    skipped = []
    dataset = pipeline.evaluation_dataset(videos, batch_size=3, dtype="uint8", skipped=skipped, **common())
    out = batches(dataset)
    assert len(out) == pipeline.evaluation_steps(8, 3) == 3
    ids = [v.decode() for b in out for v in b["video_id"]]
    masks = np.concatenate([b["mask"] for b in out])
    assert ids == [r.video_id for r in videos] + ["<padding>"]
    np.testing.assert_array_equal(masks, [1, 1, 1, 1, 1, 1, 1, 0, 0])
    assert len(skipped) == 1
    frames = np.concatenate([b["frames"] for b in out])
    assert frames.shape == (9, 11, T * L, SIZE, SIZE, 3)
    for i in (0, 2, 6):  # no actor, an actor square, a video shorter than T*L frames
        record = videos[i]
        num_frames = video.probe(record.path).num_frames
        indices = sampling.uniform_timesteps(num_frames, T, L).reshape(-1)
        np.testing.assert_array_equal(frames[i], reference_crops(record, indices, regions.REGION_NAMES))
    np.testing.assert_array_equal(frames[0, 10], frames[0, 0])  # no actor square: actor = full
    assert not np.array_equal(frames[2, 10], frames[2, 0])
    labels = np.concatenate([b["label"] for b in out])[:7]
    np.testing.assert_array_equal(labels, [r.label for r in records])


def test_evaluation_shards_count_every_video_once(records):
    per_host = []
    for host in range(3):
        dataset = pipeline.evaluation_dataset(
            records, batch_size=2, regions=1, dtype="bfloat16", **common(shard=(host, 3))
        )
        out = batches(dataset)
        assert out[0]["frames"].shape == (2, 1, T * L, SIZE, SIZE, 3)
        assert str(out[0]["frames"].dtype) == "bfloat16"
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


def test_load_video_regions_matches_the_pipeline(records):
    record = records[2]
    regions_array = pipeline.load_video_regions(
        record.path, actor_square=record.actor_square, num_timesteps=T, timestep_length=L, size=SIZE, output="uint8"
    )
    (batch,) = batches(pipeline.evaluation_dataset([record], dtype="uint8", **common()))
    np.testing.assert_array_equal(regions_array, batch["frames"][0])


def test_argument_errors(records):
    with pytest.raises(ValueError, match="sampling"):
        pipeline.training_dataset(records, epoch=0, batch_size=2, sampling_mode="dense", **common())
    with pytest.raises(ValueError, match="no full batch"):
        pipeline.training_dataset(records, epoch=0, batch_size=8, **common())
    with pytest.raises(ValueError, match="dtype"):
        pipeline.evaluation_dataset(records, dtype="float16", **common())
