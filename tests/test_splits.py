"""Groups, drawn splits and grouped folds (rajax.data.splits), the CSV's group column, and the
experiment's own split: UCF101's split 1 on the shared subset's file names."""

import collections
import re

import pytest

from rajax.data.records import VideoRecord, records_from_csv, write_records_csv
from rajax.data.splits import draw_splits, group_of, grouped_folds, groups_across_splits, with_groups
from rajax.errors import RajaxError

UCF_PATTERN = r"(v_.+_g\d+)_c\d+$"


def ucf_like(classes=4, groups=9, clips=(1, 2, 3)) -> list[VideoRecord]:
    """Records named like UCF101 clips: each class has ``groups`` groups of 1-3 clips."""
    records = []
    for label in range(classes):
        for group in range(1, groups + 1):
            for clip in range(1, clips[(label + group) % len(clips)] + 1):
                video_id = f"C{label}/v_C{label}_g{group:02d}_c{clip:02d}"
                records.append(VideoRecord(video_id, f"/videos/{video_id}.mp4", label))
    return records


def test_group_of_takes_the_named_group_else_the_first_else_the_whole_match():
    assert group_of("A/v_A_g08_c01", UCF_PATTERN) == "v_A_g08"
    assert group_of("P03/cam01/P03_cereals", r"^(?P<person>P\d+)/cam\d+/(?P<group>P\d+)_") == "P03"
    assert group_of("P03/cam01/P03_cereals", r"^P\d+") == "P03"
    with pytest.raises(RajaxError, match=r"video 'clip_1': config.data.group_pattern .* does not match"):
        group_of("clip_1", UCF_PATTERN)


def test_drawn_splits_keep_groups_whole_follow_the_test_pattern_and_repeat_for_a_seed():
    records = with_groups(ucf_like(), UCF_PATTERN)
    drawn = draw_splits(records, seed=3, test_groups=r"_g0[1-3]$", validation_fraction=0.25)
    assert groups_across_splits(drawn) == {}
    by_split = collections.defaultdict(set)
    for record in drawn:
        by_split[record.split].add(record.group)
    # Test is exactly the pattern's groups; validation about a quarter of each class's other groups.
    assert by_split["test"] == {g for g in {r.group for r in records} if re.search(r"_g0[1-3]$", g)}
    for label in range(4):
        validation = {r.group for r in drawn if r.label == label and r.split == "validation"}
        assert len(validation) == round(0.25 * 6)
    assert not by_split["validation"] & by_split["train"]
    assert draw_splits(records, seed=3, test_groups=r"_g0[1-3]$", validation_fraction=0.25) == drawn
    other = draw_splits(records, seed=4, test_groups=r"_g0[1-3]$", validation_fraction=0.25)
    assert [r.split for r in other] != [r.split for r in drawn]
    # A test fraction instead of a pattern: a share of each class's groups, whole.
    by_fraction = draw_splits(records, seed=0, test_fraction=0.3)
    assert groups_across_splits(by_fraction) == {}
    for label in range(4):
        assert len({r.group for r in by_fraction if r.label == label and r.split == "test"}) == 3
    # Given splits are kept; a group they cut in two is reported.
    given = [VideoRecord("a", "/a.mp4", 0, split="train", group="p1"),
             VideoRecord("b", "/b.mp4", 0, split="test", group="p1"),
             VideoRecord("c", "/c.mp4", 1, group="p2")]
    kept = draw_splits(given, seed=0, test_fraction=0.5)
    assert [r.split for r in kept[:2]] == ["train", "test"] and kept[2].split == "train"
    assert groups_across_splits(kept) == {"p1": ["test", "train"]}


