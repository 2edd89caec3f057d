"""The actor-record file written by ``rajax detect-actors``: JSON lines, one record per video.

Standard library only, at the top of the package: the detector (``rajax.detection``) writes these
files and the data side (``rajax.data.records``) reads them, and neither depends on the other.

Crash safety: a record is appended as one complete line (``write`` + ``flush`` + ``fsync``) only
after its video is fully processed, so an interruption loses at most the video in progress; a write
that fails (a full disk) is undone, leaving no partial line. A broken last line (cut short by a
crash anywhere, even inside its first characters, or NUL bytes left by a power loss) is ignored with
a note when reading and cut off, with a note, before the next append; any other unreadable line
means the file is not an actor-record file, and reading it is an error rather than a guess.

One run at a time: :func:`lock_output` takes an exclusive ``flock`` on the file for the whole run,
so a second run on the same file refuses to start instead of appending duplicate records; the
kernel drops the lock when its holder dies, however it dies.

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

import errno
import json
import os
import sys
from pathlib import Path
from typing import BinaryIO

from rajax.errors import RajaxError

try:
    import fcntl
except ImportError:  # Not on Windows: runs there are not locked.
    fcntl = None

# Every record is written with "path" as its first key; a cut-off last line is recognised by this
# start, so that a file that is not ours (a video given as --output by mistake) is never truncated.
_RECORD_START = b'{"path": '


def video_key(path: str | os.PathLike) -> str:
    """The key a video's record is stored and looked up under: its resolved absolute path."""
    return os.path.realpath(os.fspath(path))


def _is_broken_last_line(line: bytes) -> bool:
    """Whether an unparsable last line is the remains of one of our records (safe to drop).

    Our records start with ``{"path": `` (:data:`_RECORD_START`) and never hold a NUL byte (JSON
    escapes it), so a last line that is a start of that prefix, or starts with it, or is NUL bytes
    after any of these (a power loss), is a record cut short. A file that is not ours (a video
    given as --output by mistake) does not look like that and is never truncated.
    """
    core = line.rstrip(b"\0")
    return not core.strip() or _RECORD_START.startswith(core) or core.startswith(_RECORD_START)


def _parse_lines(path: Path, data: bytes) -> tuple[list[dict], int]:
    """Records in ``data`` and the byte length of its intact part (a broken last line excluded)."""
    records: list[dict] = []
    lines = data.split(b"\n")
    intact = 0
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        if not line.strip():
            intact += len(line) + (0 if is_last else 1)
            continue
        if is_last:
            line = line.rstrip(b"\0")  # A power loss can leave zeros after a whole record.
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "path" not in record:
                raise ValueError("not a record")
        except ValueError:
            if is_last and _is_broken_last_line(line):
                break  # Cut short by an interruption: that video is simply not done yet.
            raise RajaxError(
                f"{path}: line {number} is not an actor record (is this a detect-actors output file?)"
            ) from None
        records.append(record)
        intact += len(line) + (0 if is_last else 1)
    return records, intact


def _broken_tail_note(path: Path, tail: bytes, action: str) -> str:
    """What is said about a broken last line that is ignored or dropped."""
    note = (f"rajax: note: {path}: {action} a broken last line ({len(tail)} bytes, left by an interrupted "
            f"run or a power loss)")
    if tail.strip(b"\0 \t\r\n"):  # Part of a record, not just zeros after a whole one.
        note += "; its video has no record and is detected again by the next run"
    return note


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every intact record in the file, in file order (detections and failures).

    A broken last line is left out, with a note on stderr.
    """
    path = Path(path)
    if not path.is_file():
        raise RajaxError(f"{path}: no such actor-record file")
    data = path.read_bytes()
    records, intact = _parse_lines(path, data)
    if intact < len(data):
        print(_broken_tail_note(path, data[intact:], "ignoring"), file=sys.stderr)
    return records


def _write_error(path: Path, error: OSError) -> RajaxError:
    """The one-line message for a failed write to the record file (full disk, read-only disk ...)."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return RajaxError(
            f"{path}: cannot write the actor records: {reason}; the records written before are kept, "
            f"and running the same command again once there is space resumes"
        )
    return RajaxError(f"{path}: cannot write the actor records: {reason}")


