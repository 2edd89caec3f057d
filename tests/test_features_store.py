"""The feature store: atomic, resumable writes and the tf.data reader for head training."""

import json

import numpy as np
import pytest

from rajax.data import features
from rajax.data.regions import REGION_NAMES
from rajax.errors import RajaxError

R, P, C = 11, 5, 8


def fake_features(i):
    rng = np.random.default_rng(i)
    return rng.standard_normal((R, P, C)).astype(np.float32)


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "store"
    writer = features.FeatureWriter(path, REGION_NAMES, P, C, class_names=["a", "b", "c"], settings={"T": 64})
    for i in range(7):
        writer.write(f"P{i:02d}/cam01/P{i:02d}_tea", i % 3, "train" if i < 5 else "test", fake_features(i))
    return path


def test_layout_and_round_trip(store):
    meta = json.loads((store / "meta.json").read_text())
    assert meta["region_names"] == list(REGION_NAMES)
    assert (meta["num_positions"], meta["channels"], meta["dtype"]) == (P, C, "float16")
    assert meta["settings"] == {"T": 64} and meta["class_names"] == ["a", "b", "c"]
    index = features.read_index(store)
    assert [e["video_id"] for e in index] == [f"P{i:02d}/cam01/P{i:02d}_tea" for i in range(7)]
    assert [e["split"] for e in index] == ["train"] * 5 + ["test"] * 2
    for i, entry in enumerate(index):
        stored = features.load_features(store, entry)
        assert stored.dtype == np.float16 and stored.shape == (R, P, C)
        np.testing.assert_array_equal(stored, fake_features(i).astype(np.float16))
        assert "/" not in entry["file"].split("/", 1)[1]  # ids with slashes become flat file names
    assert len(list((store / "features").iterdir())) == 7  # no temporary files left behind
    np.testing.assert_array_equal(
        features.load_features(store, "P03/cam01/P03_tea"), fake_features(3).astype(np.float16)
    )


def test_resume_skips_done_videos_and_repairs_a_cut_index(store):
    index_path = store / "index.jsonl"
    with open(index_path, "ab") as handle:  # a crash in the middle of an index line
        handle.write(b'{"video_id": "P07/cam01/P07_tea", "lab')
    writer = features.FeatureWriter(store, REGION_NAMES, P, C, class_names=["a", "b", "c"], settings={"T": 64})
    assert len(writer) == 7 and "P03/cam01/P03_tea" in writer and "P07/cam01/P07_tea" not in writer
    assert index_path.read_bytes().endswith(b"\n")
    writer.write("P07/cam01/P07_tea", 1, "test", fake_features(7))
    assert [e["video_id"] for e in features.read_index(store)][-1] == "P07/cam01/P07_tea"
    assert len(features.read_index(store, "test")) == 3


def test_reopening_with_another_shape_or_other_settings_is_refused(store):
    with pytest.raises(RajaxError, match="num_positions"):
        features.FeatureWriter(store, REGION_NAMES, P + 1, C, class_names=["a", "b", "c"], settings={"T": 64})
    # Features computed another way (here: another T) must never be mixed in or reused.
    with pytest.raises(RajaxError, match=r"T: 64 \(store\) vs 32"):
        features.FeatureWriter(store, REGION_NAMES, P, C, class_names=["a", "b", "c"], settings={"T": 32})
    with pytest.raises(RajaxError, match=r"class_names: \['a', 'b', 'c'\] \(store\) vs \['b', 'a', 'c'\]"):
        features.FeatureWriter(store, REGION_NAMES, P, C, class_names=["b", "a", "c"], settings={"T": 64})
    writer = features.FeatureWriter(store, REGION_NAMES, P, C, class_names=["a", "b", "c"], settings={"T": 64})
    with pytest.raises(ValueError, match="shape"):
        writer.write("x", 0, "train", np.zeros((R, P, C + 1)))
    with pytest.raises(RajaxError, match="NaN"):
        writer.write("x", 0, "train", np.full((R, P, C), np.nan))
    assert "x" not in writer


def test_not_a_store(tmp_path):
    with pytest.raises(RajaxError, match="not a feature store"):
        features.read_meta(tmp_path)


def test_dataset_pads_the_last_batch_with_a_mask(store):
    dataset = features.features_dataset(store, batch_size=3, split="train", shard=None)
    out = list(dataset.as_numpy_iterator())
    assert len(out) == 2
    assert out[0]["features"].shape == (3, R, P, C) and out[0]["features"].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([b["mask"] for b in out]), [1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in out])[:5], [0, 1, 2, 0, 1])
    stacked = np.concatenate([b["features"] for b in out])
    for i in range(5):
        np.testing.assert_array_equal(stacked[i], fake_features(i).astype(np.float16).astype(np.float32))
    assert (stacked[5] == 0).all() and out[1]["video_id"][-1] == b"<padding>"


def test_dataset_region_subset_shuffle_and_shards(store):
    dataset = features.features_dataset(
        store, batch_size=2, regions=("full", "actor"), shuffle=True, seed=1, epoch=2, drop_remainder=True, shard=None
    )
    out = list(dataset.as_numpy_iterator())
    assert len(out) == 3 and all(b["mask"].all() for b in out)
    ids = [v.decode() for b in out for v in b["video_id"]]
    all_ids = [e["video_id"] for e in features.read_index(store)]
    order = np.random.default_rng([1, 2]).permutation(7)
    assert ids == [all_ids[i] for i in order[:6]]
    first = int(ids[0][1:3])
    np.testing.assert_array_equal(
        out[0]["features"][0], fake_features(first)[[0, 10]].astype(np.float16).astype(np.float32)
    )
    counted = []
    for host in range(2):
        host_out = list(features.features_dataset(store, batch_size=2, shard=(host, 2)).as_numpy_iterator())
        assert len(host_out) == 2  # ceil(ceil(7 / 2) / 2) on both hosts
        counted += [v for b in host_out for v, m in zip(b["video_id"], b["mask"]) if m]
    assert sorted(counted) == sorted(v.encode() for v in all_ids)
    with pytest.raises(RajaxError, match="not stored"):
        features.features_dataset(
            features.FeatureWriter(store.parent / "small", ("full",), P, C).store, batch_size=1, regions=("actor",)
        )
