"""The detection process: ``python -m rajax.detection.worker JOB.json``.

:func:`rajax.detection.detect_actors` starts this module in a process of its own so that torch,
torchvision and ultralytics never share an interpreter with TensorFlow (torchvision crashes the
interpreter when TensorFlow was imported before it). Here they are imported first, before
anything that could import TensorFlow (the GIF decoder of ``rajax.data.video`` does, lazily).

The job file is JSON: ``videos`` (paths), ``output`` (the record file), ``weights`` (a path or
null for the default detector), ``every``, ``device`` (null: a GPU if torch sees one),
``progress`` (bool) and ``result``, a path where the worker writes, at the end, either
``{"records": [...]}`` (one per video, in order, each with its ``"status"``) or
``{"error": {"type": "WeightsError", "message": "..."}}`` for a problem that stops the whole run
(a full or read-only disk included). Records are appended to ``output`` one video at a time, so an
interrupted run loses nothing done.

``parent_pid`` in the job is the process that started this one: the worker dies with it (Linux
``PR_SET_PDEATHSIG``, and a watch on the parent pid everywhere), so killing ``rajax detect-actors``
never leaves a detection running on its own. The parent holds the lock on ``output``
(:func:`rajax.actor_records.lock_output`) and passes the locked file on to this process, so the
lock lasts exactly as long as either of them lives.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

# Frames sent to the detector at once: big enough to keep a GPU busy, small enough for any CPU.
BATCH_FRAMES = 16


# How often the watch on the parent looks (where PR_SET_PDEATHSIG is not available, the delay
# before an orphaned worker stops).
PARENT_POLL_SECONDS = 1.0


def _die_with_parent(parent_pid: int | None) -> None:
    """Ends this process as soon as the process that started it is gone, however it ended.

    On Linux the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``); that only
    covers deaths after the call, so a parent already gone is checked right after it. A daemon
    thread also watches the parent pid, for systems without prctl.
    """
    if parent_pid is None:
        return
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # The watch below still works.
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent_pid:  # Re-parented: the parent is gone.
                os._exit(1)

    threading.Thread(target=watch, name="rajax-parent-watch", daemon=True).start()


def _import_detector_libraries() -> None:
    if "tensorflow" in sys.modules:
        # Importing torchvision now would crash the interpreter without a word: fail clearly instead.
        raise RuntimeError("TensorFlow was imported before torch in the detection process")
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    import ultralytics  # noqa: F401


def detect_video(detector, path: str, every: int, detector_name: str, frames_bar=None) -> dict:
    """The actor record of one video (raises VideoError when it cannot be read)."""
    from rajax.actor_records import video_key
    from rajax.data import video
    from rajax.data.regions import central_square_box
    from rajax.detection import geometry
    from rajax.errors import VideoError

    info = video.probe(path)
    if frames_bar is not None:
        frames_bar.reset(total=math.ceil(info.num_frames / every))
        frames_bar.set_description(Path(path).name[-30:])
    boxes: list[list[float]] = []
    confidences: list[float] = []
    examined = 0
    height = width = None
    batch: list = []

    def run_batch():
        nonlocal examined
        for found in detector.detect(batch):
            if found is not None:
                boxes.append(found[0])
                confidences.append(found[1])
        examined += len(batch)
        if frames_bar is not None:
            frames_bar.update(len(batch))
        batch.clear()

    for _, frame in video.iter_frames(path, every=every):
        if height is None:
            height, width = int(frame.shape[0]), int(frame.shape[1])
        batch.append(frame)
        if len(batch) == BATCH_FRAMES:
            run_batch()
    if batch:
        run_batch()
    if examined == 0:
        raise VideoError(f"{path}: no frames decoded")

    box = geometry.mean_box(boxes)
    square = geometry.actor_square(box, height, width)
    return {
        "path": str(path),
        "resolved_path": video_key(path),
        "num_frames": info.num_frames,
        "height": height,
        "width": width,
        "every": every,
        "frames_examined": examined,
        "frames_with_person": len(boxes),
        "mean_box_xyxy": None if box is None else [round(v, 2) for v in box],
        "mean_confidence": None if not confidences else round(sum(confidences) / len(confidences), 4),
        "actor_square_xyxy": geometry.actor_square_xyxy(square, height, width),
        "actor_square": square,
        "square_side": central_square_box(height, width)[2],
        "fallback": box is None,
        "detector": detector_name,
    }


def run_job(job: dict) -> list[dict]:
    from rajax.actor_records import append_record, prepare_output, record_key, video_key
    from rajax.detection import yolo

    weights = job.get("weights")
    output = job["output"]
    every = int(job["every"])
    existing = prepare_output(output)
    done = {record_key(r): r for r in existing if "error" not in r}  # Failures are tried again.
    videos = list(job["videos"])
    detector_name = str(weights) if weights is not None else yolo.DEFAULT_WEIGHTS
    detector = None
    if any(video_key(path) not in done for path in videos):  # A finished rerun loads nothing.
        # Offline unless the default detector must be fetched: no connectivity checks, no analytics.
        yolo.configure_environment(offline=not yolo.needs_download(weights))
        _import_detector_libraries()  # Before any decoding: the GIF decoder imports TensorFlow.
        detector = yolo.PersonDetector(yolo.resolve_weights(weights), job.get("device"))

    from tqdm import tqdm

    from rajax.progress import Progress, is_terminal

    records: list[dict] = []
    enabled = job.get("progress", True)
    # A second bar for the frames of the current video on a terminal; a log gets the video lines only.
    frames_bar = tqdm(total=0, unit="frame", position=1, leave=False,
                      disable=not (enabled and is_terminal(sys.stderr)))
    with Progress(len(videos), "detect actors", "video", enabled=enabled) as videos_bar, frames_bar:
        for path in videos:
            key = video_key(path)
            if key in done:
                records.append({**done[key], "status": "skipped"})
                videos_bar.update(1)
                continue
            try:
                record = detect_video(detector, path, every, detector_name, frames_bar)
            except Exception as error:  # noqa: BLE001 - one bad video must not stop the run
                message = str(error)
                if str(path) not in message:  # Not one of our VideoErrors: say which file and what kind.
                    message = f"{path}: {type(error).__name__}: {message}"
                failure = {"path": str(path), "resolved_path": key, "error": message}
                append_record(output, failure)
                records.append({**failure, "status": "failed"})
                videos_bar.write(f"rajax detect-actors: skipping {message}")
            else:
                append_record(output, record)
                done[key] = record
                records.append({**record, "status": "done"})
            videos_bar.update(1)
    different = [r for r in records if r["status"] == "skipped"
                 and (r.get("every") != every or r.get("detector") != detector_name)]
    if different:
        print(f"rajax detect-actors: note: {len(different)} video(s) already in {output} were detected "
              f"with other settings (--every or --detector-weights) and were kept; use a new --output "
              f"to redo them", file=sys.stderr)
    return records


def main(argv: list[str] | None = None) -> int:
    from rajax.errors import RajaxError

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m rajax.detection.worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    _die_with_parent(job.get("parent_pid"))
    result_path = Path(job["result"])
    try:
        records = run_job(job)
    except RajaxError as error:
        result = {"error": {"type": type(error).__name__, "message": str(error)}}
        result_path.write_text(json.dumps(result))
        return 2
    except OSError as error:  # A disk problem outside the record file (those are RajaxErrors already).
        where = f"{error.filename}: " if error.filename else ""
        result = {"error": {"type": "RajaxError", "message": f"{where}{error.strerror or error}"}}
        result_path.write_text(json.dumps(result))
        return 2
    except KeyboardInterrupt:
        return 130
    result_path.write_text(json.dumps({"records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