def test_grouped_folds_put_every_group_in_one_fold_and_balance_the_classes():
    records = with_groups(ucf_like(classes=5, groups=10), UCF_PATTERN)
    labels = [r.label for r in records]
    groups = [r.group for r in records]
    folds = grouped_folds(labels, groups, 5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    for group in set(groups):
        assert len({f for f, g in zip(folds, groups) if g == group}) == 1, group
    for label in range(5):  # each class's 10 groups dealt 2 to a fold
        counts = collections.Counter(f for f, g, lab in zip(folds, groups, labels) if lab == label)
        per_fold_groups = collections.Counter(
            f for f, g in {(f, g) for f, g, lab in zip(folds, groups, labels) if lab == label})
        assert set(per_fold_groups.values()) == {2}, (label, counts)
    # Without groups (one per example) they are plain stratified folds.
    plain = grouped_folds(labels, [str(i) for i in range(len(labels))], 5, seed=0)
    for label in range(5):
        sizes = collections.Counter(f for f, lab in zip(plain, labels) if lab == label).values()
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(RajaxError, match="3 groups cannot fill 5 cross-validation folds"):
        grouped_folds([0, 0, 1], ["a", "b", "c"], 5, seed=0)


def test_the_csv_takes_a_group_column_by_position_or_by_header_and_writes_it_back(tmp_path):
    by_position = tmp_path / "a.csv"
    by_position.write_text("x.mp4,cereals,train,P03\ny.mp4,coffee,test,\n")
    records, _ = records_from_csv(by_position, ["cereals", "coffee"])
    assert [(r.split, r.group) for r in records] == [("train", "P03"), ("test", None)]
    by_header = tmp_path / "b.csv"
    by_header.write_text("path,group,label\nx.mp4,P03,cereals\ny.mp4,P04,coffee\n")
    records, _ = records_from_csv(by_header, ["cereals", "coffee"], splits=("train", "test"), unsplit_ok=True)
    assert [(r.label, r.split, r.group) for r in records] == [(0, None, "P03"), (1, None, "P04")]
    with pytest.raises(RajaxError, match=r"has no split"):
        records_from_csv(by_header, ["cereals", "coffee"], splits=("train", "test"))
    bad = tmp_path / "c.csv"
    bad.write_text("path,label,person\nx.mp4,cereals,P03\n")
    with pytest.raises(RajaxError, match=r"c.csv: header path,label,person: the columns are path and label"):
        records_from_csv(bad)
    short = tmp_path / "d.csv"
    short.write_text("path,label,split,group\nx.mp4,cereals,train\n")
    with pytest.raises(RajaxError, match=r"d.csv: line 2 has 3 columns; the header names 4"):
        records_from_csv(short)
    written = tmp_path / "e.csv"
    records = [VideoRecord("x", str(tmp_path / "x.mp4"), 1, split="test", group="P03"),
               VideoRecord("y", str(tmp_path / "y.mp4"), 0, split="train")]
    write_records_csv(records, ["cereals", "coffee"], written)
    again, _ = records_from_csv(written, ["cereals", "coffee"])
    assert [(r.path, r.label, r.split, r.group) for r in again] == [(r.path, r.label, r.split, r.group)
                                                                     for r in records]


def test_the_ucf101_experiment_is_split_1_with_whole_groups(ucf101_subset):
    """The config's own split on the real file names: UCF101's groups 1-7 test, validation drawn
    from the training groups, no group in two splits."""
    from rajax.train import inputs
    from rajax.train.config import apply_overrides, load_config

    config = apply_overrides(load_config("ucf101_subset"), {"data.folder": str(ucf101_subset)})
    records = inputs.file_records(config)
    assert groups_across_splits(records) == {}
    for record in records:
        number = int(re.search(r"_g(\d+)_c\d+$", record.video_id).group(1))
        assert (record.split == "test") == (number <= 7), record.video_id
        assert record.group == re.search(r"(v_.+_g\d+)_c", record.video_id).group(1)
        assert record.video_id.split("/")[0] == config.classes[record.label]
    validation_classes = {r.label for r in records if r.split == "validation"}
    train_classes = {r.label for r in records if r.split == "train"}
    assert validation_classes <= train_classes


def test_a_video_moved_to_another_split_is_refused_by_the_store(tmp_path):
    """Features stored under one split are never read as another's: a changed dataset is an error."""
    from rajax.data.sources import VideoSource
    from rajax.train.extraction import check_stored_splits

    stored = {"a": {"video_id": "a", "split": "train", "label": 0}}
    check_stored_splits(tmp_path, stored, VideoSource.from_records([VideoRecord("a", "/a.mp4", 0)]), "train")
    with pytest.raises(RajaxError, match=r"1 video\(s\) of split 'test' are stored under another split or label: "
                                         r"a \(train, label 0\)"):
        check_stored_splits(tmp_path, stored, VideoSource.from_records([VideoRecord("a", "/a.mp4", 0)]), "test")
    with pytest.raises(RajaxError, match="stored under another split or label"):
        check_stored_splits(tmp_path, stored, VideoSource.from_records([VideoRecord("a", "/a.mp4", 1)]), "train")
