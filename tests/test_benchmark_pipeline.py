"""tools/benchmark_pipeline.py --quick runs end to end, and every figure it writes is what its
definition says: the per-video figures divide the totals by the videos, the floors and ratios are
taken from the runs they name, the top-level figures are the ``--video`` input's file figures, the
accelerator budget follows from the FLOP counts. (Its timings are its output; no target is asserted.)"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rajax.data import video
from rajax.data.regions import REGION_NAMES
from rajax.reference.architecture import forward_macs, train_step_macs

PROJECT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT / "tools/benchmark_pipeline.py"
PIPELINES = ("training from file", "extraction from file", "training from TFDS", "extraction from TFDS")
# --quick's settings (tools/bench/pipeline_cli.py)
TIMESTEPS, TIMESTEP_LENGTH, SIZE, FRAME_SIDE, BREAKFAST_FRAMES, REPEATS = 4, 2, 32, 64, 40, 1


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pipeline")
    clip = video.write_video(tmp_path / "given.avi", np.random.default_rng(0).integers(
        0, 255, (24, 48, 64, 3), dtype=np.uint8), fps=15)
    result_file = tmp_path / "pipeline.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--skip-training",
               "--video", str(clip), "--cache-dir", str(tmp_path / "cache"), "--json", str(result_file)]
    env = dict(os.environ, XLA_FLAGS="", TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return clip, json.loads(result_file.read_text()), completed.stdout


def test_the_top_level_figures_are_the_video_inputs_file_figures(quick_run):
    clip, results, _ = quick_run
    given = results["inputs"]["video"]
    assert results["video_input"] == "video" and set(results["inputs"]) == {"breakfast", "video"}
    assert (given["path"], given["bytes"], given["num_frames"], given["size"], given["fps"]) == (
        str(clip.resolve()), clip.stat().st_size, 24, "64x48", 15)
    breakfast = results["inputs"]["breakfast"]
    assert (breakfast["num_frames"], breakfast["size"], breakfast["fps"]) == (BREAKFAST_FRAMES, "320x240", 15)
    pipes = given["pipelines"]
    assert results["host_cpu_s_per_training_clip"] == pipes["training from file"]["host_cpu_s"]
    assert results["host_cpu_s_per_extraction_video"] == pipes["extraction from file"]["host_cpu_s"]
    assert results["decode_floor_cpu_s"] == given["floors"]["pyav_floor"]["cpu_s"]
    assert results["training_clip_over_floor"] == pipes["training from file"]["ratio_to_floor"]
    assert results["extraction_video_over_floor"] == pipes["extraction from file"]["ratio_to_floor"]
    assert results["settings"]["quick"] and "training" not in results


def test_floors_and_pipeline_figures_follow_their_definitions(quick_run):
    _, results, _ = quick_run
    cores = results["settings"]["cores"]
    least, most = min(cores), max(cores)
    for name, measured in results["inputs"].items():
        floors = measured["floors"]
        sample = floors["sample"]
        assert sample["frames"] == TIMESTEPS * TIMESTEP_LENGTH
        assert sample["decoded_frames"] == sample["last_index"] + 1 <= measured["num_frames"]
        assert 0 < sample["jpeg_frames_decoded"] <= sample["frames"]
        width, height = (int(side) for side in measured["size"].split("x"))
        canvas_height, canvas_width = video.scaled_size(height, width, FRAME_SIDE)
        assert sample["canvas_size"] == f"{canvas_width}x{canvas_height}"
        # The file floor is the cheaper of the two conversions a pipeline could do.
        candidates = (floors["pyav_decode_rgb_own_size"], floors["pyav_decode_rgb_canvas_size"])
        assert floors["pyav_floor"] == min(candidates, key=lambda entry: entry["cpu_s"])
        assert all(f["cpu_s"] > 0 and f["wall_s"] > 0 for key, f in floors.items() if key != "sample")

        assert tuple(measured["pipelines"]) == PIPELINES
        for pipe, p in measured["pipelines"].items():
            floor = "tf_decode_jpeg" if "TFDS" in pipe else "pyav_floor"
            assert p["floor"] == floor and p["floor_cpu_s"] == floors[floor]["cpu_s"], (name, pipe)
            assert p["host_cpu_s"] == p[f"{most}_cores"]["host_cpu_s_per_video"]
            assert p["ratio_to_floor"] == pytest.approx(p["host_cpu_s"] / p["floor_cpu_s"])
            # No pipeline beats decoding its own frames by much (the floor runs in one thread).
            assert p["ratio_to_floor"] >= 0.5, (name, pipe, p)
            for count in cores:
                run = p[f"{count}_cores"]
                assert run["videos_per_s"] == pytest.approx(1 / run["wall_s_per_video"])
                assert len(run["runs_wall_s_per_video"]) == REPEATS
                assert run["wall_s_per_video"] == pytest.approx(statistics.median(run["runs_wall_s_per_video"]))
                assert 0 <= run["system_s_per_video"] <= run["host_cpu_s_per_video"]
                assert 0 < run["first_batch_s"] <= run["wall_s_per_video"] * results["settings"]["videos"]
                assert p[f"ratio_to_floor_{count}_cores"] == pytest.approx(
                    run["host_cpu_s_per_video"] / p["floor_cpu_s"])
            if len(cores) > 1:
                low, high = p[f"{least}_cores"], p[f"{most}_cores"]
                assert p[f"speedup_{least}_to_{most}_cores_whole_run"] == pytest.approx(
                    low["wall_s_per_video"] / high["wall_s_per_video"])


def test_the_accelerator_budget_follows_from_the_flop_counts(quick_run):
    _, results, _ = quick_run
    budget = results["accelerator_budget"]
    frames = TIMESTEPS * TIMESTEP_LENGTH
    step, forward = 2 * train_step_macs(frames, SIZE, SIZE), 2 * forward_macs(frames, SIZE, SIZE)
    crop = 2 * frames * 3 * SIZE * FRAME_SIDE * (FRAME_SIDE + SIZE)
    regions = len(REGION_NAMES)
    assert budget["flops"] == pytest.approx({
        "forward_per_region": forward, "stage1_step_per_clip": step, "stage1_step_over_forward": step / forward,
        "crop_per_region": crop, "training_clip": step + crop, "extraction_video": regions * (forward + crop)})
    fraction = budget["peak_fraction"]
    assert set(budget["accelerators"]) == {"H100 SXM", "H200 SXM", "TPU v5e"}
    for name, entry in budget["accelerators"].items():
        bf16, fp32 = entry["peak_tflops_bf16"] * 1e12 * fraction, entry["peak_tflops_fp32"] * 1e12 * fraction
        train_s, extract_s = step / bf16 + crop / fp32, regions * (forward / bf16 + crop / fp32)
        assert entry["device_s_per_training_clip"] == pytest.approx(train_s)
        assert entry["device_s_per_extraction_video"] == pytest.approx(extract_s)
        for input_name, measured in results["inputs"].items():
            for pipe, p in measured["pipelines"].items():
                device_s = train_s if pipe.startswith("training") else extract_s
                assert entry["host_cores_to_keep_busy"][input_name][pipe] == pytest.approx(p["host_cpu_s"] / device_s)


def test_the_printed_table_has_a_row_per_pipeline_and_input(quick_run):
    _, results, stdout = quick_run
    for name, measured in results["inputs"].items():
        assert f"{name}: {measured['path']} ({measured['num_frames']} frames {measured['size']}" in stdout
    for pipe in PIPELINES:
        rows = [line for line in stdout.splitlines() if line.startswith(f"| {pipe} | ")]
        assert len(rows) == 2  # one per input
    for accelerator in results["accelerator_budget"]["accelerators"]:
        assert any(line.startswith(f"| {accelerator} | ") for line in stdout.splitlines())
    assert f"--video from its file: {results['host_cpu_s_per_training_clip']:.3f} host CPU s" in stdout


def test_the_entry_script_keeps_every_option():
    help_text = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                               timeout=120, check=True).stdout
    for option in ("--video", "--json", "--quick", "--cache-dir", "--repeats", "--floor-repeats", "--videos",
                   "--batch", "--cores", "--breakfast-frames", "--timesteps", "--timestep-length", "--frame-side",
                   "--size", "--peak-fraction", "--skip-training", "--train-config", "--train-videos",
                   "--train-log-every", "--train-batch", "--train-timesteps"):
        assert option in help_text, option
    assert help_text.split("\n\n")[1].startswith("Host CPU cost of the input pipeline per training clip")
