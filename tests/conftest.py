"""Shared test setup: JAX on 4 host CPU devices, and the real test inputs (tests/inputs.py).

JAX runs on the CPU in every test and in every process a test starts (they inherit the
environment), whatever accelerator the machine has: the pmap tests need 4 devices, which
``--xla_force_host_platform_device_count`` makes only on the CPU platform, and the numeric tests'
float32 tolerances are derived for float32 arithmetic (a GPU's default TF32 convolutions differ by
1e-3). The accelerator is measured by tools/device_check.py, a tool, not a test. torch is left as
it is: it may or may not see a GPU.
"""

import os

# Must happen before JAX initialises its backend; pmap tests rely on 4 local devices.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torchvision segfaults when imported after tensorflow; importing it first makes any later order safe.
import torch  # noqa: E402,F401
import torchvision  # noqa: E402,F401

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from inputs import MISSING, UCF101_TEST_CLIPS, Missing, Resolver  # noqa: E402,F401

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require(found):
    """``found`` when it is a path; a skip naming the missing input (a failure under CI=true)."""
    if isinstance(found, Missing):
        if under_ci():
            pytest.fail(found.reason + " (CI=true: every test input must be there)", pytrace=False)
        pytest.skip(found.reason)
    return found


@pytest.fixture(scope="session")
def test_inputs() -> Resolver:
    """Where this run finds its inputs: ../shared, $RAJAX_TEST_DATA, or the fetch cache."""
    return Resolver.from_environment()


@pytest.fixture(scope="session")
def input_path(test_inputs):
    """``input_path("data/odd_videos/video_90.mov")``: that input's file, or the test is skipped."""
    return lambda path: require(test_inputs.resolve(path))


@pytest.fixture(scope="session")
def cricket_gif(input_path) -> Path:
    return input_path("data/kinetics_sample/v_CricketShot_g04_c01_rgb.gif")


@pytest.fixture(scope="session")
def kinetics_labels_file(input_path) -> Path:
    return input_path("data/kinetics_sample/kinetics400_labels.txt")


@pytest.fixture(scope="session")
def dancer_video(input_path) -> Path:
    return input_path("data/dancer/dancer.avi")


@pytest.fixture(scope="session")
def yolo_weights(input_path) -> Path:
    return input_path("weights/yolo11n-pose.pt")


@pytest.fixture(scope="session")
def ucf101_subset(test_inputs) -> Path:
    """A folder laid out ``<Class>/v_<Class>_gGG_cCC.mp4`` holding at least ``UCF101_TEST_CLIPS``
    (``from conftest import UCF101_TEST_CLIPS``): shared/data/ucf101_subset (all 197 clips) when
    present, else those 8 clips from $RAJAX_TEST_DATA or the fetch cache."""
    return require(test_inputs.ucf101_subset())


def missing_input_skips(terminalreporter) -> int:
    """Tests of this run skipped because a test input was missing."""
    count = 0
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        count += MISSING in reason
    return count


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After every other summary (the skip reasons included), just before pytest's closing line:
    how many tests were skipped because a test input was missing."""
    try:
        return (yield)
    finally:
        count = missing_input_skips(terminalreporter)
        if count:
            terminalreporter.write_sep("=", f"{count} tests skipped for missing test inputs "
                                            "(reasons above; docs/testing.md#test-inputs)", yellow=True)
        else:
            terminalreporter.write_line("0 tests skipped for missing test inputs")
