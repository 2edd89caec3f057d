"""Host CPU cost of the input pipeline per training clip and per extraction video, against the
decode floor of the same input, its scaling from 1 to 2 cores, and the accelerator budget.

    .venv/bin/python tools/benchmark_pipeline.py --json benchmark_pipeline.json
    .venv/bin/python tools/benchmark_pipeline.py --quick --json /tmp/quick.json   # a smoke run
    .venv/bin/python tools/benchmark_pipeline.py --help                           # every option

What it measures and how: tools/bench/pipeline_common.py (the package tools/bench/ holds its
modules, pipeline_*.py, beside tools/benchmark.py's). This script sets up the process and runs
bench.pipeline_cli.main, in the main process and in each worker process (--worker).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Runs as a script: make the checkout importable even where the editable install is stale
# (tools/, this script's folder, holding the bench package, is on sys.path already).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.pipeline_cli import main  # noqa: E402  (imports neither torch nor TensorFlow)

if __name__ == "__main__":
    sys.exit(main())
