"""Shared test setup: 4 host CPU devices for pmap tests, and paths to the real inputs in ../shared."""

import os

# Must happen before JAX initialises its backend; pmap tests rely on 4 local devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torchvision segfaults when imported after tensorflow; importing it first makes any later order safe.
import torch  # noqa: E402,F401
import torchvision  # noqa: E402,F401

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"test inputs not found: {SHARED} (the shared/ folder beside the project root)")
    return SHARED


@pytest.fixture(scope="session")
def cricket_gif(shared_dir) -> Path:
    return shared_dir / "data/kinetics_sample/v_CricketShot_g04_c01_rgb.gif"


@pytest.fixture(scope="session")
def kinetics_labels_file(shared_dir) -> Path:
    return shared_dir / "data/kinetics_sample/kinetics400_labels.txt"


@pytest.fixture(scope="session")
def dancer_video(shared_dir) -> Path:
    return shared_dir / "data/dancer/dancer.avi"


@pytest.fixture(scope="session")
def yolo_weights(shared_dir) -> Path:
    return shared_dir / "weights/yolo11n-pose.pt"
