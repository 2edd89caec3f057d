"""The decoder processes behind the file pipelines: real workers, real videos, real kills."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from rajax.data import decoders, pipeline, regions, sampling, video


def plan(frame_side=256, timesteps=8, regions_=("full", "actor")):
    return pipeline.LoadPlan(regions_, timesteps, 8, "uniform", False, 0, 0, False, frame_side)


def exited(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie (exited, not yet reaped by its parent) counts as exited.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pool():
    pool = decoders.DecoderPool(2)
    yield pool
    pool.close()


def test_frames_from_a_worker_are_the_videos_central_squares_padded_with_zeros(pool, dancer_video, tmp_path):
    """A large video fills a worker's shared memory first; a small one after it (the same worker:
    the pool hands out the last idle one first) must not show the large one's pixels."""
    small = tmp_path / "small.mkv"
    rng = np.random.default_rng(0)
    video.write_video(small, rng.integers(0, 256, (40, 24, 32, 3), dtype=np.uint8), fps=10)
    pool.run(pipeline.load_file_video, plan(frame_side=64), "v", str(dancer_video), None, 0)  # then grown
    for path, square in ((dancer_video, (100, 80, 200)), (small, (2, 3, 10))):
        frames, (boxes, region) = pool.run(pipeline.load_file_video, plan(), "v", str(path), square, 0)
        info = video.probe(path)
        indices = sampling.sample_timesteps("uniform", info.num_frames, 8, 8).reshape(-1)
        expected = regions.central_square_crop(video.read_frames(path, indices, max_side=256))
        side = expected.shape[1]
        assert frames.shape == (64, 256, 256, 3) and frames.dtype == np.uint8
        np.testing.assert_array_equal(frames[:, :side, :side], expected)
        assert not frames[:, side:].any() and not frames[:, :, side:].any()
        scale = side / min(info.height, info.width)
        np.testing.assert_array_equal(boxes, regions.region_boxes(side, ("full", "actor"),
                                                                  tuple(v * scale for v in square)))


def test_a_worker_killed_mid_video_fails_that_video_only(pool, dancer_video):
    errors = []

    def decode():
        try:
            pool.run(pipeline.load_file_video, plan(timesteps=64), "v", str(dancer_video), None, 0)
        except decoders.DecoderDied as error:
            errors.append(str(error))

    for _ in range(5):  # on a loaded machine the video may be done before the kill lands: again
        thread = threading.Thread(target=decode)
        thread.start()
        deadline = time.monotonic() + 60
        while not pool.serving_pids() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        victims = pool.serving_pids()
        for victim in victims:
            os.kill(victim, signal.SIGKILL)
        thread.join(60)
        if errors:
            break
    assert errors and "died" in errors[0] and str(-signal.SIGKILL) in errors[0]
    assert victims[0] not in pool.pids() and len(pool.pids()) == 2  # replaced
    frames, _ = pool.run(pipeline.load_file_video, plan(timesteps=1), "v", str(dancer_video), None, 0)
    assert frames.any()


def test_a_worker_that_died_idle_is_replaced_without_failing_a_call(pool, dancer_video):
    for pid in pool.pids():
        os.kill(pid, signal.SIGKILL)
    for pid in pool.pids():
        assert exited(pid, 10)
    for _ in range(3):
        frames, _ = pool.run(pipeline.load_file_video, plan(timesteps=1), "v", str(dancer_video), None, 0)
        assert frames.any()
    assert pool.usage()["user_s"] > 0


def test_a_bad_video_is_an_error_naming_it_and_the_worker_lives_on(pool, tmp_path, dancer_video):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really" * 10)
    pids = pool.pids()
    with pytest.raises(RuntimeError, match="broken.mp4"):
        pool.run(pipeline.load_file_video, plan(), "v", str(bad), None, 0)
    assert pool.pids() == pids
    frames, _ = pool.run(pipeline.load_file_video, plan(timesteps=1), "v", str(dancer_video), None, 0)
    assert frames.any()


def test_workers_exit_when_their_caller_is_killed(dancer_video):
    """SIGKILL leaves no cleanup to run: the workers must notice the end of their input and go."""
    script = textwrap.dedent(f"""
        import sys
        from rajax.data import decoders, pipeline
        pool = decoders.DecoderPool(2)
        plan = pipeline.LoadPlan(("full",), 1, 8, "uniform", False, 0, 0, False, 64)
        pool.run(pipeline.load_file_video, plan, "v", {str(dancer_video)!r}, None, 0)
        print(*pool.pids(), flush=True)
        sys.stdin.read()
    """)
    caller = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        workers = [int(pid) for pid in caller.stdout.readline().split()]
        assert len(workers) == 2
        caller.kill()
        caller.wait(30)
        for pid in workers:
            assert exited(pid, 30), f"decoder {pid} outlived its caller"
    finally:
        caller.kill()


def test_closing_lets_the_call_in_progress_finish_and_refuses_the_waiting_ones(dancer_video):
    pool = decoders.DecoderPool(1)
    (pid,) = pool.pids()
    results = []

    def decode():
        try:
            frames, _ = pool.run(pipeline.load_file_video, plan(timesteps=64), "v", str(dancer_video), None, 0)
            results.append(frames.shape)
        except decoders.PoolClosed as error:
            results.append(error)

    threads = [threading.Thread(target=decode) for _ in range(3)]  # one decodes, two wait for the worker
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not pool.serving_pids() and time.monotonic() < deadline:
        time.sleep(0.001)
    pool.close()
    for thread in threads:
        thread.join(60)
    assert exited(pid, 10)
    decoded = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, decoders.PoolClosed)]
    assert len(decoded) >= 1 and len(decoded) + len(refused) == 3, results
    with pytest.raises(decoders.PoolClosed):
        pool.run(pipeline.load_file_video, plan(timesteps=1), "v", str(dancer_video), None, 0)


def test_a_request_the_worker_cannot_unpickle_is_an_error_not_a_crash(pool):
    """This test module is not importable in a worker (tests/ is not on its path)."""
    pids = pool.pids()
    with pytest.raises(RuntimeError, match="No module named 'test_decoders'"):
        pool.run(_anything)
    assert pool.pids() == pids
    assert exited(pids[0], 0.5) is False and exited(pids[1], 0.5) is False


def _anything(*, allocate):
    return None, None
