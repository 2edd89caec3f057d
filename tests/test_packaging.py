"""An installed rajax works anywhere: the wheel, installed on its own, run from an empty directory.

The wheel is built by pip from a copy of what it is made of (pyproject.toml, README.md, rajax/,
configs/): setuptools builds in the source tree, where build/ can hold stale modules and two runs
at once would share it. It is installed with ``pip install --target`` into a folder apart from the
checkout; its ``rajax`` script then runs with the venv's Python (the dependencies) and that folder
first on PYTHONPATH, from an empty working directory, so nothing of the checkout can be used.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parents[1]
CLASSES = ("cereals", "coffee")


def write_video(path: Path, label: int, seed: int, frames: int = 16) -> None:
    """A short mp4 whose brightness gives its class away, with a moving bar and noise."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(frames):
            frame = np.full((48, 64, 3), 40 + 160 * label, np.uint8)
            frame[:, (t * 3) % 56:(t * 3) % 56 + 8] = 255
            frame += rng.integers(0, 20, frame.shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run(command, cwd, env=None, timeout=300):
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, the source copy it was built from, the folder it is installed in)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT / name, source / name)
    for folder in ("rajax", "configs"):
        shutil.copytree(PROJECT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", root / "dist", source], cwd=root)
    (wheel,) = (root / "dist").glob("rajax-*.whl")
    site = root / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", site, wheel], cwd=root)
    return wheel, source, site


@pytest.fixture
def empty_dir(tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    return cwd


def installed_env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="2")
    return env


def test_the_wheel_holds_every_module_and_the_configs_inside_the_package(installed):
    wheel, source, site = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"rajax/{p.relative_to(source / 'rajax').as_posix()}" for p in (source / "rajax").rglob("*.py")}
    expected |= {f"rajax/resources/{p.name}" for p in (source / "rajax" / "resources").glob("*.txt")}
    expected |= {f"rajax/configs/{p.name}" for p in (source / "configs").glob("*.py")}
    assert "rajax/configs/base.py" in expected and "rajax/configs/tiny.py" in expected
    assert sorted(expected - names) == []  # e.g. a new subpackage missing from pyproject's list
    assert not [n for n in names if n.startswith("configs/")]  # no top-level `configs` package
    assert not (site / "configs").exists()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requirements = zipfile.ZipFile(wheel).read(metadata).decode()
    for extra in ("cuda12", "cuda13", "tpu"):
        assert f'Requires-Dist: jax[{extra}]>=0.10.2; extra == "{extra}"' in requirements


def test_the_installed_cli_offers_every_config_option_from_an_empty_directory(installed, empty_dir):
    _, _, site = installed
    env = installed_env(site)
    # Where everything comes from, and what loading a config does to the import system.
    probe = run([sys.executable, "-c", (
        "import json, sys, rajax\n"
        "from rajax.train.config import CONFIGS_DIR, load_config\n"
        "config = load_config('tiny')\n"
        "print(json.dumps({'rajax': rajax.__file__, 'configs_dir': str(CONFIGS_DIR),\n"
        "                  'configs_path': list(sys.modules['configs'].__path__),\n"
        "                  'sys_path': sys.path, 'crop_size': config.data.crop_size}))\n")], cwd=empty_dir, env=env)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(found["rajax"]).resolve() == (site / "rajax" / "__init__.py").resolve()
    assert Path(found["configs_dir"]).resolve() == (site / "rajax" / "configs").resolve()
    assert [Path(p).resolve() for p in found["configs_path"]] == [(site / "rajax" / "configs").resolve()]
    assert str(site / "rajax") not in found["sys_path"]  # rajax's modules never become top-level ones
    assert found["crop_size"] == 32
    help_text = run([site / "bin" / "rajax", "train", "tiny", "--help"], cwd=empty_dir, env=env).stdout
    for option in ("--config.data.csv", "--config.train_head.num_epochs", "--config.finetune.num_epochs",
                   "--config.stage", "--config.head.name"):
        assert option in help_text
    assert list(empty_dir.iterdir()) == []


def test_the_installed_cli_trains_the_tiny_config_on_a_csv_from_an_empty_directory(installed, empty_dir,
                                                                                   tmp_path):
    _, _, site = installed
    data = tmp_path / "videos"
    data.mkdir()
    rows = ["path,label,split"]
    for split, count in (("train", 4), ("validation", 2), ("test", 2)):
        for i in range(count):
            write_video(data / f"{split}_{i}.mp4", i % 2, seed=len(rows), frames=16)
            rows.append(f"{split}_{i}.mp4,{CLASSES[i % 2]},{split}")
    (data / "videos.csv").write_text("\n".join(rows) + "\n")
    run([site / "bin" / "rajax", "train", "tiny", "--workdir", "run", "--no-progress",
         "--config.stage=finetune", f"--config.data.csv={data / 'videos.csv'}",
         "--config.finetune.num_epochs", "1", "--config.eval_batch_size=4"],
        cwd=empty_dir, env=installed_env(site), timeout=600)
    finetune = empty_dir / "run" / "finetune"
    saved = json.loads((finetune / "config.json").read_text())
    assert saved["stage"] == "finetune" and saved["finetune"]["num_epochs"] == 1
    assert saved["data"]["csv"] == str(data / "videos.csv")
    assert json.loads((finetune / "eval" / "test.json").read_text())["num_examples"] == 2
