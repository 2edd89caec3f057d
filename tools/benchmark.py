"""Speed and memory of rajax's I3D against an independent PyTorch I3D, in one run, on one input.

    python tools/benchmark.py            # full mode (make bench); minutes to an hour on a CPU
    python tools/benchmark.py --quick    # small inputs, about 2 minutes on 2 CPU cores
    python tools/benchmark.py --help     # sizes, repeats, what to run

What it measures and how: the package tools/bench/ (its __init__ describes the sections and
lists its modules). This script sets up the process and runs bench.cli.main.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Runs as a script: make the checkout importable even where the editable install is stale
# (tools/, this script's folder, holding the bench package, is on sys.path already).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
# On a GPU, JAX and PyTorch share the card: no JAX preallocation of 75% of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads spin-wait between parallel regions by default; on a CPU shared with
# JAX's own thread pool (and, here, with other processes) that spinning starves whichever runs
# next, PyTorch itself included: 2-4x slower and erratic PyTorch timings on 2 loaded cores.
# Passive waiting is the fair setting for the peer. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# torch before anything that imports TensorFlow (rajax.data.regions does); bench's modules
# import torch first too.
import torch  # noqa: F401
from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
