"""The actor-record file written by ``rajax detect-actors``: JSON lines, one record per video.

Crash safety: a record is appended as one complete line (``write`` + ``flush`` + ``fsync``) only
after its video is fully processed, so an interruption loses at most the video in progress. A last
line cut short by a crash is ignored when reading and cut off before the next append; any other
unreadable line means the file is not an actor-record file, and reading it is an error rather than
a guess.

Keys: records are matched to videos by :func:`video_key`, the absolute path with symbolic links
resolved (``os.path.realpath``), stored in each record as ``"resolved_path"`` next to ``"path"`` as
it was given. A video is thus found again whatever working directory or relative spelling is used,
as long as it stays where it was when detected.

Two kinds of record share the file: a detection (no ``"error"`` key) and a failure (``"path"``,
``"resolved_path"``, ``"error"``). Failures are there for the record; a rerun tries those videos
again. When a video has several detections (two runs appending to the same file at once, say) the
last one wins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rajax.errors import RajaxError

# Every record is written with "path" as its first key; a cut-off last line is recognised by this
# start, so that a file that is not ours (a video given as --output by mistake) is never truncated.
_RECORD_START = b'{"path": '


def video_key(path: str | os.PathLike) -> str:
    """The key a video's record is stored and looked up under: its resolved absolute path."""
    return os.path.realpath(os.fspath(path))


def _parse_lines(path: Path, data: bytes) -> tuple[list[dict], int]:
    """Records in ``data`` and the byte length of its intact part (a cut-off last line excluded)."""
    records: list[dict] = []
    lines = data.split(b"\n")
    intact = 0
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        if not line.strip():
            intact += len(line) + (0 if is_last else 1)
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "path" not in record:
                raise ValueError("not a record")
        except ValueError:
            if is_last and line.startswith(_RECORD_START):
                break  # Cut short by an interruption: that video is simply not done yet.
            raise RajaxError(
                f"{path}: line {number} is not an actor record (is this a detect-actors output file?)"
            ) from None
        records.append(record)
        intact += len(line) + (0 if is_last else 1)
    return records, intact


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every intact record in the file, in file order (detections and failures)."""
    path = Path(path)
    if not path.is_file():
        raise RajaxError(f"{path}: no such actor-record file")
    return _parse_lines(path, path.read_bytes())[0]


def prepare_output(path: str | os.PathLike) -> list[dict]:
    """Readies ``path`` for appending and returns the records already in it.

    Creates the parent folder if needed, and cuts off a last line left incomplete by an interrupted
    run (or completes it with its newline when only that is missing) so appended records start on
    a line of their own.
    """
    path = Path(path)
    if path.is_dir():
        raise RajaxError(f"{path}: is a directory; --output takes a file name")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return []
    data = path.read_bytes()
    records, intact = _parse_lines(path, data)
    if intact < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(intact)
            handle.flush()
            os.fsync(handle.fileno())
    elif data and not data.endswith(b"\n"):
        # The whole last record made it but not its newline.
        with open(path, "ab") as handle:
            handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    return records


def append_record(path: str | os.PathLike, record: dict) -> None:
    """Appends ``record`` as one line and makes it durable before returning."""
    if next(iter(record), None) != "path":
        raise ValueError("an actor record must have 'path' as its first key")
    line = json.dumps(record, separators=(", ", ": "), allow_nan=False) + "\n"
    # One write call of the whole line on an O_APPEND descriptor: never interleaved or split by us.
    with open(path, "ab") as handle:
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def done_keys(records: list[dict]) -> set[str]:
    """Keys of the videos that have a detection record (failures do not count as done)."""
    return {record_key(record) for record in records if "error" not in record}


def record_key(record: dict) -> str:
    return record.get("resolved_path") or video_key(record["path"])


def load_actor_records(path: str | os.PathLike) -> dict[str, dict]:
    """The detection records of a ``detect-actors`` output file, keyed by :func:`video_key`.

    Look a video up with ``records[video_key(video_path)]``. Failure records are left out; when a
    video has several detection records the last one in the file wins.
    """
    return {record_key(record): record for record in read_records(path) if "error" not in record}
