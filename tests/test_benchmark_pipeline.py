"""tools/benchmark_pipeline.py --quick runs end to end and writes the figures other tools read.
(Its timings are its output; the test checks they exist and are sane, not that targets are met.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from rajax.data import video

PROJECT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_figure(tmp_path):
    clip = video.write_video(tmp_path / "given.avi", np.random.default_rng(0).integers(
        0, 255, (24, 48, 64, 3), dtype=np.uint8), fps=15)
    result_file = tmp_path / "pipeline.json"
    command = [sys.executable, str(PROJECT / "tools/benchmark_pipeline.py"), "--quick", "--skip-training",
               "--video", str(clip), "--cache-dir", str(tmp_path / "cache"), "--json", str(result_file)]
    env = dict(os.environ, XLA_FLAGS="", TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(result_file.read_text())

    for key in ("host_cpu_s_per_training_clip", "host_cpu_s_per_extraction_video", "decode_floor_cpu_s"):
        assert results[key] > 0, key
    assert results["video_input"] == "video" and results["inputs"]["video"]["path"] == str(clip.resolve())
    assert set(results["inputs"]) == {"breakfast", "video"}
    assert results["inputs"]["breakfast"]["size"] == "320x240"
    for name, measured in results["inputs"].items():
        for pipe, p in measured["pipelines"].items():
            # No pipeline beats decoding its own frames by much (the floor runs in one thread).
            assert p["ratio_to_floor"] >= 0.5, (name, pipe, p)
            assert p["1_cores"]["videos_per_s"] > 0 and p["2_cores"]["videos_per_s"] > 0
            assert p["speedup_1_to_2_cores"] > 0
        assert all(f["cpu_s"] > 0 for key, f in measured["floors"].items() if key != "sample")
    assert results["training_clip_over_floor"] == results["inputs"]["video"]["pipelines"][
        "training from file"]["ratio_to_floor"]
    for accelerator in ("H100 SXM", "H200 SXM", "TPU v5e"):
        budget = results["accelerator_budget"]["accelerators"][accelerator]
        assert budget["device_s_per_training_clip"] > 0 and budget["device_s_per_extraction_video"] > 0
        assert budget["host_cores_to_keep_busy"]["video"]["training from file"] > 0
