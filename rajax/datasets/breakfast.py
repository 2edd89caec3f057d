"""TFDS builder ``breakfast``: the Breakfast Actions dataset (Kuehne et al., CVPR 2014).

Manual download: get the videos from the dataset's page
(https://serre-lab.clps.brown.edu/resource/breakfast-actions-dataset/, archive
``BreakfastII_15fps_qvga_sync``) and unpack them anywhere under ``manual_dir``. The layout is one
folder per actor and camera::

    P03/cam01/P03_cereals.avi
    P03/cam02/P03_cereals.avi
    P03/webcam01/P03_cereals.avi
    P03/stereo/P03_cereals_ch0.avi    # stereo camera: one file per channel
    P03/stereo/P03_cereals_ch1.avi
    ...
    P54/...

Each video file is one example. The activity label comes from the file name
(``P03_cereals.avi`` -> ``cereals``); the 10 activities are ``LABELS``. Files that do not follow
this naming (``*.labels``, other actors) are ignored.

The stereo camera's two channels are two files, and the builder config chooses which are kept:

- ``both`` (default, the paper's protocol): every file, both stereo channels. These are the 1989
  videos of Breakfast's official s1..s4 splits (284 + 506 + 532 + 667), and the paper's
  1322 / 256 / 411 add up to them;
- ``ch0``: stereo channel 0 only (``_ch1`` files are left out, even where ``_ch0`` is missing),
  at most one file per recording (the earlier one-channel builder found 1712 videos).

Splits, by actor (P03..P54, 52 actors):

- paper split (configs ``both``, ``ch0``; Ballan et al. 2021): the first 44 actors for training,
  the last 8 (P47..P54) for testing, 5 training actors held out for validation. The paper does not
  name those five; rajax holds out the last five of the 44, P42..P46. Splits ``train``
  (P03..P41), ``validation`` (P42..P46), ``test`` (P47..P54). The paper counts 1322 / 256 / 411.
- the dataset's standard splits s1..s4 (configs ``both_s1``..``both_s4``, ``ch0_s1``..``ch0_s4``),
  each testing on 13 actors (s1: P03..P15, s2: P16..P28, s3: P29..P41, s4: P42..P54) and training
  on the rest. Splits ``train``, ``test``.

After a build, the number of videos of each split is printed beside the reference count of its
protocol (``count_report``), with a warning line for each split that differs, e.g.
``breakfast/both paper split: train 1322 (paper 1322), validation 256 (paper 256), test 411
(paper 411)``; ``Breakfast.count_report()`` gives the same lines for a built dataset.

``video_id`` is ``<actor>/<camera>/<file name without .avi>`` (``P03/cam01/P03_cereals``,
``P03/stereo/P03_cereals_ch0``): the two channels of a recording are two videos.

Actor squares from ``rajax detect-actors`` (run on the unpacked videos) are attached when
``manual_dir/actors.jsonl`` exists or ``actors_file=`` names the file. Storage: every frame's
240x240 central square as JPEG; see ``rajax.datasets.video_folder`` for the fields and why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import tensorflow_datasets as tfds

from rajax.data.records import VideoRecord
from rajax.datasets.video_folder import EncodedVideoBuilder, video_examples
from rajax.errors import RajaxError

logger = logging.getLogger(__name__)

LABELS = ("cereals", "coffee", "friedegg", "juice", "milk", "pancake", "salat", "sandwich", "scrambledegg", "tea")
ACTORS = tuple(f"P{n:02d}" for n in range(3, 55))  # P03..P54
STEREO_CHOICES = ("both", "ch0")  # every stereo file (the paper's protocol) / channel 0 only

# "P03_cereals.avi" or "P03_cereals_ch0.avi"
_FILE_NAME = re.compile(r"^(P\d{2})_([a-z]+)(?:_ch(\d))?\.avi$", re.IGNORECASE)

# Reference counts with both stereo channels: the paper's split (Ballan et al. 2021), and the
# test sets of the official s1..s4 (their sum, 1989, is every Breakfast file).
PAPER_COUNTS = {"train": 1322, "validation": 256, "test": 411}
STANDARD_TEST_COUNTS = {"s1": 284, "s2": 506, "s3": 532, "s4": 667}
TOTAL_COUNT = sum(STANDARD_TEST_COUNTS.values())  # 1989


def _actor_range(first: int, last: int) -> tuple[str, ...]:
    return tuple(f"P{n:02d}" for n in range(first, last + 1))


@dataclasses.dataclass(eq=False)
class BreakfastConfig(tfds.core.BuilderConfig):
    """Actor-based splits (split name -> actors in it), the protocol they follow (``paper``,
    ``s1``..``s4``) and the stereo files kept (``both`` or ``ch0``)."""

    splits: dict = dataclasses.field(default_factory=dict)
    protocol: str = "paper"
    stereo: str = "both"


PAPER_SPLITS = {
    "train": _actor_range(3, 41),
    "validation": _actor_range(42, 46),
    "test": _actor_range(47, 54),
}


def _standard_split(test_first: int, test_last: int) -> dict:
    test = _actor_range(test_first, test_last)
    return {"train": tuple(a for a in ACTORS if a not in test), "test": test}


PROTOCOLS = {
    "paper": ("First 44 actors train (P42..P46 of them held out for validation), P47..P54 test", PAPER_SPLITS),
    "s1": ("Standard split 1: test on P03..P15", _standard_split(3, 15)),
    "s2": ("Standard split 2: test on P16..P28", _standard_split(16, 28)),
    "s3": ("Standard split 3: test on P29..P41", _standard_split(29, 41)),
    "s4": ("Standard split 4: test on P42..P54", _standard_split(42, 54)),
}
_STEREO_TEXT = {"both": "both stereo channels", "ch0": "stereo channel 0 only"}


def config_name(stereo: str, protocol: str) -> str:
    """``both``, ``ch0`` for the paper split; ``both_s1``, ``ch0_s1`` ... for the standard ones."""
    return stereo if protocol == "paper" else f"{stereo}_{protocol}"


CONFIGS = [
    BreakfastConfig(
        name=config_name(stereo, protocol),
        description=f"{text}; {_STEREO_TEXT[stereo]}.",
        splits=splits,
        protocol=protocol,
        stereo=stereo,
    )
    for stereo in STEREO_CHOICES
    for protocol, (text, splits) in PROTOCOLS.items()
]
CONFIGS_BY_NAME = {config.name: config for config in CONFIGS}


def reference_counts(protocol: str) -> dict[str, int]:
    """Videos per split of ``protocol`` with both stereo channels: the paper's 1322 / 256 / 411,
    or an official split's test count and the rest of the 1989 for training."""
    if protocol == "paper":
        return dict(PAPER_COUNTS)
    test = STANDARD_TEST_COUNTS[protocol]
    return {"train": TOTAL_COUNT - test, "test": test}


