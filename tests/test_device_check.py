"""tools/device_check.py --smallest on this machine (its CPU, as the tests' JAX runs there): every part
runs and ends, every figure the accelerator check will give exists and is what its definition
says, the frameworks compute the same features, and the JSON and the table are written. (Its
timings are its output; what the check takes on a GPU is in docs/speed.md, not asserted here.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import rajax

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smallest_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    env = dict(os.environ, XLA_FLAGS="", TF_CPP_MIN_LOG_LEVEL="2")  # one device, as on a 1-GPU machine
    # A larger budget than the default 100 s: under `make test` another test file runs beside this one
    # on 2 cores, and a measurement that no longer fits its part's budget would be skipped.
    command = [sys.executable, str(PROJECT / "tools/device_check.py"), "--smallest", "--output", str(out),
               "--cache-dir", str(out / "cache"), "--budget-s", "300"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, json.loads((out / "device_check.json").read_text()), completed.stdout


@pytest.mark.slow
def test_every_part_runs_within_its_budget_and_records_rajax_info(smallest_check):
    out, results, _ = smallest_check
    check = results["check"]
    assert check["mode"] == "smallest" and check["parts"] == ["info", "jax", "torch", "pipeline"]
    assert check["budget_s"] == 300
    for name in ("jax", "torch", "pipeline"):
        process = results[name]["process"]
        assert process["ended"] == "exited", process
        assert process["wall_s"] <= process["limit_s"] + 5 and results[name]["finished"] is True
    info = results["info"]
    assert info["status"] == "ok" and info["packages"]["rajax"] == rajax.__version__
    assert info["jax"]["backend"] == jax.default_backend()
    assert results["jax"]["machine"]["backend"] == jax.default_backend()


@pytest.mark.slow
def test_forward_at_the_largest_batch_both_frameworks_same_features(smallest_check):
    _, results, _ = smallest_check
    forward = results["jax"]["forward"]
    assert forward["status"] == "ok"
    batch = forward["largest_batch"]
    assert batch == results["check"]["sizes"]["max_batch"]  # the CPU keeps no memory statistics: the cap
    rajax_contenders = forward["contenders"]
    torch_contenders = results["torch"]["forward"]["contenders"]
    assert {c["dtype"] for c in rajax_contenders.values()} == {"float32", "bfloat16"}
    assert {"torch eager", "torch eager channels_last_3d", "torch eager channels_last_3d bf16-autocast"} <= set(
        torch_contenders)
    for name, c in {**rajax_contenders, **torch_contenders}.items():
        assert c["status"] == "ok", (name, c)
        assert c["batch"] == batch, name
        assert c["clips_per_s"] == pytest.approx(batch / c["median_s"]), name
        assert c["tflops"] == pytest.approx(forward["flops_per_clip"] * batch / c["median_s"] / 1e12)
        assert c["recompilations_during_timing"] == 0
    diffs = results["features_max_rel_diff"]
    assert diffs["rajax float32 vs torch float32"] < 1e-5
    assert diffs["rajax bfloat16 vs torch float32"] < 5e-2


@pytest.mark.slow
def test_training_step_extraction_and_pipeline_against_the_device(smallest_check):
    _, results, _ = smallest_check
    sizes = results["check"]["sizes"]
    train = results["jax"]["train"]
    steps = train["contenders"] | results["torch"]["train"]["contenders"]
    assert {"rajax as_2d f32", "torch eager channels_last_3d bf16-autocast"} <= set(steps)
    for name, c in steps.items():
        assert c["status"] == "ok", (name, c)
        assert c["clips_per_s"] == pytest.approx(sizes["train_batch"] / c["median_s"])
    assert train["contenders"]["rajax as_2d f32"]["xla_planned_peak_bytes"] > 0

    extraction = results["jax"]["extraction"]
    assert extraction["status"] == "ok" and extraction["regions"] == 11
    assert extraction["frames"] == sizes["timesteps"] * sizes["timestep_length"]
    shape = extraction["feature_shape"]
    assert shape[:2] == [1, 11] and shape[-1] == 1024
    assert extraction["seconds_per_video"] == pytest.approx(extraction["decode_s"] + extraction["features_s"])
    assert extraction["device_videos_per_s"] == pytest.approx(1 / extraction["features_s"])

    pipeline = results["pipeline"]
    counts = sorted({1, 4, pipeline["cores"]})
    against = results["pipeline_against_device"]
    assert against["training_clips_per_s"] == max(c["clips_per_s"] for c in train["contenders"].values())
    assert against["extraction_videos_per_s"] == extraction["device_videos_per_s"]
    for kind, device_rate in (("training", against["training_clips_per_s"]),
                              ("extraction", against["extraction_videos_per_s"])):
        for n in counts:
            entry = pipeline[f"{kind} {n} processes"]
            assert entry["status"] == "ok" and entry["videos_per_s"] > 0, (kind, n, entry)
            rate = entry["steady_videos_per_s"] or entry["videos_per_s"]
            assert against[f"{kind} {n} processes: pipeline over device"] == pytest.approx(rate / device_rate)


@pytest.mark.slow
def test_the_table_names_every_figure(smallest_check):
    out, results, stdout = smallest_check
    table = (out / "device_check.md").read_text()
    assert table in stdout
    for heading in ("## I3D forward", "## Stage-1 training step", "## 11-region extraction", "## Input pipeline",
                    "## Peak device memory", "## Parts"):
        assert heading in table
    for name in {**results["jax"]["forward"]["contenders"], **results["torch"]["forward"]["contenders"],
                 **results["jax"]["train"]["contenders"], **results["torch"]["train"]["contenders"]}:
        assert f"| {name} | " in table, name
    for n in sorted({1, 4, results["pipeline"]["cores"]}):
        assert f"{n} decoder process" in table
    assert f"JAX backend **{jax.default_backend()}**" in table


@pytest.mark.slow
def test_a_spent_budget_skips_measurements_and_says_so(tmp_path):
    """Half a second for the jax part alone (a part gets 1 s at least, counted from its launch:
    less than it takes to start): each measurement is recorded as skipped, not started, and the
    JSON and the table are written all the same."""
    env = dict(os.environ, XLA_FLAGS="", TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, str(PROJECT / "tools/device_check.py"), "--smallest", "--output", str(tmp_path),
               "--cache-dir", str(tmp_path / "cache"), "--parts", "jax", "--budget-s", "0.5"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((tmp_path / "device_check.json").read_text())
    assert results["jax"]["process"]["ended"] == "exited" and results["jax"]["finished"] is True
    for name in ("forward", "train", "extraction"):
        entry = results["jax"][name]
        assert entry["status"] == "skipped" and entry["reason"].endswith("s needed"), (name, entry)
    assert set(results) >= {"check", "jax", "features_max_rel_diff", "pipeline_against_device"}
    table = (tmp_path / "device_check.md").read_text()
    assert "| (no contender ran) |" in table and "rajax forward: skipped: " in table


@pytest.mark.slow
def test_a_part_over_its_limit_is_killed_and_recorded(tmp_path, monkeypatch):
    """A part still running at its limit (1 s: less than any part takes to start) is killed, and
    the check records how it ended and the end of its log."""
    monkeypatch.syspath_prepend(str(PROJECT / "tools"))
    from bench.device_check import SMALLEST, run_part_process

    spec = {"mode": "smallest", "smallest": True, "sizes": SMALLEST, "output_dir": str(tmp_path), "video": "",
            "min_step_s": 2.0, "budget_s": 100, "train_variants_gpu": [], "train_variants_cpu": []}
    results = run_part_process("jax", spec, 1, tmp_path)
    process = results["process"]
    assert process["ended"] == "killed after 1 s (over its budget)" and process["wall_s"] < 1 + 5
    assert "log_tail" in process and "finished" not in results


def test_what_a_part_measured_is_on_disk_as_soon_as_it_is_measured(tmp_path, monkeypatch):
    """A killed part keeps its measurements: each contender is written to the part's results file
    when it is set, under its section's "running" status, before the section ends."""
    monkeypatch.syspath_prepend(str(PROJECT / "tools"))
    from bench.device_parts import Live, Results

    results = Results(tmp_path / "part.json")
    contenders = Live(results, "forward")
    contenders["rajax plain float32"] = {"status": "ok", "median_s": 1.5}
    assert json.loads((tmp_path / "part.json").read_text()) == {
        "forward": {"status": "running", "contenders": {"rajax plain float32": {"status": "ok", "median_s": 1.5}}}}
    contenders["torch eager"] = {"status": "out of memory", "error": "CUDA out of memory"}
    written = json.loads((tmp_path / "part.json").read_text())["forward"]["contenders"]
    assert list(written) == ["rajax plain float32", "torch eager"]
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then renamed
