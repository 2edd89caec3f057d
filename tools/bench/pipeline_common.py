"""What tools/benchmark_pipeline.py measures, and what its modules share.

The host only decodes (``rajax.data.pipeline``): it hands the device each video's sampled frames as
uint8 squares on a fixed canvas plus integer region boxes; cropping, resizing and scaling run in
the compiled step (``rajax.data.crops``). So the host's work per video is decoding, and this
benchmark measures how close the pipeline gets to the cost of decoding alone.

Inputs (each read from its file and from TFDS JPEG frames, a ``video_folder`` build made here):

- ``breakfast``: a Breakfast-format video generated here (MPEG-4, 320x240, 15 fps, 2 minutes =
  1800 frames; moving textured background, moving discs and per-pixel noise, about as hard to
  compress as a real kitchen video), cached in ``--cache-dir``;
- ``video``: ``--video PATH`` (default: the shared dancer video, 1571 frames of 518x496).

Figures, each in a fresh worker process (``os.sched_setaffinity`` before TensorFlow starts):

- pipelines: ``training_dataset`` (one 512-frame clip per video, batches of ``--batch``) and
  ``evaluation_dataset`` (the 11-region extraction element: the same 512 frames, 11 boxes), over
  ``--videos`` videos (distinct symlinks, so every video is probed as in a first epoch; TFDS: the
  example repeated), run to completion with ``as_numpy_iterator`` and no model: host CPU seconds
  (``resource.getrusage(RUSAGE_SELF)`` user + system, all threads of the process, plus the same
  figures of its decoder processes, ``rajax.data.decoders``, which decode the video files) and
  wall seconds per video. Dataset construction (tracing) is outside the timing; the first elements'
  start-up is inside it.
- core scaling: the same pipelines pinned to 1 core and to 2 cores (``--cores``); throughput is
  videos per wall second, the speed-up is the ratio. The host CPU figures are those of the run on
  the most cores.
- decode floors, one thread (pinned to one core, PyAV ``thread_count=1``, ``map_fn`` with
  ``parallel_iterations=1``), of the same sample (T x L uniform frames), host CPU seconds:
  ``pyav_decode`` decodes every frame up to the last sampled one and converts none (a lower bound
  no pipeline reaches: it must hand over pixels); ``pyav_decode_rgb_own_size`` also converts the
  sampled frames to RGB at the video's size and keeps them; ``pyav_decode_rgb_canvas_size``
  instead scales them to the canvas size in the decoder's pixel format (area) and then converts
  (the same as the former when the square fits the canvas, e.g. Breakfast's 240); the FILE FLOOR
  (``pyav_floor``) is the cheaper of these two: what any pipeline must pay to hold the sampled
  frames as RGB at the size it hands over or larger. ``tf_decode_jpeg`` (the TFDS FLOOR) decodes
  the sampled stored JPEG frames with ``tf.io.decode_jpeg``. For the record, not floors:
  ``pyav_decode_rgb_as_rajax`` (scaled while converting to RGB, as ``rajax.data.video`` does),
  ``rajax_loader`` (``load_file_video``: a decoder process's work per video, without tf.data),
  ``probe`` (``video.probe`` of an unseen path) and ``tfds_read`` (reading and parsing one stored
  example: every frame's JPEG bytes).
- accelerator budget: device seconds per training clip and per extraction video on an H100, an
  H200 and a TPU v5e at ``--peak-fraction`` of their published dense peaks, from the FLOP count of
  the network (``rajax.reference.architecture``: ``train_step_macs`` for a stage-1 step, 1.13x
  the forward pass, XLA's cost analysis 1.12x; ``forward_macs`` x 11 regions for extraction) plus
  the device-side crops (float32 matrix products at full precision, counted at the float32 peak),
  and how many host cores at the measured host cost keep each accelerator busy.
- ``training``: ``rajax train`` stage 1 (the real tf.data pipeline and trainer; Kinetics-400 I3D,
  the ``--video`` input read ``--train-videos`` times, one random region per video) for one epoch:
  the share of the time the devices sat idle waiting for the next step (``device_idle_fraction``
  in ``metrics.jsonl``), the share the host waited for a batch, seconds per step.

Every figure is the median over ``--repeats`` rounds (1-core and 2-core workers alternate). Writes
every figure to ``--json``; the top-level keys ``host_cpu_s_per_training_clip``,
``host_cpu_s_per_extraction_video`` and ``decode_floor_cpu_s`` are the ``--video`` input read
from its file.

Modules (the pipeline benchmark's, beside tools/benchmark.py's in this package):

* ``pipeline_common``: this description, paths, the pipelines' names, CPU-time helpers;
* ``pipeline_inputs``: the generated Breakfast-format video, each input's TFDS build and symlinks;
* ``pipeline_worker``: one worker process's measurements on a fixed set of cores (pipelines and
  decode floors), and running such a process;
* ``pipeline_results``: the workers' runs aggregated, the accelerator budget, the training section;
* ``pipeline_report``: the table printed at the end;
* ``pipeline_cli``: options and ``main``.

None of them imports torch or TensorFlow at module level: a worker pins its cores
(``os.sched_setaffinity``) before TensorFlow sizes its thread pools.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = """Host CPU cost of the input pipeline per training clip and per extraction video, against the
decode floor of the same input, its scaling from 1 to 2 cores, and the accelerator budget."""
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "dancer" / "dancer.avi"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rajax" / "benchmark_pipeline"
# The entry point the worker processes run.
PIPELINE_SCRIPT = ROOT / "tools" / "benchmark_pipeline.py"
PIPELINES = ("training from file", "extraction from file", "training from TFDS", "extraction from TFDS")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def usage() -> dict:
    """This process's own usage plus that of its decoder processes (which decode the video files;
    ``getrusage`` of this process does not count them, they report their own)."""
    from rajax.data import decoders

    u, workers = resource.getrusage(resource.RUSAGE_SELF), decoders.shared_usage()
    return {"user_s": u.ru_utime + workers["user_s"], "system_s": u.ru_stime + workers["system_s"],
            "minor_faults": u.ru_minflt + workers["minor_faults"],
            "context_switches": u.ru_nvcsw + u.ru_nivcsw + workers["context_switches"]}


def measure(function):
    """``(result, host CPU s, wall s)`` of one call."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = function()
    return result, cpu_seconds() - cpu, time.perf_counter() - wall


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
