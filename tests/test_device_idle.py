"""Device idle time during training: the gap between a step finishing and the next one dispatched.

Real jitted steps on the host devices; the "input pipeline" is a sleep of known length, so the
idle time the meter reports can be checked against it.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
from test_checkpoint_resume import REGIONS, make_feature_store

from rajax.train import metrics, stages, trainer
from rajax.train.config import apply_overrides, load_config
from rajax.train.idle import DeviceIdleMeter, idle_fraction

INPUT_DELAY_S = 0.2


def _dispatch(meter, step_fn, x, step):
    x = step_fn(x)
    meter.dispatched(step, x)
    return x


def test_a_slow_input_pipeline_leaves_the_device_idle_for_the_gaps():
    tiny_step = jax.jit(lambda x: x + 1)
    x = tiny_step(jnp.zeros(())).block_until_ready()
    with DeviceIdleMeter() as meter:
        for step in range(1, 5):
            with meter.waiting_for_input():
                time.sleep(INPUT_DELAY_S)
            x = _dispatch(meter, tiny_step, x, step)
        waits = meter.take(4)
    # Three gaps (the first step has no predecessor), each about as long as the input delay.
    assert waits["input_wait_s"] >= 4 * INPUT_DELAY_S
    assert 3 * 0.75 * INPUT_DELAY_S <= waits["device_idle_s"] <= waits["input_wait_s"]
    assert idle_fraction(waits) > 0.5
    assert float(x) == 5


def test_steps_dispatched_ahead_keep_the_device_busy():
    # Steps of a few hundred ms: far longer than a dispatch, even on a loaded machine.
    matrix = jnp.eye(2000) + 1e-4
    heavy_step = jax.jit(lambda m: (m @ m @ m) / jnp.linalg.norm(m))
    matrix = heavy_step(matrix).block_until_ready()
    with DeviceIdleMeter() as meter:
        start = time.perf_counter()
        for step in range(1, 5):
            matrix = _dispatch(meter, heavy_step, matrix, step)
        waits = meter.take(4)
        wall = time.perf_counter() - start
    # Every step was queued before its predecessor finished: no gap at all.
    assert waits["device_idle_s"] == 0.0, (waits, wall)
    assert waits["device_busy_s"] > 0.5 * wall


def test_deliberate_host_work_after_pause_is_not_idle_time():
    tiny_step = jax.jit(lambda x: x + 1)
    x = tiny_step(jnp.zeros(())).block_until_ready()
    with DeviceIdleMeter() as meter:
        x = _dispatch(meter, tiny_step, x, 1)
        meter.pause()
        time.sleep(INPUT_DELAY_S)  # e.g. validation or a checkpoint
        x = _dispatch(meter, tiny_step, x, 2)
        first = meter.take(2)
        time.sleep(INPUT_DELAY_S)  # not paused: counted
        x = _dispatch(meter, tiny_step, x, 3)
        second = meter.take(3)
    assert first["device_idle_s"] == 0.0 and first["input_wait_s"] == 0.0
    assert second["device_idle_s"] >= 0.75 * INPUT_DELAY_S


def test_training_logs_the_device_idle_time_a_slow_pipeline_causes(tmp_path):
    store = make_feature_store(tmp_path / "store", counts=(("train", 64), ("validation", 8), ("test", 8)))
    config = apply_overrides(load_config("tiny"), {
        "data.features_dir": str(store), "data.regions": ",".join(REGIONS),
        "train_head.num_epochs": "1", "log_every_steps": "2", "checkpoint.every_steps": "100",
    })
    task, data = stages.build(config, tmp_path, "train_head")

    def slow_batches(epoch, skip):
        for batch in data.train_batches(epoch, skip):
            time.sleep(INPUT_DELAY_S)
            yield batch

    slow = dataclasses.replace(data, train_batches=slow_batches)
    trainer.fit(tmp_path / "train_head", task, slow, config.train_head, config,
                class_names=config.classes, progress=False)
    train = [r for r in metrics.read_metrics(tmp_path / "train_head") if r["split"] == "train"]
    assert len(train) == data.steps_per_epoch // 2
    for record in train:
        assert 0.0 <= record["device_idle_fraction"] <= 1.0 and 0.0 < record["input_wait_fraction"] <= 1.0
    # Steps of a tiny head take milliseconds: the devices wait for the input most of the time.
    assert max(r["device_idle_fraction"] for r in train) > 0.5
