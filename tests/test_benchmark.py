"""tools/benchmark.py end to end on tiny inputs: it runs, every contender computes the same
features as the PyTorch reference, and the timed steps never recompile. (Its timings are its
output, not something a test asserts.) Plus the pieces of its package (tools/bench/) that the
run's JSON cannot show: the stage-1 model it builds from the checkpoint it has already loaded is
the one ``rajax train`` builds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench_package(monkeypatch):
    """tools/ on sys.path, where ``python tools/benchmark.py`` has it: the package imports as ``bench``."""
    monkeypatch.syspath_prepend(str(PROJECT / "tools"))


def test_benchmark_runs_and_every_contender_computes_the_same_features(tmp_path, bench_package):
    result_file = tmp_path / "bench.json"
    env = dict(os.environ, XLA_FLAGS="", TF_CPP_MIN_LOG_LEVEL="2")
    command = [
        sys.executable, str(PROJECT / "tools/benchmark.py"), "--only", "forward,train,memory",
        "--frames", "8", "--size", "32", "--train-frames", "8", "--train-batch", "2",
        "--repeats", "1", "--train-repeats", "1", "--variants", "plain,as_2d+fuse_1x1+fold_bn",
        "--bf16-variants", "as_2d", "--train-variants", "plain f32,as_2d bf16",
        "--memory-variants", "plain f32", "--memory-batch", "1", "--memory-frames", "16",
        "--json", str(result_file), "--quiet",
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(result_file.read_text())
    assert set(results["section_wall_s"]) == {"forward", "train", "memory"}
    # The run's backend is the one JAX gives this test session (the child inherits its environment).
    assert results["mode"] == "full" and results["machine"]["backend"] == jax.default_backend()

    forward = results["forward"]["contenders"]
    assert {"rajax plain float32", "rajax as_2d+fuse_1x1+fold_bn float32", "rajax as_2d bfloat16",
            "torch eager", "torch eager channels_last_3d bf16-autocast"} <= set(forward)
    for name, entry in forward.items():
        tolerance = 1e-5 if entry["dtype"] == "float32" else 5e-2
        assert entry["max_rel_diff_vs_torch_f32"] < tolerance, name
        assert entry["median_s"] > 0
        assert entry["clips_per_s"] > 0 and entry["tflops"] > 0, name
    assert results["forward"]["recompilations_during_timing"] == 0
    assert set(results["forward"]["ratios"]) == {"float32", "bfloat16"}

    train = results["train"]
    assert {"rajax plain f32", "rajax as_2d bf16", "torch eager f32"} <= set(train["contenders"])
    assert train["recompilations_during_timing"] == 0
    # XLA's FLOP count of the real stage-1 step against the architecture's count of the forward
    # plus the top blocks' backward: a backward through the frozen trunk would double it. (At
    # 8 x 32 x 32 XLA counts fewer FLOPs than the architecture: most taps of the late 3x3x3
    # kernels fall on padding there.)
    xla_flops = train["contenders"]["rajax plain f32"]["xla_cost_analysis_flops_per_clip"]
    assert 0.5 * train["flops_per_clip"] < xla_flops < 1.25 * train["flops_per_clip"]

    memory = results["memory"]["variants"]["plain f32"]
    assert memory["xla_planned_peak_bytes"] > memory["argument_size_in_bytes"] > 0

    # The table printed without --quiet, from the same results: every contender, fastest first.
    from bench.report import format_section, report

    table = report(results)
    assert "Forward (features)" in table and "Stage-1 training step" in table and "XLA-planned" in table
    for section in (results["forward"], results["train"]):
        contenders = section["contenders"]
        rows = format_section(section, "title", {}).splitlines()
        assert rows[2].split()[:3] == ["contender", "median", "s"] and rows[2].endswith("vs torch")
        names = [row[:52].rstrip() for row in rows[3:3 + len(contenders)]]
        assert names == sorted(contenders, key=lambda n: contenders[n]["median_s"])


def test_stage1_model_reuses_the_loaded_checkpoint_and_equals_finetune_model(bench_package):
    """The benchmark's stage 1 takes the Kinetics-400 variables it has already loaded instead
    of reading the checkpoint again; the result must be what rajax train's finetune_model builds."""
    from bench.common import FINE_TUNED_CLASSES
    from bench.train import Stage1
    from flax import traverse_util

    import rajax
    from rajax.train import backbone
    from rajax.train.config import load_config

    _, kinetics = rajax.load_i3d()
    _, model, variables = Stage1(kinetics).base
    expected_model, expected = backbone.finetune_model(load_config("base"), FINE_TUNED_CLASSES, seed=1)

    assert model == expected_model
    assert model.batch_norm_train_blocks == ("Logits", "Mixed_4f", "Mixed_5b", "Mixed_5c")
    got = traverse_util.flatten_dict(variables, sep="/")
    want = traverse_util.flatten_dict(expected, sep="/")
    assert got.keys() == want.keys()
    for path, value in want.items():
        assert got[path].dtype == value.dtype and np.array_equal(got[path], value), path
    assert got["params/Logits/Conv3d_0c_1x1/kernel"].shape[-1] == FINE_TUNED_CLASSES
