"""``rajax detect-actors`` under hostile or failing conditions, with real files and processes.

- crafted detector checkpoints whose unpickling would create a file create nothing, and are
  refused with one line naming the file; weights that are not a YOLO detector get one line too;
- a run killed with a real SIGKILL takes its detection process along, and while a run holds an
  output file a second run on it is refused;
- output paths that cannot be a record file (a folder, below a file) and real read-only and full
  file systems (small tmpfs mounts; skipped where mounting is not permitted) give one-line errors,
  with the "running again resumes" hint only where it is true, and no partial record line.
"""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rajax import actor_records, cli

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ERROR = "rajax detect-actors: error: "


@pytest.fixture(scope="module")
def yolo_cache(tmp_path_factory) -> Path:
    """XDG_CACHE_HOME for the detection process (Ultralytics writes its settings file there)."""
    return tmp_path_factory.mktemp("yolo-cache")


@pytest.fixture
def short_clip(input_path) -> Path:
    return input_path("data/odd_videos/video_0.mov")  # 3 frames: one detector call with --every 50


def run_cli(argv: list[str], capfd) -> tuple[int, str]:
    status = cli.main(argv)
    out, err = capfd.readouterr()
    return status, out + err


def one_error_line(text: str) -> str:
    """The command's output must be exactly one error line (no traceback, nothing else)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, text
    assert len(lines) == 1 and lines[0].startswith(ERROR), text
    return lines[0]


class Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_checkpoints_cannot_run_code(tmp_path, short_clip, yolo_cache, monkeypatch, capfd):
    monkeypatch.setenv("XDG_CACHE_HOME", str(yolo_cache))
    markers = tmp_path / "markers"
    markers.mkdir()
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    # A torch.save zip archive: passes the format check, refused by the scan of its globals.
    torch.save({"model": Payload(markers / "zip")}, crafted / "zip.pt")
    # A plain pickle named .pt: torch.load unpickled it before saying "Invalid magic number".
    (crafted / "pickle.pt").write_bytes(pickle.dumps({"model": Payload(markers / "pickle")}))
    # torch's legacy (non-zip) format, and a plain pickle with a real zip checkpoint appended
    # (zipfile finds the archive at the end; torch.load reads the pickle at the start).
    torch.save({"model": Payload(markers / "legacy")}, crafted / "legacy.pt", _use_new_zipfile_serialization=False)
    (crafted / "polyglot.pt").write_bytes(pickle.dumps(Payload(markers / "polyglot"))
                                          + (crafted / "zip.pt").read_bytes())
    lines = {}
    for name in ["zip", "pickle", "legacy", "polyglot"]:
        weights = crafted / f"{name}.pt"
        output = tmp_path / f"{name}.jsonl"
        status, text = run_cli(["detect-actors", str(short_clip), "--output", str(output),
                                "--detector-weights", str(weights), "--every", "50"], capfd)
        assert list(markers.iterdir()) == [], f"{name}.pt ran its payload: {text}"
        lines[name] = one_error_line(text)
        assert status == 2, text
        assert lines[name].startswith(f"{ERROR}{weights}: refused"), text
        assert not output.exists()  # not even an empty one
    # The zip archive is refused for the function it would call (os.system is posix.system).
    assert "posix.system" in lines["zip"]
    assert "not a PyTorch zip checkpoint" in lines["pickle"]


def test_weights_that_are_not_a_yolo_detector_get_one_line(tmp_path, short_clip, yolo_cache, monkeypatch, capfd):
    monkeypatch.setenv("XDG_CACHE_HOME", str(yolo_cache))
    state_dict = tmp_path / "state_dict.pt"  # a valid torch checkpoint, but only tensors
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3), "conv.bias": torch.zeros(4)}, state_dict)
    random_file = tmp_path / "random.pt"
    random_file.write_bytes(bytes(range(256)) * 64)
    for weights in [random_file, state_dict]:
        output = tmp_path / f"{weights.stem}.jsonl"
        status, text = run_cli(["detect-actors", str(short_clip), "--output", str(output),
                                "--detector-weights", str(weights), "--every", "50"], capfd)
        line = one_error_line(text)
        assert status == 2
        assert line.startswith(f"{ERROR}{weights}: ")
        assert not output.exists()  # not even an empty one


# ---------------------------------------------------------------------------------------------
# A killed run and its worker; one run per output file.


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether any thread of ``pid`` still runs (a killed process is a zombie, "Z", once its last
    thread has exited and released its files, until its new parent reaps it)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            return True
    return False


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the worker")
def test_killed_run_takes_its_worker_along_and_holds_its_output_meanwhile(
        tmp_path, dancer_video, short_clip, yolo_weights, yolo_cache, capfd):
    output = tmp_path / "actors.jsonl"
    log = tmp_path / "first-run.log"
    env = {**os.environ, "XDG_CACHE_HOME": str(yolo_cache)}
    # Every frame of the 63 s dancer: a minute or more of detection on a CPU, killed long before.
    command = [sys.executable, "-m", "rajax", "detect-actors", str(dancer_video), "--output", str(output),
               "--detector-weights", str(yolo_weights), "--every", "1", "--device", "cpu"]
    with open(log, "wb") as log_file:
        first = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log_file, stderr=log_file)
    worker = None
    try:
        def find_worker():
            for pid in _children(first.pid):
                if b"rajax.detection.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            return None

        worker = _wait_for(find_worker, 300, "the detection process")
        # The progress line (a log gets plain lines) appears once the detector is loaded.
        _wait_for(lambda: b"detect actors:" in log.read_bytes() or first.poll() is not None, 300,
                  "the detection to start")
        assert first.poll() is None, log.read_text()

        # A second run on the same output is refused at once, naming the file and the holder.
        status, text = run_cli(["detect-actors", str(short_clip), "--output", str(output),
                                "--detector-weights", str(yolo_weights), "--every", "50"], capfd)
        line = one_error_line(text)
        assert status == 2
        assert f"{output}: in use by another detect-actors run" in line
        if Path("/proc/locks").exists():
            assert f"process {first.pid}" in line
        assert _alive(worker)

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        _wait_for(lambda: not _alive(worker), 60, f"the orphaned detection process {worker} to end")

        # The lock went with them: a new run takes it, and the file holds no broken line.
        handle = actor_records.lock_output(output)
        handle.close()
        assert actor_records.read_records(output) == []
    finally:
        for pid in (first.pid, worker):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        first.wait(timeout=60)


# ---------------------------------------------------------------------------------------------
# Output paths and file systems that cannot take the records.


def test_output_that_cannot_be_a_record_file_is_one_line(tmp_path, short_clip, capfd):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file, not a folder\n")
    a_folder = tmp_path / "folder"
    a_folder.mkdir()
    for output, reason in [(a_file / "actors.jsonl", f"{a_file} is not a folder"),
                           (a_file / "deeper" / "actors.jsonl", f"{a_file} is not a folder"),
                           (a_folder, "is a directory")]:
        status, text = run_cli(["detect-actors", str(short_clip), "--output", str(output)], capfd)
        line = one_error_line(text)
        assert status == 2
        assert line.startswith(f"{ERROR}{output}: ") and reason in line
    assert a_file.read_text() == "a file, not a folder\n"
    assert list(a_folder.iterdir()) == []


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a real 64 KiB tmpfs (needs root, or CAP_SYS_ADMIN); yields (folder, remount)."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)

    try:
        yield folder, remount
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_read_only_disk_is_one_line_without_a_resume_hint(tmpfs, short_clip, capfd):
    folder, remount = tmpfs
    existing = folder / "actors.jsonl"  # a run cut short on it before it went read-only
    existing.write_bytes(b'{"path": "/v/a.mp4"}\n{"path": "/v/b')
    remount("ro")
    with pytest.raises(OSError):
        (folder / "probe").write_bytes(b"")  # really read-only, for root too
    for output in [existing, folder / "new.jsonl", folder / "sub" / "new.jsonl"]:
        status, text = run_cli(["detect-actors", str(short_clip), "--output", str(output), "--every", "50"], capfd)
        line = one_error_line(text)
        assert status == 2
        assert line.startswith(f"{ERROR}{output}: ") and "Read-only file system" in line
        assert "resume" not in line
    assert existing.read_bytes() == b'{"path": "/v/a.mp4"}\n{"path": "/v/b'


@pytest.mark.slow
def test_full_disk_is_one_line_and_leaves_no_partial_record(tmpfs, short_clip, yolo_weights, yolo_cache,
                                                            monkeypatch, capfd):
    folder, _ = tmpfs
    monkeypatch.setenv("XDG_CACHE_HOME", str(yolo_cache))
    output = folder / "actors.jsonl"
    # One record, then blank lines up to 100 bytes short of a page: the next record (~600 bytes)
    # starts fitting into that page, and the disk is full after it.
    first = b'{"path": "/v/a.mp4", "resolved_path": "/v/a.mp4", "actor_square": [0, 0, 8]}\n'
    before = first + b"\n" * (4096 - 100 - len(first))
    output.write_bytes(before)
    with open(folder / "filler", "wb", buffering=0) as filler, pytest.raises(OSError):
        while True:
            filler.write(b"\0" * 1024)
    status, text = run_cli(["detect-actors", str(short_clip), "--output", str(output),
                            "--detector-weights", str(yolo_weights), "--every", "50"], capfd)
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith(ERROR)]
    assert status == 2 and len(errors) == 1, text
    assert errors[0].startswith(f"{ERROR}{output}: cannot write the actor records: No space left on device")
    # A rerun resumes (once there is space), and the file holds no part of the failed record.
    assert "running the same command again once there is space resumes" in errors[0]
    assert output.read_bytes() == before
