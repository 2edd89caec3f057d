"""Groups, drawn splits and cross-validation folds that keep each group whole.

Clips cut from one longer video (UCF101's groups), or recorded by one person (Breakfast's actors),
look alike: one of them in training and another in test inflates the test accuracy. A video's
*group* (``VideoRecord.group``: a CSV's ``group`` column, or a regular expression over its id,
``group_of``) names what it shares; videos without one are each a group of their own.

- :func:`draw_splits`: the split of every video that has none, whole groups at a time: the groups
  a pattern names go to test (UCF101's official splits), or a fraction of each class's groups; then
  a fraction of each class's remaining groups goes to validation. Drawn from a seed, so every stage
  of an experiment (each a separate command) draws the same.
- :func:`grouped_folds`: k folds of whole groups, each class's groups dealt round the folds.
- :func:`groups_across_splits`: the groups that given splits cut in two (a warning, not an error:
  the user chose those splits).

Pure functions of their arguments (NumPy's generator for the draws).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from rajax.data.records import VideoRecord
from rajax.errors import RajaxError


def group_of(video_id: str, pattern: str) -> str:
    """The group a video id belongs to: the text ``pattern`` (a regular expression searched in the
    id) captures in its group named ``group``, else in its first group, else its whole match.

    >>> group_of("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", r"(v_.+_g\\d+)_c\\d+$")
    'v_ApplyEyeMakeup_g08'
    """
    match = re.search(pattern, video_id)
    if match is None:
        raise RajaxError(f"video {video_id!r}: config.data.group_pattern {pattern!r} does not match its id, "
                         "so its group is unknown")
    if "group" in match.re.groupindex:
        return match.group("group")
    return match.group(1) if match.re.groups else match.group(0)


def with_groups(records: Sequence[VideoRecord], pattern: str) -> list[VideoRecord]:
    """``records`` with the group ``pattern`` finds in each id (records that have one keep it)."""
    if not pattern:
        return list(records)
    return [r if r.group is not None else dataclasses.replace(r, group=group_of(r.video_id, pattern))
            for r in records]


def group_key(record: VideoRecord) -> str:
    """The group of a record; a video without one is a group of its own."""
    return record.group if record.group is not None else f"<video {record.video_id}>"


def _groups_by_class(records: Sequence[VideoRecord]) -> dict[int, list[str]]:
    """Each class's groups (sorted), a group counted in the class of its first video."""
    owner: dict[str, int] = {}
    for record in records:
        owner.setdefault(group_key(record), record.label)
    by_class: dict[int, list[str]] = {}
    for group, label in sorted(owner.items()):
        by_class.setdefault(label, []).append(group)
    return by_class


def _draw_fraction(by_class: dict[int, list[str]], fraction: float, rng: np.random.Generator) -> set[str]:
    """About ``fraction`` of each class's groups (at least one when the fraction is positive and
    the class has more than one group, so that some remain)."""
    drawn: set[str] = set()
    if fraction <= 0:
        return drawn
    for label in sorted(by_class):
        groups = by_class[label]
        count = int(np.floor(fraction * len(groups) + 0.5))
        if count == 0 and len(groups) > 1:
            count = 1
        count = min(count, len(groups) - 1) if len(groups) > 1 else 0
        drawn.update(rng.permutation(groups)[:count].tolist())
    return drawn


def draw_splits(
    records: Sequence[VideoRecord],
    *,
    seed: int,
    test_groups: str = "",
    test_fraction: float = 0.0,
    validation_fraction: float = 0.0,
    train_split: str = "train",
    validation_split: str = "validation",
    test_split: str = "test",
) -> list[VideoRecord]:
    """``records`` with a split for every video that has none, whole groups at a time.

    Test: the groups ``test_groups`` (a regular expression) matches, or else ``test_fraction`` of
    each class's groups. Validation: ``validation_fraction`` of each class's groups that are not
    test. The rest: training. Records that have a split keep it. The same ``seed`` and records give
    the same splits.
    """
    unsplit = [r for r in records if r.split is None]
    if not unsplit:
        return list(records)
    rng = np.random.default_rng([seed, 0x5B1])
    by_class = _groups_by_class(unsplit)
    if test_groups:
        pattern = re.compile(test_groups)
        test = {group for groups in by_class.values() for group in groups if pattern.search(group)}
    else:
        test = _draw_fraction(by_class, test_fraction, rng)
    remaining = {label: [g for g in groups if g not in test] for label, groups in by_class.items()}
    validation = _draw_fraction(remaining, validation_fraction, rng) if validation_split else set()

    def split_of(record: VideoRecord) -> str:
        group = group_key(record)
        if group in test:
            return test_split
        return validation_split if group in validation else train_split

    return [r if r.split is not None else dataclasses.replace(r, split=split_of(r)) for r in records]


def groups_across_splits(records: Sequence[VideoRecord]) -> dict[str, list[str]]:
    """``{group: [splits]}`` of every named group whose videos lie in more than one split."""
    splits: dict[str, set[str]] = {}
    for record in records:
        if record.group is not None:
            splits.setdefault(record.group, set()).add(str(record.split))
    return {group: sorted(names) for group, names in sorted(splits.items()) if len(names) > 1}


def grouped_folds(labels: Sequence[int], groups: Sequence[str], num_folds: int, seed: int) -> np.ndarray:
    """The fold (0 .. num_folds - 1) of each example, every group in one fold.

    Each class's groups are dealt round the folds in a random order, the next class starting where
    the last stopped, largest groups first within a class: the folds get about the same number of
    examples of every class. ``groups[i]`` is example i's group (use a distinct value per example
    for plain stratified folds).
    """
    labels, groups = np.asarray(labels), np.asarray(groups, dtype=object)
    if len(labels) != len(groups):
        raise ValueError("one group per example")
    if num_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {num_folds}")
    owner: dict[str, int] = {}
    for label, group in zip(labels.tolist(), groups.tolist()):
        owner.setdefault(group, label)
    if len(owner) < num_folds:
        raise RajaxError(f"{len(owner)} groups cannot fill {num_folds} cross-validation folds; use fewer folds")
    sizes = {group: int(np.sum(groups == group)) for group in owner}
    rng = np.random.default_rng([seed, 0xF01D])
    fold_of: dict[str, int] = {}
    offset = 0
    for label in sorted(set(owner.values())):
        members = [g for g in sorted(owner) if owner[g] == label]
        members = [members[i] for i in rng.permutation(len(members))]
        members.sort(key=lambda g: -sizes[g])  # stable: random order among groups of one size
        for position, group in enumerate(members):
            fold_of[group] = (position + offset) % num_folds
        offset += len(members)
    return np.array([fold_of[g] for g in groups.tolist()], dtype=int)
