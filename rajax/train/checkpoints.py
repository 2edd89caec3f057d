"""Orbax checkpoints of a training run: the latest ones (to resume) and the best on validation.

A run directory holds two Orbax ``CheckpointManager`` folders:

- ``checkpoints/<step>/``: saved every ``config.checkpoint.every_steps`` steps, at the end of every
  ``config.checkpoint.every_epochs``-th epoch (0: none) and after the last step (``trainer.fit``);
  the newest ``config.checkpoint.keep`` are kept. A killed run resumes from the newest.
- ``best/<step>/``: the state with the best validation accuracy so far (ties: lower validation
  loss); one is kept. Evaluation and later stages read this one.

Each step folder has two items: ``state`` (the ``TrainState`` as a tree of arrays) and ``meta``
(JSON: epoch, position in the epoch, best validation result so far, the validation metrics).
Orbax writes a step into a temporary folder and renames it when complete, so a kill during a save
leaves the previous checkpoints intact and the half-written one is ignored (and cleaned up).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from rajax.errors import RajaxError

LATEST_DIR = "checkpoints"
BEST_DIR = "best"
# What a checkpoint's optimizer state holds, in its meta as "layout": 2 = the trainable parameters'
# state only (freezing in one place, rajax.train.steps). Checkpoints without the field are layout 1
# (the whole tree, frozen leaves partitioned away): their parameters load, a run cannot resume.
CHECKPOINT_LAYOUT = 2


def make_manager(directory: str | os.PathLike, keep: int) -> ocp.CheckpointManager:
    """A manager keeping the newest ``keep`` checkpoints of ``directory`` (synchronous saves).

    Saves are synchronous: a step returns once its checkpoint is on disk, which is what makes "the
    last good checkpoint" well defined when a run stops on a NaN or is killed.
    """
    options = ocp.CheckpointManagerOptions(
        preservation_policy=checkpoint_managers.LatestN(n=keep),
        enable_async_checkpointing=False,
        create=True,
        cleanup_tmp_directories=True,  # what a killed save left behind
    )
    return ocp.CheckpointManager(Path(directory).resolve(), options=options, item_names=("state", "meta"))


def run_managers(run_dir: str | os.PathLike, keep: int) -> tuple[ocp.CheckpointManager, ocp.CheckpointManager]:
    """(latest, best) managers of a run directory."""
    run_dir = Path(run_dir)
    return make_manager(run_dir / LATEST_DIR, keep), make_manager(run_dir / BEST_DIR, 1)


def state_to_tree(state) -> dict:
    """A TrainState as nested dicts of host arrays (what Orbax stores)."""
    return jax.device_get(flax.serialization.to_state_dict(state))


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict[str, Any]) -> bool:
    """Saves (host) ``state`` and ``meta`` as ``step``; False if that step is already there.

    A step already saved is never overwritten: a resumed run that redoes the steps after its last
    checkpoint reaches the very same state, so the existing one is kept as is.
    """
    if step in manager.all_steps():
        return False
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state_to_tree(state)),
            meta=ocp.args.JsonSave({**meta, "layout": CHECKPOINT_LAYOUT}),
        ),
        force=True,
    )
    manager.wait_until_finished()
    return True


def restore(manager: ocp.CheckpointManager, target_state, step: int | None = None):
    """``(state, meta)`` of ``step`` (default: the newest that restores), shaped like
    ``target_state``; None if there is no checkpoint.

    ``target_state`` is a TrainState of host arrays (or ShapeDtypeStructs) with the structure to
    fill; arrays come back as numpy on the host. Without ``step``, a newest checkpoint that cannot
    be read (files damaged by a crash or a full disk) is reported and the one before it is tried,
    so a run resumes from the newest good state. When none restores, the error names each step and
    why: then the cause is more likely the model (another config) than the files.
    """
    candidates = sorted(manager.all_steps(), reverse=True) if step is None else [step]
    if not candidates:
        return None
    template = jax.tree.map(_as_restore_template, state_to_tree(target_state))
    failures = []
    for candidate in candidates:
        try:
            restored = manager.restore(
                candidate,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as error:  # noqa: BLE001 - orbax raises many kinds; all mean the same here
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            failures.append(f"{candidate} ({reason[:300]})")
            continue
        if failures:
            aside = _set_aside(manager, [int(f.split(" ", 1)[0]) for f in failures])
            print(f"{manager.directory}: checkpoint(s) {', '.join(failures)} could not be restored and "
                  f"were moved to {aside}; using step {candidate}, the newest that restores.", file=sys.stderr)
        state = flax.serialization.from_state_dict(target_state, restored["state"])
        state = jax.tree.map(np.asarray, state)
        return state, dict(restored["meta"])
    if all(_stored_layout(manager, candidate) < CHECKPOINT_LAYOUT for candidate in candidates):
        raise RajaxError(
            f"{manager.directory}: written by an older rajax, whose checkpoints held the optimizer state of "
            "every parameter (frozen ones included); a run cannot resume from it. Its parameters still load "
            "(rajax evaluate, rajax predict); to train on, start the stage in a new work directory")
    raise RajaxError(
        f"{manager.directory}: no checkpoint restores into this model (step {'; step '.join(failures)}); "
        "if the files are intact, this work directory was trained with another config"
    )


def _stored_layout(manager: ocp.CheckpointManager, step: int) -> int:
    """The ``layout`` a checkpoint's meta records (1 when it has none; the current one when the meta
    cannot be read, so that damaged files are not blamed on the layout)."""
    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception:  # noqa: BLE001 - orbax raises many kinds
        return CHECKPOINT_LAYOUT
    return int(dict(meta).get("layout", 1))


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> Path:
    """Moves unreadable step folders out of the manager's way (kept for inspection, never deleted),
    so that the resumed run can save those steps again."""
    directory = Path(manager.directory)
    aside = directory.parent / f"{directory.name}_unreadable"
    if jax.process_index() != 0:  # one process moves the shared folders; the others only read
        return aside
    aside.mkdir(exist_ok=True)
    for step in steps:
        source = directory / str(step)
        if source.exists():
            target = aside / str(step)
            suffix = 1
            while target.exists():
                target, suffix = aside / f"{step}.{suffix}", suffix + 1
            source.rename(target)
    manager.reload()
    return aside


def _as_restore_template(x):
    x = np.asarray(x) if not isinstance(x, jax.ShapeDtypeStruct) else x
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def saved_steps(directory: str | os.PathLike) -> list[int]:
    """Steps saved completely under ``directory`` (Orbax renames a step folder to its bare number
    once it is complete), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def latest_step(run_dir: str | os.PathLike, which: str = BEST_DIR) -> int | None:
    """Newest step under ``run_dir/which`` (``best`` or ``checkpoints``), None if there is none."""
    steps = saved_steps(Path(run_dir) / which)
    return steps[-1] if steps else None


def restore_tree(directory: str | os.PathLike, step: int | None = None) -> dict:
    """The stored state of ``directory`` (a ``checkpoints`` or ``best`` folder) as nested dicts.

    For readers that only need some arrays (the params of a head, of a backbone) and do not
    rebuild the optimizer the state was trained with.
    """
    steps = saved_steps(directory)
    step = (steps[-1] if steps else None) if step is None else step
    if step is None or step not in steps:
        raise RajaxError(f"{directory}: no checkpoint" + (f" for step {step}" if step is not None else ""))
    restored = ocp.StandardCheckpointer().restore(Path(directory).resolve() / str(step) / "state")
    return jax.device_get(restored)