def _videos(count: int, kind: str = "") -> str:
    return f"{count} {kind}video{'' if count == 1 else 's'}"


def count_report(config: BreakfastConfig | str, counts: Mapping[str, int], skipped: int = 0) -> list[str]:
    """Lines saying how many videos each split has beside the protocol's reference count.

    The first line lists the splits, e.g. ``breakfast/both paper split: train 1322 (paper 1322),
    validation 256 (paper 256), test 411 (paper 411)``; then one ``warning:`` line per split whose
    count differs (a partial copy of Breakfast, or videos left out as unreadable: ``skipped``).
    The reference counts are for both stereo channels, so a ``ch0`` config gets them for
    information and no warnings.
    """
    if isinstance(config, str):
        name = config.split("/")[-1]
        if name not in CONFIGS_BY_NAME:
            raise RajaxError(f"no Breakfast config {config!r} (configs: {', '.join(CONFIGS_BY_NAME)})")
        config = CONFIGS_BY_NAME[name]
    reference = reference_counts(config.protocol)
    paper = config.protocol == "paper"
    source, whose = ("paper", "the paper") if paper else ("official", f"the official {config.protocol}")
    title = f"breakfast/{config.name} " + ("paper split" if paper else f"standard split {config.protocol}")
    splits = [s for s in config.splits if s in counts] + [s for s in counts if s not in config.splits]
    if config.stereo == "both":
        parts = [f"{s} {counts[s]}" + (f" ({source} {reference[s]})" if s in reference else "")
                 for s in splits]
        lines = [f"{title}: {', '.join(parts)}"]
        lines += [
            f"warning: breakfast/{config.name} {s} has {_videos(counts[s])} where {whose} has "
            f"{reference[s]}: this copy of Breakfast does not match the protocol (a partial copy?)"
            for s in splits
            if s in reference and counts[s] != reference[s]
        ]
    else:
        parts = [f"{s} {counts[s]}" for s in splits]
        expected = ", ".join(f"{s} {count}" for s, count in reference.items())
        both = config_name("both", config.protocol)
        note = f"{_STEREO_TEXT[config.stereo]}; {whose}'s counts, {expected}, are for breakfast/{both}"
        lines = [f"{title}: {', '.join(parts)} ({note})"]
    if skipped:
        lines.append(f"warning: {_videos(skipped, 'unreadable ')} left out of breakfast/{config.name}")
    return lines


