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

Each (actor, camera, activity) recording is one example. The stereo camera's two channels are two
nearly identical views of one recording, so only one is kept: channel 0 (``_ch0``), or channel 1
where channel 0 is missing; counting both would put the same recording twice in one split. The
activity label comes from the file name (``P03_cereals.avi`` -> ``cereals``); the 10 activities
are ``LABELS``. Files that do not follow this naming (``*.labels``, other actors) are ignored.

Splits, by actor (P03..P54, 52 actors), as builder configs:

- ``paper`` (default; Ballan et al. 2021): the first 44 actors for training, the last 8 (P47..P54)
  for testing, 5 training actors held out for validation. The paper does not name those five;
  rajax holds out the last five of the 44, P42..P46. Splits ``train`` (P03..P41), ``validation``
  (P42..P46), ``test`` (P47..P54). The paper counts 1322 / 256 / 411 videos.
- ``s1``..``s4``: the dataset's standard splits, each testing on 13 actors (s1: P03..P15,
  s2: P16..P28, s3: P29..P41, s4: P42..P54) and training on the rest. Splits ``train``, ``test``.

Actor squares from ``rajax detect-actors`` (run on the unpacked videos) are attached when
``manual_dir/actors.jsonl`` exists or ``actors_file=`` names the file. Storage: every frame's
240x240 central square as JPEG; see ``rajax.datasets.video_folder`` for the fields and why.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import tensorflow_datasets as tfds

from rajax.data.records import VideoRecord
from rajax.datasets.video_folder import EncodedVideoBuilder, video_examples
from rajax.errors import RajaxError

LABELS = ("cereals", "coffee", "friedegg", "juice", "milk", "pancake", "salat", "sandwich", "scrambledegg", "tea")
ACTORS = tuple(f"P{n:02d}" for n in range(3, 55))  # P03..P54
STEREO_CHANNEL = 0

# "P03_cereals.avi" or "P03_cereals_ch0.avi"
_FILE_NAME = re.compile(r"^(P\d{2})_([a-z]+)(?:_ch(\d))?\.avi$", re.IGNORECASE)


def _actor_range(first: int, last: int) -> tuple[str, ...]:
    return tuple(f"P{n:02d}" for n in range(first, last + 1))


@dataclasses.dataclass
class BreakfastConfig(tfds.core.BuilderConfig):
    """Actor-based splits: split name -> actors in it."""

    splits: dict = dataclasses.field(default_factory=dict)


PAPER_SPLITS = {
    "train": _actor_range(3, 41),
    "validation": _actor_range(42, 46),
    "test": _actor_range(47, 54),
}


def _standard_split(test_first: int, test_last: int) -> dict:
    test = _actor_range(test_first, test_last)
    return {"train": tuple(a for a in ACTORS if a not in test), "test": test}


CONFIGS = [
    BreakfastConfig(
        name="paper",
        description="First 44 actors train (P42..P46 of them held out for validation), P47..P54 test.",
        splits=PAPER_SPLITS,
    ),
    BreakfastConfig(name="s1", description="Standard split 1: test on P03..P15.", splits=_standard_split(3, 15)),
    BreakfastConfig(name="s2", description="Standard split 2: test on P16..P28.", splits=_standard_split(16, 28)),
    BreakfastConfig(name="s3", description="Standard split 3: test on P29..P41.", splits=_standard_split(29, 41)),
    BreakfastConfig(name="s4", description="Standard split 4: test on P42..P54.", splits=_standard_split(42, 54)),
]


def find_breakfast_videos(manual_dir: str | os.PathLike) -> list[VideoRecord]:
    """One record per (actor, camera, activity) under ``manual_dir``, stereo channel chosen.

    ``video_id`` is ``<actor>/<camera>/<actor>_<activity>`` (``P03/stereo/P03_cereals`` for the
    stereo camera, whichever channel was kept); ``split`` is left unset.
    """
    manual_dir = Path(manual_dir)
    found: dict[str, tuple[int, Path, str]] = {}  # video_id -> (channel rank, path, activity)
    for path in sorted(manual_dir.rglob("*")):
        match = _FILE_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        actor, activity, channel = match.group(1).upper(), match.group(2).lower(), match.group(3)
        if actor not in ACTORS or activity not in LABELS:
            continue
        camera = path.parent.name
        video_id = f"{actor}/{camera}/{actor}_{activity}"
        # Channel 0 preferred (rank 0), then the other channel; a plain file has no channel.
        rank = 0 if channel is None or int(channel) == STEREO_CHANNEL else 1
        if video_id not in found or rank < found[video_id][0]:
            found[video_id] = (rank, path, activity)
    return [
        VideoRecord(video_id, str(path), LABELS.index(activity))
        for video_id, (_, path, activity) in sorted(found.items())
    ]


class Breakfast(EncodedVideoBuilder):
    """Breakfast Actions: 10 breakfast activities by 52 actors, 320x240 at 15 fps."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Encoded videos, actor-based splits, optional actor squares."}
    BUILDER_CONFIGS = CONFIGS
    DEFAULT_CONFIG_NAME = "paper"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
    DESCRIPTION = "Breakfast Actions (Kuehne et al., CVPR 2014), stored encoded for rajax."
    HOMEPAGE = "https://serre-lab.clps.brown.edu/resource/breakfast-actions-dataset/"

    def extra_features(self) -> dict:
        return {"actor": tfds.features.Text(), "camera": tfds.features.Text()}

    def _split_generators(self, dl_manager):
        manual_dir = Path(dl_manager.manual_dir)
        self.info.features["label"].names = list(LABELS)
        records = find_breakfast_videos(manual_dir)
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
