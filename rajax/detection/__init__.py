"""Actor Focus: find the person in each video with YOLO and derive one actor square per video.

``detect_actors`` runs the detector in a separate Python process (``rajax.detection.worker``) so
that torch and torchvision never share an interpreter with TensorFlow; this module itself imports
neither and is safe to use from the data pipeline. ``load_actor_records`` reads the results.

Record format and coordinates: see ``rajax.actor_records`` and ``rajax.detection.geometry``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from rajax import errors
from rajax.actor_records import load_actor_records, lock_output, video_key
from rajax.detection.checkpoint import check_archive
from rajax.errors import RajaxError

__all__ = ["VIDEO_SUFFIXES", "detect_actors", "find_videos", "load_actor_records", "summarize", "video_key"]

# What a folder given to detect-actors is searched for (case-insensitive).
VIDEO_SUFFIXES = (".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")

# Where the rajax package can be imported from, for the worker process.
_IMPORT_ROOT = Path(__file__).resolve().parents[2]


def find_videos(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The video files named by ``paths``, folders searched recursively, duplicates removed.

    Files are kept as given (even missing or odd ones: the detection reports them as failures);
    a folder contributes its files with a video suffix, hidden ones excepted, in sorted order, each
    as the folder path joined with the file's relative path.
    """
    found: list[str] = []
    seen: set[str] = set()
    for given in paths:
        given = os.fspath(given)
        if os.path.isdir(given):
            candidates = []
            for root, dirs, files in os.walk(given):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                candidates.extend(
                    os.path.join(root, name)
                    for name in sorted(files)
                    if not name.startswith(".") and name.lower().endswith(VIDEO_SUFFIXES)
                )
            if not candidates:
                print(f"rajax detect-actors: no video files in {given}", file=sys.stderr)
        else:
            candidates = [given]
        for candidate in candidates:
            key = video_key(candidate)
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def summarize(records: list[dict]) -> dict[str, int]:
    """Counts over the records :func:`detect_actors` returns (by their ``"status"``)."""
    statuses = [record.get("status") for record in records]
    return {
        "videos": len(records),
        "done": statuses.count("done"),
        "skipped": statuses.count("skipped"),
        "failed": statuses.count("failed"),
        "fallbacks": sum(1 for r in records if r.get("fallback") and r.get("status") != "failed"),
    }


def detect_actors(
    videos: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    detector_weights: str | os.PathLike | None = None,
    every: int = 1,
    device: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Detects the actor of every video (files or folders) and appends its record to ``output``.

    Videos that already have a record in ``output`` are skipped, so an interrupted run resumes.
    A video that cannot be read is reported on stderr, gets a failure record and is skipped.
    Returns one record per video in input order, each with a ``"status"``: ``"done"`` (detected
    now), ``"skipped"`` (record already in ``output``) or ``"failed"`` (with an ``"error"``);
    the status is not stored in the file. The detector runs in a child process
    (``rajax.detection.worker``) on ``device`` (an Ultralytics device string such as ``"cpu"`` or
    ``"0"``; None: the first GPU when torch sees one). ``detector_weights`` None means the default
    ``yolo11n.pt``, downloaded by Ultralytics on first use into ``$XDG_CACHE_HOME/rajax``
    (``~/.cache/rajax``), where Ultralytics' settings file also goes; whatever the checkpoint,
    nothing in it can run code (:mod:`rajax.detection.checkpoint`).

    One run per ``output`` at a time: the file is locked for the whole run, and a second run on it
    raises RajaxError naming it. The detection process dies with the process that called this.
    Problems writing ``output`` (a folder, a read-only or full disk) raise RajaxError too.
    """
    every = int(every)
    if every < 1:
        raise RajaxError(f"--every must be at least 1, got {every}")
    paths = find_videos(videos)
    if not paths:
        raise RajaxError("no videos to process")
    if detector_weights is not None:
        if not Path(detector_weights).expanduser().is_file():
            raise errors.WeightsError(f"{detector_weights}: detector weights not found")
        # A plain pickle is refused here, before any process could unpickle it.
        check_archive(Path(detector_weights).expanduser())
    # Held until this call returns, and by the worker, which inherits it: a second run on the same
    # output refuses to start; a killed run releases it (its worker dies with it).
    created = not os.path.lexists(output)
    lock = lock_output(output)
    try:
        return _run_worker(paths, output, detector_weights, every, device, progress, lock.fileno())
    except BaseException:
        if created and os.path.isfile(output) and os.path.getsize(output) == 0:
            os.unlink(output)  # A run that stopped before its first record leaves no empty file.
        raise
    finally:
        lock.close()


def _run_worker(paths: list[str], output, detector_weights, every: int, device: str | None,
                progress: bool, lock_fd: int) -> list[dict]:
    """Runs ``rajax.detection.worker`` on one job and returns its records (or raises its error)."""
    try:
        scratch_dir = tempfile.TemporaryDirectory(prefix="rajax-detect-")
    except OSError as error:
        raise RajaxError(
            f"cannot create a scratch folder in {tempfile.gettempdir()}: {error.strerror or error}"
        ) from None
    with scratch_dir as scratch:
        job_path = Path(scratch) / "job.json"
        result_path = Path(scratch) / "result.json"
        job = {
            "videos": paths,
            "output": os.fspath(output),
            "weights": None if detector_weights is None else os.fspath(detector_weights),
            "every": every,
            "device": device,
            "progress": bool(progress),
            "result": str(result_path),
            "parent_pid": os.getpid(),
        }
        try:
            job_path.write_text(json.dumps(job))
        except OSError as error:
            raise RajaxError(f"{job_path}: cannot write the detection job: {error.strerror or error}") from None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_IMPORT_ROOT), env.get("PYTHONPATH")) if p)
        # The worker's stdout joins our stderr (file descriptor 2): stdout is for results alone.
        # It inherits the locked output file, so the lock outlives neither process.
        command = [sys.executable, "-m", "rajax.detection.worker", str(job_path)]
        process = subprocess.Popen(command, env=env, stdout=2, pass_fds=(lock_fd,))
        try:
            returncode = process.wait()
        except KeyboardInterrupt:
            # The child got the same Ctrl-C; let it finish its current line of output and exit.
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        if not result_path.is_file():
            if returncode < 0:  # Killed (out of memory, say): what it wrote stays, and a rerun resumes.
                raise RajaxError(
                    f"the detection process was killed by signal {-returncode} before finishing; the "
                    f"records written so far are in {output}, and running the same command again resumes"
                )
            raise RajaxError(
                f"the detection process failed (exit status {returncode}, see the messages above) before "
                f"finishing; the records written so far are in {output}"
            )
        result = json.loads(result_path.read_text())
    if "error" in result:
        error_class = getattr(errors, result["error"]["type"], RajaxError)
        raise error_class(result["error"]["message"])
    return result["records"]
