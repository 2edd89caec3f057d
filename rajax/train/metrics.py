"""Training metrics to a JSON-lines file and to TensorBoard; the loud stop on a NaN or Inf.

``metrics.jsonl`` in the run directory gets one JSON object per logged point:
``{"step": 120, "split": "train", "epoch": 3, "loss": ..., "accuracy": ..., "learning_rate": ...,
"steps_per_second": ...}`` (``split`` is ``train``, ``validation`` or ``test``). TensorBoard event
files go to ``tensorboard/`` (``tag = split/name``). Only process 0 writes.

A resumed run first drops the records of steps after the checkpoint it resumes from, so that the
file reads like the log of one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from rajax.errors import RajaxError
from rajax.files import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class TrainingDiverged(RajaxError):
    """The loss (or the gradient norm) became NaN or infinite."""


def check_finite(step: int, metrics: dict[str, float], last_good: str) -> None:
    """Raises TrainingDiverged naming the step and the last good checkpoint if a value is not finite."""
    bad = {name: metrics[name] for name in ("loss", "grad_norm")
           if name in metrics and not math.isfinite(metrics[name])}
    if bad:
        values = ", ".join(f"{name} = {value}" for name, value in bad.items())
        raise TrainingDiverged(
            f"training stopped at step {step}: {values}. Nothing after the last good checkpoint "
            f"was saved ({last_good}); lower the learning rate or check the input data, then rerun "
            "to resume from that checkpoint.")


class MetricWriter:
    """Appends metrics to ``metrics.jsonl`` and TensorBoard; a no-op on processes other than 0."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tensorboard = None

    def truncate_after(self, step: int) -> None:
        """Drops records with a step beyond ``step`` (a resumed run redoes those steps)."""
        path = self.run_dir / METRICS_FILE
        if not self.enabled or not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError):
                continue  # a line cut by a kill
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, step: int, split: str, metrics: dict[str, float], **extra) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, **extra,
                  **{name: _plain(value) for name, value in metrics.items()}}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / METRICS_FILE, "a") as file:
            file.write(json.dumps(record) + "\n")
        import tensorflow as tf

        writer = self._writer()
        with writer.as_default():
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    # tf.summary.scalar lives in the tensorboard package, which tensorflow-cpu
                    # does not pull in; this is what it writes: a float32 scalar tagged for
                    # TensorBoard's scalars plugin.
                    tf.summary.write(f"{split}/{name}", tf.constant(float(value), tf.float32),
                                     step=int(step), metadata=_scalar_metadata())

    def _writer(self):
        if self._tensorboard is None:
            import tensorflow as tf

            # Flushed every few seconds and on close, not after every record: a small head logs
            # hundreds of times a minute, and each flush is a file write and fsync.
            self._tensorboard = tf.summary.create_file_writer(str(self.run_dir / TENSORBOARD_DIR),
                                                              flush_millis=5000)
        return self._tensorboard

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The records of ``metrics.jsonl``, in order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
