"""The test inputs (tests/inputs.py): the registry agrees with shared/README.md, every input is there
(under CI=true nothing may be skipped for a missing input), and a missing one is skipped with a
reason naming it and how to get it, fast and with one network attempt per run."""

import dataclasses
import functools
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import require, under_ci
from inputs import INPUTS, MISSING, SHARED, UCF101_DIR, UCF101_TEST_CLIPS, Input, Missing, Resolver, sha256

TESTS = Path(__file__).resolve().parent


def needs_shared():
    if not SHARED.is_dir():
        require(Missing(next(iter(INPUTS.values())), f"{MISSING}: no shared/ folder at {SHARED}"))


def closed_port() -> int:
    """A local TCP port nobody listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def http_origin(tmp_path):
    """A real HTTP server on this machine serving ``tmp_path/origin``: ``(folder, base URL)``."""
    folder = tmp_path / "origin"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def own_input(path: str, content: bytes, url: str) -> Input:
    import hashlib

    return Input(path, url, hashlib.sha256(content).hexdigest(), "CC0", "bytes made by the test")


# ------------------------------------------------------------------------------ the real inputs


def test_the_registry_lists_what_shared_readme_lists():
    needs_shared()
    readme = (SHARED / "README.md").read_text()
    listed = dict(reversed(line.split()) for line in readme.split("```")[1].strip().splitlines())
    registered = {path: item.sha256 for path, item in INPUTS.items() if not path.startswith(UCF101_DIR)}
    assert registered == listed
    for item in INPUTS.values():
        if not item.path.startswith(UCF101_DIR):
            assert item.url in readme or item.url.rsplit("/", 1)[0] in readme, item.path
    sums = dict(reversed(line.split()) for line in (SHARED / UCF101_DIR / "SHA256SUMS").read_text().splitlines())
    for clip in UCF101_TEST_CLIPS:
        assert INPUTS[f"{UCF101_DIR}/{clip}"].sha256 == sums[clip]
    assert "Satyamwork43/Video_App" in readme and "76ab598" in readme


def test_every_input_is_found_with_its_hash(test_inputs, ucf101_subset):
    """Under CI=true with shared/ beside the checkout, nothing is skipped for a missing input."""
    for path, item in INPUTS.items():
        found = require(test_inputs.resolve(path))
        if test_inputs.shared is not None:
            assert found == SHARED / path
        assert sha256(found) == item.sha256, path
    for clip in UCF101_TEST_CLIPS:
        assert (ucf101_subset / clip).is_file()
    if ucf101_subset == SHARED / UCF101_DIR:  # every clip of the shared subset
        sums = (ucf101_subset / "SHA256SUMS").read_text().splitlines()
        assert len(sums) == 197
        for line in sums:
            digest, clip = line.split()
            assert sha256(ucf101_subset / clip) == digest, clip
    if under_ci() and SHARED.is_dir():
        assert test_inputs.shared == SHARED


# ------------------------------------------------------------------------------ missing inputs


def test_a_missing_input_is_skipped_in_seconds_with_a_reason_and_the_network_tried_once(tmp_path, monkeypatch):
    """No shared/, no $RAJAX_TEST_DATA, no network (the origin's port is closed): skipped, with a
    reason naming the input and how to get it; the second input does not try the network again."""
    empty = tmp_path / "empty"
    empty.mkdir()
    dead = f"http://127.0.0.1:{closed_port()}/"
    dancer, labels = (dataclasses.replace(INPUTS[p], url=dead + Path(p).name)
                      for p in ("data/dancer/dancer.avi", "data/kinetics_sample/kinetics400_labels.txt"))
    resolver = Resolver(empty, None, tmp_path / "cache", run="run-1")

    start = time.monotonic()
    missing = resolver.resolve(dancer)
    assert time.monotonic() - start < 10
    assert isinstance(missing, Missing) and missing.reason.startswith(f"{MISSING} data/dancer/dancer.avi ")
    for part in (f"not in {empty}", "$RAJAX_TEST_DATA unset", f"fetching {dancer.url} failed",
                 "ConnectionRefusedError", f"sha256 {dancer.sha256}", "$RAJAX_TEST_DATA/data/dancer/dancer.avi",
                 "GPL-3.0", str(tmp_path / "cache")):
        assert part in missing.reason, part
    marker = tmp_path / "cache" / ".offline-run-1"
    assert marker.read_text().startswith("no network: cannot connect to 127.0.0.1:")

    start = time.monotonic()
    second = resolver.resolve(labels)
    assert time.monotonic() - start < 1
    assert "not fetched: no network: cannot connect" in second.reason and "(earlier in this run)" in second.reason
    # A new run tries again (and clears the old run's marker).
    again = Resolver(empty, None, tmp_path / "cache", run="run-2").resolve(labels)
    assert f"fetching {labels.url} failed" in again.reason
    assert sorted(p.name for p in (tmp_path / "cache").glob(".offline-*")) == [".offline-run-2"]

    # The fixtures' verdict: skipped with that reason; a failure under CI=true.
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape(missing.reason)):
        require(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: every test input must be there"):
        require(missing)


def test_inputs_from_rajax_test_data_are_hash_checked(tmp_path):
    data = tmp_path / "data_dir"
    item = own_input("data/some/clip.bin", b"the right bytes", f"http://127.0.0.1:{closed_port()}/clip.bin")
    (data / "data/some").mkdir(parents=True)
    (data / item.path).write_bytes(b"the right bytes")
    assert Resolver(None, data, tmp_path / "cache", "r").resolve(item) == data / item.path
    (data / item.path).write_bytes(b"other bytes")
    missing = Resolver(None, data, tmp_path / "cache", "r", fetch=False).resolve(item)
    assert isinstance(missing, Missing)
    assert f"$RAJAX_TEST_DATA has {data / item.path} with sha256 " in missing.reason
    assert "fetching is off" in missing.reason


def test_a_fetched_input_is_hash_checked_and_cached(tmp_path, http_origin):
    """Fetched from a real HTTP origin (a server on this machine) into the cache: a wrong hash is
    refused and leaves nothing behind, a missing file is no reason to think the network down, and a
    cached file is used by later runs without the origin."""
    pytest.importorskip("pooch", reason="pooch (the dev extra) fetches inputs")
    folder, base = http_origin
    content = os.urandom(100_000)
    (folder / "clip.bin").write_bytes(content)
    cache = tmp_path / "cache"
    good = own_input("data/fetched/clip.bin", content, base + "clip.bin")

    wrong = dataclasses.replace(good, sha256="0" * 64)
    refused = Resolver(None, None, cache, "r1").resolve(wrong)
    assert isinstance(refused, Missing) and f"fetching {good.url} failed" in refused.reason
    assert "0000000000" in refused.reason  # pooch names the expected hash
    assert not (cache / good.path).exists()

    absent = Resolver(None, None, cache, "r1").resolve(dataclasses.replace(good, url=base + "nothing.bin"))
    assert isinstance(absent, Missing) and "404" in absent.reason
    assert not list(cache.glob(".offline-*"))

    assert Resolver(None, None, cache, "r1").resolve(good) == cache / good.path
    assert (cache / good.path).read_bytes() == content
    (folder / "clip.bin").unlink()  # the origin is gone: the cache answers
    assert Resolver(None, None, cache, "r2").resolve(good) == cache / good.path


def test_a_clone_without_shared_skips_and_counts_missing_inputs_and_ci_fails_them(tmp_path):
    """tests/conftest.py and tests/inputs.py in a checkout with no shared/ beside it, no
    $RAJAX_TEST_DATA and no network (every connection goes to a closed local proxy port), under
    pytest-xdist as `make test` runs: the tests that need an input are skipped with its reason and
    counted at the end; the others pass. Under CI=true the same tests fail instead."""
    tests = tmp_path / "clone" / "tests"
    tests.mkdir(parents=True)
    for name in ("conftest.py", "inputs.py"):
        shutil.copy(TESTS / name, tests / name)
    (tests / "test_needs_inputs.py").write_text(
        "def test_dancer(dancer_video):\n    assert dancer_video.exists()\n\n"
        "def test_phone(input_path):\n    assert input_path('data/odd_videos/video_90.mov').exists()\n\n"
        "def test_needs_nothing():\n    assert True\n")
    proxy = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "RAJAX_TEST_DATA", "NO_PROXY", "no_proxy")}
    env |= {"RAJAX_TEST_CACHE": str(tmp_path / "cache"), "HTTPS_PROXY": proxy, "https_proxy": proxy,
            "HTTP_PROXY": proxy, "http_proxy": proxy}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-ra", str(tests)]

    start = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path / "clone", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "1 passed, 2 skipped" in out.splitlines()[-1]
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED [1] ")]
    assert len(skips) == 2
    for path in ("data/dancer/dancer.avi", "data/odd_videos/video_90.mov"):
        (line,) = [line for line in skips if f": {MISSING} {path} (" in line]
        assert f"$RAJAX_TEST_DATA/{path}" in line and "run the tests once with network access" in line
    # The count comes last, after the reasons, just before pytest's closing line.
    assert "2 tests skipped for missing test inputs" in out.splitlines()[-2]
    assert f"no shared/ folder at {tmp_path / 'shared'}" in out
    assert time.monotonic() - start < 120

    command.remove("-n"), command.remove("2")  # one process is enough here
    done = subprocess.run(command, cwd=tmp_path / "clone", env=env | {"CI": "true"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    closing = done.stdout.splitlines()[-1]
    # The fixture's failure is an error of the test's setup, input_path's a failure of the test itself.
    assert "1 failed, 1 passed, 1 error" in closing and "skipped" not in closing
    assert done.stdout.count("CI=true: every test input must be there") >= 2
    assert "0 tests skipped for missing test inputs" in done.stdout
