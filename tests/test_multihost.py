"""Two processes joined by jax.distributed on this machine train like one process on the same global batch.

Process layout: 1 process x 4 devices versus 2 processes x 2 devices (gloo collectives over
127.0.0.1), the same global batch of 8, each host reading its shard of the feature store. The
examples of a global step are the same; their grouping per device differs, so the results agree up
to float rounding, not bit for bit.
"""

import socket
import subprocess

import numpy as np
import pytest
from test_checkpoint_resume import (PROJECT, leaves, make_feature_store, saved_state, subprocess_env,
                                    train_command)

from rajax import cli
from rajax.train import checkpoints, metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    store = make_feature_store(tmp_path / "store", counts=(("train", 64), ("validation", 16), ("test", 20)))
    epochs = "--config.train_head.num_epochs=3"

    single = tmp_path / "single"  # in this process: 1 process x 4 devices
    assert cli.main(train_command(single, store, epochs)[3:]) == 0

    multi = tmp_path / "multi"
    port = free_port()
    processes = [
        subprocess.Popen(
            train_command(multi, store, epochs, f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                          "--config.distributed.num_processes=2", f"--config.distributed.process_id={index}"),
            cwd=PROJECT, env=subprocess_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for index in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert "Process 1 of 2: 2 local of 4 devices." in outputs[1]

    step_single, state_single = saved_state(single / "train_head", checkpoints.LATEST_DIR)
    step_multi, state_multi = saved_state(multi / "train_head", checkpoints.LATEST_DIR)
    assert step_single == step_multi == 3 * 64 // 8
    single_params, multi_params = dict(leaves(state_single["params"])), dict(leaves(state_multi["params"]))
    assert single_params.keys() == multi_params.keys()
    for path in single_params:
        np.testing.assert_allclose(multi_params[path], single_params[path], rtol=1e-5, atol=1e-6, err_msg=path)
    # Training moved the parameters far more than the tolerance above.
    initial = initial_head_params()
    assert any(not np.allclose(single_params[p], initial[p], atol=1e-3) for p in initial)

    losses_single = [r["loss"] for r in metrics.read_metrics(single / "train_head") if r["split"] == "train"]
    losses_multi = [r["loss"] for r in metrics.read_metrics(multi / "train_head") if r["split"] == "train"]
    np.testing.assert_allclose(losses_multi, losses_single, rtol=1e-5)
    # Evaluation gathered every video of both hosts exactly once.
    test_single = metrics.read_metrics(single / "train_head")[-1]
    test_multi = metrics.read_metrics(multi / "train_head")[-1]
    assert test_single["split"] == test_multi["split"] == "test"
    assert test_multi["accuracy"] == pytest.approx(test_single["accuracy"])


def initial_head_params():
    """The head's initial parameters (same seed), computed here."""
    import jax

    from rajax.train import stages
    from rajax.train.config import load_config

    config = load_config("tiny")
    head = stages.build_head(config)
    params = stages.init_head(head, config, 3, 3, 16)
    return dict(leaves(jax.device_get(params)))
