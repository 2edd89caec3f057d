"""One accelerator check: rajax on whatever JAX and torch see, in at most 8 minutes on one GPU.

    pip install -c constraints.txt ".[detect,cuda13]"              # JAX for NVIDIA GPUs, torch, the detector
    python tools/device_check.py --output device_check/            # full: the paper's clip, 8 minutes
    python tools/device_check.py --smallest --output /tmp/check    # tiny inputs: under 2 minutes on a CPU

Records ``rajax info``; the I3D forward at the paper's clip (64 timesteps x 8 frames at 224) and the
largest batch that fits, float32 and bfloat16, against the PyTorch I3D in its fastest modes on the
same device; a stage-1 training step; an 11-region extraction of one Breakfast-format video; the
input pipeline's videos per second with 1, 4 and all decoder processes against what the device
consumes; peak device memory. Writes DIR/device_check.json and DIR/device_check.md (docs/speed.md,
"Accelerator check", says what each figure means). How: tools/bench/device_check.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Runs as a script: make the checkout importable even where the editable install is stale
# (tools/, this script's folder, holding the bench package, is on sys.path already).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# JAX and PyTorch run in separate processes, but neither should hold memory it does not use.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as tools/benchmark.py: PyTorch's threads do not spin

# torch before anything that imports TensorFlow (rajax.data does).
import torch  # noqa: E402,F401
from bench.device_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