def find_breakfast_videos(manual_dir: str | os.PathLike, stereo: str = "both") -> list[VideoRecord]:
    """One record per Breakfast video file under ``manual_dir``, sorted by ``video_id``.

    ``stereo``: ``both`` keeps both stereo channels (two videos per stereo recording), ``ch0``
    only channel 0. ``video_id`` is ``<actor>/<camera>/<file name without .avi>``
    (``P03/stereo/P03_cereals_ch1``); a file whose id was already found (a second copy of the
    dataset under ``manual_dir``) is left out. ``split`` is left unset.
    """
    if stereo not in STEREO_CHOICES:
        raise RajaxError(f"stereo must be one of {', '.join(STEREO_CHOICES)}, not {stereo!r}")
    manual_dir = Path(manual_dir)
    found: dict[str, tuple[Path, str]] = {}  # video_id -> (path, activity)
    for path in sorted(manual_dir.rglob("*")):
        match = _FILE_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        actor, activity, channel = match.group(1).upper(), match.group(2).lower(), match.group(3)
        if actor not in ACTORS or activity not in LABELS:
            continue
        if stereo == "ch0" and channel is not None and int(channel) != 0:
            continue
        stem = f"{actor}_{activity}" + (f"_ch{channel}" if channel is not None else "")
        found.setdefault(f"{actor}/{path.parent.name}/{stem}", (path, activity))
    return [VideoRecord(video_id, str(path), LABELS.index(activity)) for video_id, (path, activity) in
            sorted(found.items())]


class Breakfast(EncodedVideoBuilder):
    """Breakfast Actions: 10 breakfast activities by 52 actors, 320x240 at 15 fps."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Encoded videos, actor-based splits, optional actor squares.",
        "1.1.0": "Stereo choice as config: both channels (default, the paper's 1989 videos) or ch0; "
        "video ids keep the file's _ch0/_ch1; per-split counts reported beside the protocol's.",
    }
    BUILDER_CONFIGS = CONFIGS
    DEFAULT_CONFIG_NAME = "both"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
    DESCRIPTION = "Breakfast Actions (Kuehne et al., CVPR 2014), stored encoded for rajax."
    HOMEPAGE = "https://serre-lab.clps.brown.edu/resource/breakfast-actions-dataset/"

    def extra_features(self) -> dict:
        return {"actor": tfds.features.Text(), "camera": tfds.features.Text()}

    def _split_generators(self, dl_manager):
        manual_dir = Path(dl_manager.manual_dir)
        self.info.features["label"].names = list(LABELS)
        records = find_breakfast_videos(manual_dir, stereo=self.builder_config.stereo)
        if not records:
            raise RajaxError(
                f"{manual_dir}: no Breakfast videos found (expected P03/cam01/P03_cereals.avi and so on)"
            )
        records = self.with_actors(records, manual_dir)
        actor_of = {r.video_id: r.video_id.split("/")[0] for r in records}
        return {
            split: self._generate_examples([r for r in records if actor_of[r.video_id] in actors], manual_dir)
            for split, actors in self.builder_config.splits.items()
        }

    def _generate_examples(self, records, manual_dir):
        def extra(record: VideoRecord) -> dict:
            actor, camera, _ = record.video_id.split("/")
            return {"actor": actor, "camera": camera}

        yield from video_examples(records, manual_dir, extra_fields=extra, skipped=self.skipped)

    def count_report(self) -> list[str]:
        """``count_report`` of this built dataset: its videos per split beside the protocol's."""
        counts = {split: self.info.splits[split].num_examples for split in self.builder_config.splits}
        return count_report(self.builder_config, counts, skipped=len(self.skipped))

    def _post_download_and_prepare_hook(self) -> None:
        # Run by TFDS after a build: say at once whether the data matches the protocol.
        for line in self.count_report():
            print(line)
            if line.startswith("warning:"):
                logger.warning("%s", line[len("warning: "):])
            else:
                logger.info("%s", line)
