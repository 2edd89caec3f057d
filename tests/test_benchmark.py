"""tools/benchmark.py end to end on tiny inputs: it runs, every contender computes the same
features as the PyTorch reference, and the timed steps never recompile. (Its timings are its
output, not something a test asserts.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_benchmark_runs_and_every_contender_computes_the_same_features(tmp_path):
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
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(result_file.read_text())

    forward = results["forward"]["contenders"]
    assert {"rajax plain float32", "rajax as_2d+fuse_1x1+fold_bn float32", "rajax as_2d bfloat16",
            "torch eager", "torch eager channels_last_3d bf16-autocast"} <= set(forward)
    for name, entry in forward.items():
        tolerance = 1e-5 if entry["dtype"] == "float32" else 5e-2
        assert entry["max_rel_diff_vs_torch_f32"] < tolerance, name
        assert entry["median_s"] > 0
    assert results["forward"]["recompilations_during_timing"] == 0

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
