"""Video records: which videos make up a dataset, with their labels and actor squares.

A :class:`VideoRecord` is all the pipeline needs to know about a video before decoding it. Build a
list of them from a folder with one subfolder per class (:func:`records_from_folder`), from a CSV of
``path,label[,split[,group]]`` rows (:func:`records_from_csv`), and attach the actor squares found by
``rajax detect-actors`` with :func:`attach_actor_squares`. TFDS datasets skip this step: their
examples already carry the same fields (see ``rajax.data.sources.tfds_videos``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rajax.errors import RajaxError

VIDEO_SUFFIXES = (".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    ``actor_square`` is ``(x0, y0, side)`` in central-square pixels (``None``: no detection; the
    actor region is then the full frame). ``num_frames`` is ``None`` when not known yet (the
    pipeline probes the file). ``split`` is free text ("train", "validation", "test") or ``None``.
    ``group`` names what the video shares with others (the person, the recording, the longer video
    it was cut from): videos of one group must not be split between training and test
    (``rajax.data.splits``); ``None`` is a group of its own.
    """

    video_id: str
    path: str
    label: int
    actor_square: tuple[int, int, int] | None = None
    num_frames: int | None = None
    split: str | None = None
    group: str | None = None


def _video_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in VIDEO_SUFFIXES
    )


def records_from_folder(
    root: str | os.PathLike, class_names: Sequence[str] | None = None, split: str | None = None
) -> tuple[list[VideoRecord], list[str]]:
    """Records for ``root/<class>/**/<video>``; labels index the sorted class folder names.

    ``class_names`` fixes the label order (and which folders count); folders not in it are an error.
    ``video_id`` is the path relative to ``root`` without its suffix, e.g. ``"dancing/clip_01"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise RajaxError(f"{root}: no such folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is None:
        class_names = folders
    else:
        unknown = sorted(set(folders) - set(class_names))
        if unknown:
            raise RajaxError(f"{root}: class folders {unknown} are not among the class names given")
    if not class_names:
        raise RajaxError(f"{root}: no class subfolders (expected one folder of videos per class)")
    records = []
    for label, name in enumerate(class_names):
        for path in _video_files(root / name) if (root / name).is_dir() else []:
            video_id = path.relative_to(root).with_suffix("").as_posix()
            records.append(VideoRecord(video_id, str(path), label, split=split))
    if not records:
        raise RajaxError(f"{root}: no video files in the class folders")
    return records, list(class_names)


CSV_COLUMNS = ("path", "label", "split", "group")


def records_from_csv(
    csv_file: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    *,
    splits: Sequence[str] | None = None,
    default_split: str | None = None,
    unsplit_ok: bool = False,
) -> tuple[list[VideoRecord], list[str]]:
    """Records from a CSV of ``path,label[,split[,group]]`` rows.

    A header row is optional; with one (its first cell ``path``), the columns are those it names,
    in any order (``path`` and ``label`` required; ``split`` and ``group`` optional; any other name
    is an error). Relative paths are relative to the CSV's folder. Labels are class names; their
    index is the position in ``class_names`` (default: the sorted distinct labels). ``video_id`` is
    the path without its suffix; ``group`` is free text (empty: the video is a group of its own).

    Nothing is dropped or merged silently; each of these is an error naming the file and its
    line(s): a path listed twice (with the same or another label or split: one video must not be
    trained on and tested), two paths with the same video id (``x.mp4`` and ``x.avi``), a split not
    in ``splits`` (when given), and an empty split, unless ``default_split`` says where such rows go
    or ``unsplit_ok`` keeps them without one (their split is drawn later: ``rajax.data.splits``).
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise RajaxError(f"{csv_file}: no such CSV file")
    columns, rows = _read_csv_rows(csv_file)
    parsed = []
    seen_paths: dict[str, int] = {}
    seen_ids: dict[str, tuple[int, str]] = {}
    for line, row in rows:
        if columns is None and len(row) not in (2, 3, 4):
            raise RajaxError(f"{csv_file}: line {line} has {len(row)} columns; expected path,label[,split[,group]]")
        if columns is not None and len(row) != len(columns):
            raise RajaxError(f"{csv_file}: line {line} has {len(row)} columns; the header names {len(columns)} "
                             f"({','.join(columns)})")
        cells = dict(zip(columns or CSV_COLUMNS, (cell.strip() for cell in row)))
        path, label = cells["path"], cells["label"]
        split = cells.get("split") or default_split
        group = cells.get("group") or None
        if not path or not label:
            raise RajaxError(f"{csv_file}: line {line} has an empty path or label")
        if split is None and splits is not None and not unsplit_ok:
            raise RajaxError(f"{csv_file}: line {line} ({path}) has no split; give one of {', '.join(splits)}")
        if split is not None and splits is not None and split not in splits:
            raise RajaxError(f"{csv_file}: line {line} ({path}) has split {split!r}, not one of {', '.join(splits)}")
        if path in seen_paths:
            raise RajaxError(f"{csv_file}: line {line} lists {path} again (first on line {seen_paths[path]}); "
                             "each video must appear once")
        seen_paths[path] = line
        video_id = Path(path).with_suffix("").as_posix()
        if video_id in seen_ids:
            other_line, other_path = seen_ids[video_id]
            raise RajaxError(f"{csv_file}: line {line} ({path}) and line {other_line} ({other_path}) give the "
                             f"same video id {video_id!r}; rename one of the files")
        seen_ids[video_id] = (line, path)
        parsed.append((line, path, video_id, label, split, group))
    if not parsed:
        raise RajaxError(f"{csv_file}: no rows")
    if class_names is None:
        class_names = sorted({label for _, _, _, label, _, _ in parsed})
    index = {name: i for i, name in enumerate(class_names)}
    records = []
    for line, path, video_id, label, split, group in parsed:
        if label not in index:
            raise RajaxError(f"{csv_file}: line {line}: label {label!r} of {path} is not among the class names "
                             f"({', '.join(class_names)})")
        full = Path(path) if Path(path).is_absolute() else csv_file.parent / path
        records.append(VideoRecord(video_id, str(full), index[label], split=split, group=group))
    return records, list(class_names)