def _not_a_folder(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a folder, if any."""
    for ancestor in path.parents:
        if ancestor.exists() or ancestor.is_symlink():
            return None if ancestor.is_dir() else ancestor
    return None


def lock_output(path: str | os.PathLike) -> BinaryIO:
    """Opens ``path`` (created empty, with its folder, if missing) and locks it for one run.

    Returns the open file: the lock lasts until every process holding that open file (the caller
    and the detection process it passes it to) has closed it or died. Raises RajaxError, naming
    the file, when another run holds it, or when it cannot be a record file here: a folder, below
    a file, on a read-only or full disk.
    """
    path = Path(path)
    if path.is_dir():
        raise RajaxError(f"{path}: is a directory; --output takes a file name")
    if path.exists() and not path.is_file():
        raise RajaxError(f"{path}: not a regular file; --output takes a file name")
    blocker = _not_a_folder(path)
    if blocker is not None:
        raise RajaxError(f"{path}: cannot create the actor-record file: {blocker} is not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RajaxError(
            f"{path}: cannot create its folder {path.parent}: {error.strerror or error}"
        ) from None
    try:
        handle = open(path, "ab")  # noqa: SIM115 - the caller keeps it open for the run. Never truncates.
    except OSError as error:
        raise _write_error(path, error) from None
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(handle.fileno())
        handle.close()
        by = f"process {holder}" if holder else "another process"
        raise RajaxError(
            f"{path}: in use by another detect-actors run ({by}); wait for it to finish, or give "
            f"another --output"
        ) from None
    except OSError:
        pass  # A file system without flock (some network mounts): run unlocked, as before.
    return handle


def _lock_holder(fd: int) -> int | None:
    """The pid holding a flock on the open file ``fd``, from /proc/locks (Linux), or None."""
    try:
        stat = os.fstat(fd)
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    by_inode = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or not fields[4].isdigit():
            continue  # Not a flock, or a waiter ("->").
        if fields[5] == device:
            return int(fields[4]) or None
        if fields[5].rsplit(":", 1)[-1] == str(stat.st_ino):
            by_inode.append(int(fields[4]))
    return by_inode[0] if len(by_inode) == 1 and by_inode[0] > 0 else None


def prepare_output(path: str | os.PathLike) -> list[dict]:
    """Readies ``path`` for appending and returns the records already in it.

    Creates the parent folder if needed, and cuts off a broken last line left by an interrupted
    run or a power loss (saying so on stderr), or completes a last record missing only its
    newline, so appended records start on a line of their own.
    """
    path = Path(path)
    if path.is_dir():
        raise RajaxError(f"{path}: is a directory; --output takes a file name")
    try:
        if not path.exists():
            blocker = _not_a_folder(path)
            if blocker is not None:
                raise RajaxError(f"{path}: cannot create the actor-record file: {blocker} is not a folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            return []
        data = path.read_bytes()
        records, intact = _parse_lines(path, data)
        if intact < len(data):
            with open(path, "r+b") as handle:
                handle.truncate(intact)
                handle.flush()
                os.fsync(handle.fileno())
            print(_broken_tail_note(path, data[intact:], "dropped"), file=sys.stderr)
            data = data[:intact]
        if data and not data.endswith(b"\n"):
            # The whole last record made it but not its newline.
            _append_bytes(path, b"\n")
    except OSError as error:
        raise _write_error(path, error) from None
    return records


def _append_bytes(path: Path, data: bytes) -> None:
    """Appends ``data`` durably, or leaves the file as it was and raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:  # A short write on a filling disk: the next write raises ENOSPC.
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            try:  # No partial line left behind.
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def append_record(path: str | os.PathLike, record: dict) -> None:
    """Appends ``record`` as one line and makes it durable before returning."""
    if next(iter(record), None) != "path":
        raise ValueError("an actor record must have 'path' as its first key")
    line = json.dumps(record, separators=(", ", ": "), allow_nan=False) + "\n"
    # One write call of the whole line on an O_APPEND descriptor: never interleaved or split by us;
    # a write that fails is undone. OSError (a full or read-only disk) becomes a one-line RajaxError.
    try:
        _append_bytes(Path(path), line.encode("utf-8"))
    except OSError as error:
        raise _write_error(Path(path), error) from None


def record_key(record: dict) -> str:
    return record.get("resolved_path") or video_key(record["path"])


def load_actor_records(path: str | os.PathLike) -> dict[str, dict]:
    """The detection records of a ``detect-actors`` output file, keyed by :func:`video_key`.

    Look a video up with ``records[video_key(video_path)]``. Failure records are left out; when a
    video has several detection records the last one in the file wins.
    """
    return {record_key(record): record for record in read_records(path) if "error" not in record}
