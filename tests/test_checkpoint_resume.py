"""Head training through the real command on a real feature store: kill and resume, NaN stop, outputs.

``rajax train`` runs in a subprocess (4 host devices), is killed with SIGKILL in the middle of
training, rerun, and must end with the very bits an uninterrupted run with the same seed reaches.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rajax import cli
from rajax.data.features import FeatureWriter
from rajax.train import checkpoints, metrics
from rajax.train.config import apply_overrides, load_config
from rajax.train.extraction import feature_settings

PROJECT = Path(__file__).resolve().parents[1]
REGIONS = ("full", "grid_1_1", "actor")


def make_feature_store(path: Path, counts=(("train", 128), ("validation", 16), ("test", 20)), seed=0):
    """A real feature store of a toy problem: the class shows in the actor region only.

    Its recorded settings are those of the tiny config, so that head training accepts it.
    """
    config = load_config("tiny")
    writer = FeatureWriter(path, REGIONS, num_positions=3, channels=16, dtype="float32",
                           class_names=list(config.classes),
                           settings=feature_settings(config, backbone_digest="sha256:toy-features"))
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(99).normal(size=(10, 16)) * 1.5
    for split, n in counts:
        for i in range(n):
            label = int(rng.integers(0, 10))
            x = rng.normal(size=(len(REGIONS), 3, 16)).astype(np.float32)
            x[2] += prototypes[label]
            writer.write(f"{split}/video_{i:03d}", label, split, x)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_feature_store(tmp_path_factory.mktemp("features") / "store")


def train_command(workdir, store, *extra):
    return [sys.executable, "-m", "rajax", "train", "tiny", "--workdir", str(workdir), "--no-progress",
            f"--config.data.features_dir={store}", "--config.data.regions=" + ",".join(REGIONS),
            "--config.train_head.num_epochs=12", "--config.checkpoint.every_steps=5", *extra]


def subprocess_env(devices=4):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = str(PROJECT)
    return env


def run(command, **kwargs):
    result = subprocess.run(command, cwd=PROJECT, env=subprocess_env(), capture_output=True, text=True,
                            timeout=300, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def saved_state(run_dir: Path, which: str):
    step = checkpoints.latest_step(run_dir, which)
    return step, checkpoints.restore_tree(run_dir / which, step)


def leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for key in sorted(tree):
            yield from leaves(tree[key], f"{prefix}/{key}")
    else:
        yield prefix, np.asarray(tree)


def assert_bit_identical(a, b):
    a, b = dict(leaves(a)), dict(leaves(b))
    assert a.keys() == b.keys()
    for path in a:
        assert a[path].dtype == b[path].dtype and a[path].tobytes() == b[path].tobytes(), path


def finished_steps(directory: Path) -> list[int]:
    """Steps saved completely (Orbax writes ``<step>.orbax-checkpoint-tmp`` first, then renames)."""
    return [int(p.name) for p in directory.glob("[0-9]*") if p.name.isdigit()] if directory.is_dir() else []


def test_killed_run_resumes_to_the_same_bits_as_an_uninterrupted_run(tmp_path, store):
    steps_per_epoch = 128 // 8
    total = 12 * steps_per_epoch

    # The uninterrupted run in this process (the same 4 host devices): same program, same bits.
    uninterrupted = tmp_path / "uninterrupted"
    assert cli.main(train_command(uninterrupted, store)[3:]) == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen(train_command(killed, store), cwd=PROJECT, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest_dir = killed / "train_head" / checkpoints.LATEST_DIR
    deadline = time.time() + 240
    kill_after = int(1.5 * steps_per_epoch)  # past a validation, in the middle of an epoch
    try:
        while time.time() < deadline and process.poll() is None:
            done = finished_steps(latest_dir)
            if done and max(done) >= kill_after:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = max(finished_steps(latest_dir))
    assert killed_at < total

    resumed = run(train_command(killed, store))
    assert f"Resuming from {latest_dir.resolve()}/" in resumed.stdout + resumed.stderr

    step_a, state_a = saved_state(uninterrupted / "train_head", checkpoints.LATEST_DIR)
    step_b, state_b = saved_state(killed / "train_head", checkpoints.LATEST_DIR)
    assert step_a == step_b == total
    assert_bit_identical(state_a, state_b)  # params, optimizer state, rng, step
    best_a, best_state_a = saved_state(uninterrupted / "train_head", checkpoints.BEST_DIR)
    best_b, best_state_b = saved_state(killed / "train_head", checkpoints.BEST_DIR)
    assert best_a == best_b
    assert_bit_identical(best_state_a, best_state_b)

    # The metrics log reads like one run: each step once, the same losses.
    log_a = [r for r in metrics.read_metrics(uninterrupted / "train_head") if r["split"] == "train"]
    log_b = [r for r in metrics.read_metrics(killed / "train_head") if r["split"] == "train"]
    assert [r["step"] for r in log_b] == list(range(1, total + 1))
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    test_a = json.loads((uninterrupted / "train_head/eval/test.json").read_text())
    test_b = json.loads((killed / "train_head/eval/test.json").read_text())
    assert test_a["accuracy"] == test_b["accuracy"] and test_a["checkpoint_step"] == best_a


def test_training_outputs(tmp_path, store):
    """config.json, metrics.jsonl, TensorBoard events, best checkpoint and the evaluation files."""
    workdir = tmp_path / "run"
    assert cli.main(train_command(workdir, store, "--config.train_head.num_epochs=2",
                                  "--config.head.name=region_mean")[3:]) == 0
    run_dir = workdir / "train_head"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["head"]["name"] == "region_mean" and saved["train_head"]["num_epochs"] == 2
    records = metrics.read_metrics(run_dir)
    train = [r for r in records if r["split"] == "train"]
    assert {"loss", "accuracy", "learning_rate", "grad_norm", "steps_per_second", "epoch",
            "device_idle_fraction", "input_wait_fraction"} <= set(train[0])
    assert train[0]["learning_rate"] == pytest.approx(1e-3)
    validation = [r for r in records if r["split"] == "validation"]
    assert [r["step"] for r in validation] == [16, 32]
    assert list((run_dir / metrics.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    best_step = max(validation, key=lambda r: (r["accuracy"], -r["loss"]))["step"]
    assert checkpoints.latest_step(run_dir) == best_step
    report = json.loads((run_dir / "eval/test.json").read_text())
    assert report["num_examples"] == 20 and report["checkpoint_step"] == best_step
    assert sum(map(sum, report["confusion_matrix"])) == 20
    assert report["mean_region_attention"] == pytest.approx({name: 1 / 3 for name in REGIONS})
    assert (run_dir / "eval/test_confusion.png").stat().st_size > 1000


def test_select_last_tests_the_last_validated_state_whatever_its_accuracy(tmp_path, store):
    workdir = tmp_path / "run"
    # A learning rate so large that the last validation is worse than an earlier one.
    assert cli.main(train_command(workdir, store, "--config.train_head.num_epochs=3",
                                  "--config.train_head.optimizer.learning_rate=3", "--config.train_head.select=last",
                                  "--config.head.name=region_mean")[3:]) == 0
    run_dir = workdir / "train_head"
    validation = [r for r in metrics.read_metrics(run_dir) if r["split"] == "validation"]
    assert [r["step"] for r in validation] == [16, 32, 48]
    best = max(validation, key=lambda r: (r["accuracy"], -r["loss"]))
    assert best["step"] != 48  # best_validation would have tested another state
    report = json.loads((run_dir / "eval/test.json").read_text())
    assert report["checkpoint_step"] == checkpoints.latest_step(run_dir) == 48


def test_nan_loss_stops_loudly_and_keeps_the_last_good_checkpoint(tmp_path, store):
    from rajax.train import stages

    config = apply_overrides(load_config("tiny"), {
        "data.features_dir": str(store), "data.regions": ",".join(REGIONS),
        "train_head.optimizer.learning_rate": "1e38", "checkpoint.every_steps": "1",
    })
    with pytest.raises(metrics.TrainingDiverged, match=r"training stopped at step \d+: loss = (nan|inf)") as error:
        stages.train(config, tmp_path, "train_head", progress=False)
    run_dir = tmp_path / "train_head"
    step, state = saved_state(run_dir, checkpoints.LATEST_DIR)
    assert f"{(run_dir / checkpoints.LATEST_DIR).resolve()}/{step}" in str(error.value)
    assert all(np.isfinite(value).all() for _, value in leaves(state["params"]))
    bad_step = int(str(error.value).split("step ")[1].split(":")[0])
    assert step < bad_step