def _read_csv_rows(csv_file: Path) -> tuple[tuple[str, ...] | None, list[tuple[int, list[str]]]]:
    """The header's column names (``None`` without a header) and ``(line number, cells)`` of every
    other non-blank row."""
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    except UnicodeDecodeError as error:
        raise RajaxError(f"{csv_file}: not UTF-8 text (byte {error.start}: {error.object[error.start:error.start + 1]!r}); "
                         "save the CSV as UTF-8") from None
    except csv.Error as error:
        raise RajaxError(f"{csv_file}: not a readable CSV ({error})") from None
    if not rows or rows[0][1][0].strip().lower() != "path":
        return None, rows
    columns = tuple(cell.strip().lower() for cell in rows[0][1])
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if unknown or len(set(columns)) != len(columns) or "label" not in columns:
        raise RajaxError(f"{csv_file}: header {','.join(columns)}: the columns are path and label, then "
                         "optionally split and group, each named once")
    return columns, rows[1:]


def write_records_csv(records: Iterable[VideoRecord], class_names: Sequence[str], csv_file: str | os.PathLike) -> None:
    """``records`` as a CSV ``records_from_csv`` reads back (absolute paths, with a header)."""
    import io

    from rajax.files import atomic_write_text

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow([os.path.abspath(record.path), class_names[record.label], record.split or "",
                         record.group or ""])
    atomic_write_text(csv_file, text.getvalue())


def _tail(path: str, parts: int) -> str:
    return "/".join(Path(os.path.realpath(path)).parts[-parts:])


def actor_square_from_record(record: Mapping) -> tuple[int, int, int] | None:
    """The actor square of a ``detect-actors`` record, or None when it fell back to the full frame."""
    square = record.get("actor_square")
    if record.get("fallback") or square is None:
        return None
    return tuple(int(v) for v in square)


def attach_actor_squares(
    records: Iterable[VideoRecord],
    actors: str | os.PathLike | Mapping[str, Mapping],
    tail_parts: int = 3,
) -> tuple[list[VideoRecord], int]:
    """Copies of ``records`` with the actor squares of a ``detect-actors`` output file.

    A record is matched by its resolved path; failing that (the dataset moved since detection), by
    the last ``tail_parts`` components of the path (``P03/cam01/P03_cereals.avi``) when exactly one
    detection has them. Returns the records and how many were matched; unmatched records keep
    ``actor_square=None`` (the actor region is then the full frame).
    """
    from rajax.actor_records import load_actor_records, video_key

    by_key = dict(actors) if isinstance(actors, Mapping) else load_actor_records(actors)
    by_key = {video_key(key): value for key, value in by_key.items()}
    by_tail: dict[str, list[Mapping]] = {}
    for key, value in by_key.items():
        by_tail.setdefault(_tail(key, tail_parts), []).append(value)
    matched = 0
    out = []
    for record in records:
        found = by_key.get(video_key(record.path))
        if found is None:
            candidates = by_tail.get(_tail(record.path, tail_parts), [])
            found = candidates[0] if len(candidates) == 1 else None
        if found is not None:
            matched += 1
            record = dataclasses.replace(record, actor_square=actor_square_from_record(found))
        out.append(record)
    return out, matched


def split_records(records: Iterable[VideoRecord], split: str) -> list[VideoRecord]:
    """The records of one split."""
    return [record for record in records if record.split == split]
