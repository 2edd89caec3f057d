"""The training loop shared by every stage: fine-tuning, head training, end-to-end.

``fit`` takes a ``Task`` (the stage's forward function and initial variables) and a ``Data``
(this host's batches) and runs epochs of pmapped ``train_step``:

- resumes from the newest checkpoint in ``RUN/checkpoints`` if there is one: the state, the
  position in the data (epoch, batches already seen) and the best validation result so far, so a
  killed run ends with the very parameters an uninterrupted run reaches;
- logs loss, accuracy, gradient norm, learning rate, steps per second and how long the devices
  waited (``device_idle_fraction``: share of device time idle because the next step came late;
  ``input_wait_fraction``: host time spent waiting for the input pipeline; see
  ``rajax.train.idle``) every ``log_every_steps`` (``metrics.jsonl`` and TensorBoard), with a
  progress bar on a terminal, plain lines in a log (``rajax.progress``);
- stops with ``TrainingDiverged`` on a NaN or infinite loss or gradient, before saving anything
  from that point on;
- at every epoch end (every ``eval_every_epochs``) evaluates the validation split and saves the
  state to ``RUN/best`` when the accuracy improves (ties: lower loss);
- saves ``RUN/checkpoints`` every ``checkpoint.every_steps`` steps, at the end of every
  ``checkpoint.every_epochs``-th epoch and after the last step;
- at the end evaluates the best checkpoint on the test split: ``RUN/eval/test.json`` and
  ``RUN/eval/test_confusion.png``.

``fit`` itself is a plain loop over the steps: ``Periods`` says after which steps each of these
actions is due, and ``_Run`` (the state being trained, its step and the metrics not yet logged)
carries them out. The batches arrive through ``rajax.data.ahead.Ahead``, a thread that prepares
them ahead of the steps, across epoch ends too.

Batches come from ``Data.train_batches(epoch, skip)``: this host's share of the epoch's global
batches, after the first ``skip`` (deterministic in the seed and the epoch, which is what makes a
resumed epoch see the batches the interrupted one would have).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rajax.data.ahead import Ahead
from rajax.errors import RajaxError
from rajax.models.losses import Loss, classification_loss
from rajax.train import checkpoints, evaluation, steps
from rajax.train.idle import DeviceIdleMeter, idle_fraction
from rajax.train.metrics import MetricWriter, check_finite

PyTree = Any
EVAL_DIR = "eval"


@dataclasses.dataclass(frozen=True)
class Task:
    """A stage's model as the steps see it: its forward function, its variables and its loss."""

    forward: steps.Forward
    params: PyTree
    batch_stats: PyTree
    loss: Loss = classification_loss


@dataclasses.dataclass(frozen=True)
class Data:
    """This host's data for one stage.

    ``train_batches(epoch, skip)`` yields the epoch's batches after the first ``skip``: dicts of
    numpy arrays with a leading per-host batch axis (``label``, ``mask`` and the model's input).
    ``eval_batches(split)`` yields padded batches of a split (mask 0 on padding); every host must
    yield the same number of batches. ``steps_per_epoch`` is the same on every host.
    """

    steps_per_epoch: int
    train_batches: Callable[[int, int], Iterable[dict]]
    eval_batches: Callable[[str], Iterable[dict]]
    region_names: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Evaluation


def gather_outputs(outputs: list[dict]) -> dict[str, np.ndarray]:
    """Concatenates per-batch eval outputs (all hosts) and drops the padding rows."""
    if not outputs:
        return {}
    merged = {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        merged = {key: np.asarray(multihost_utils.process_allgather(value, tiled=True))
                  for key, value in merged.items()}
    keep = merged["mask"].astype(bool)
    return {key: value[keep] for key, value in merged.items()}


def run_evaluation(eval_fn, replicated_state, batches: Iterable[dict]) -> dict[str, np.ndarray]:
    """Per-example outputs over all ``batches`` (every example once, padding dropped)."""
    outputs = []
    for batch in batches:
        device_out = jax.device_get(eval_fn(replicated_state, steps.shard(batch)))
        outputs.append({key: value.reshape((-1,) + value.shape[2:]) for key, value in device_out.items()})
    return gather_outputs(outputs)


def evaluate_split(eval_fn, replicated_state, data: Data, split: str, class_names) -> dict:
    report = evaluation.summarize(
        run_evaluation(eval_fn, replicated_state, data.eval_batches(split)), class_names, data.region_names)
    if report["num_examples"] == 0:  # an accuracy of 0 over nothing would pass for a result
        raise RajaxError(f"no usable videos in split {split!r}: every one was skipped as unreadable "
                         "(see the warnings above) or the split is empty")
    return report


# --------------------------------------------------------------------------------------------
# Training


def _is_better(report: dict, meta: dict) -> bool:
    best = meta.get("best_validation_accuracy")
    if best is None:
        return True
    if report["accuracy"] != best:
        return report["accuracy"] > best
    return report["loss"] < meta["best_validation_loss"]


def _take(batches: Iterable[dict], count: int, epoch: int) -> Iterator[dict]:
    """Exactly ``count`` batches of ``batches``; too few is an inconsistent pipeline."""
    seen = 0
    for batch in itertools.islice(batches, count):
        seen += 1
        yield batch
    if seen < count:
        raise RajaxError(f"the training data of epoch {epoch} ended after {seen} batches "
                         f"instead of {count}")


def _remaining_batches(data: Data, step: int, total_steps: int) -> Iterator[dict]:
    """The batches of every step from ``step`` on, epoch after epoch (resuming mid-epoch)."""
    while step < total_steps:
        epoch, skip = divmod(step, data.steps_per_epoch)
        for batch in _take(data.train_batches(epoch, skip), data.steps_per_epoch - skip, epoch):
            yield batch
            step += 1


def stage_steps(task: Task, stage_config, seed: int, total_steps: int, *, donate: bool = True):
    """A stage's ``(initial state, pmapped train step, pmapped eval step, parameter labels)``.

    The labels (TRAINABLE / FROZEN per parameter) come from the stage's regex rules, which must
    cover every parameter, and decide everything frozen (``rajax.train.steps``: what is
    differentiated, what the optimizer holds and updates); the optimizer and its schedule come from
    ``stage_config.optimizer``.
    """
    rules = steps.rules_from_config(stage_config)
    param_labels = steps.parameter_labels(task.params, rules)
    stats_labels = steps.batch_stats_labels(task.batch_stats, rules, stage_config.update_batch_stats)
    schedule = steps.learning_rate_schedule(stage_config.optimizer, total_steps)
    tx = steps.build_optimizer(stage_config.optimizer, schedule)
    state = steps.create_train_state(task.params, task.batch_stats, tx, seed, param_labels=param_labels)
    train_fn = steps.pmap_train_step(forward=task.forward, tx=tx, param_labels=param_labels,
                                     batch_stats_labels=stats_labels, schedule=schedule, donate=donate,
                                     loss=task.loss)
    return state, train_fn, steps.pmap_eval_step(forward=task.forward, loss=task.loss), param_labels


@dataclasses.dataclass(frozen=True)
class Periods:
    """When the periodic actions of ``fit`` are due, after ``step`` steps (counted from 1)."""

    steps_per_epoch: int
    total_steps: int
    log_every_steps: int
    eval_every_epochs: int
    checkpoint_every_steps: int
    checkpoint_every_epochs: int  # 0: at no epoch end

    @classmethod
    def of(cls, steps_per_epoch: int, stage_config, config) -> Periods:
        return cls(steps_per_epoch, steps_per_epoch * stage_config.num_epochs, config.log_every_steps,
                   stage_config.eval_every_epochs, config.checkpoint.every_steps,
                   config.checkpoint.every_epochs)

    def epoch_end(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0

    def log(self, step: int) -> bool:
        """Every ``log_every_steps`` steps and at every epoch's end."""
        return step % self.log_every_steps == 0 or self.epoch_end(step)

    def validate(self, step: int) -> bool:
        """At the end of every ``eval_every_epochs``-th epoch and of the last one."""
        epochs = step // self.steps_per_epoch
        return self.epoch_end(step) and (epochs % self.eval_every_epochs == 0 or step == self.total_steps)

    def checkpoint(self, step: int) -> bool:
        """Every ``checkpoint.every_steps`` steps and at the end of every
        ``checkpoint.every_epochs``-th epoch (``fit`` saves after the last step as well)."""
        every_epochs = self.checkpoint_every_epochs
        at_epoch = self.epoch_end(step) and bool(every_epochs) and (step // self.steps_per_epoch) % every_epochs == 0
        return step % self.checkpoint_every_steps == 0 or at_epoch


def fit(
    run_dir: str | Path,
    task: Task,
    data: Data,
    stage_config,
    config,
    *,
    class_names,
    progress: bool = True,
) -> tuple[dict, steps.TrainState]:
    """Trains one stage in ``run_dir``; returns (test report, best state) as ``final_test``.

    ``stage_config`` is the stage's section of ``config`` (``config.finetune``,
    ``config.train_head`` or ``config.end_to_end``); ``config`` provides the seed, the checkpoint
    and logging settings and the split names.
    """
    run_dir = Path(run_dir)
    is_main = jax.process_index() == 0
    steps_per_epoch = data.steps_per_epoch
    if steps_per_epoch < 1:
        raise RajaxError("the training split has fewer videos than one global batch")
    periods = Periods.of(steps_per_epoch, stage_config, config)
    total_steps = periods.total_steps
    state, train_fn, eval_fn, param_labels = stage_steps(task, stage_config, config.seed, total_steps)

    latest_manager, best_manager = checkpoints.run_managers(run_dir, config.checkpoint.keep)
    writer = MetricWriter(run_dir, enabled=is_main)
    meta = {"step": 0, "best_validation_accuracy": None, "best_validation_loss": None, "best_step": None}
    restored = checkpoints.restore(latest_manager, state)
    if restored is not None:
        state, meta = restored
        writer.truncate_after(meta["step"])
        print(f"Resuming from {latest_manager.directory}/{meta['step']} "
              f"(epoch {meta['step'] // steps_per_epoch + 1}).")
    counts = steps.count_parameters(task.params, param_labels)
    print(f"{counts[steps.TRAINABLE]:,} trainable and {counts[steps.FROZEN]:,} frozen parameters; "
          f"{stage_config.num_epochs} epochs of {steps_per_epoch} steps.")

    from rajax.progress import Progress

    step = int(meta["step"])
    with Progress(total_steps, run_dir.name, "step", initial=step, enabled=progress and is_main) as bar, \
            DeviceIdleMeter() as idle_meter:
        run = _Run(train_fn, eval_fn, steps.replicate(state), meta, data, config, stage_config,
                   class_names, bar=bar, idle_meter=idle_meter, writer=writer,
                   managers=(latest_manager, best_manager), resumed=restored is not None)
        del state  # the replicated copy is donated to the steps; never read the host copy again
        with Ahead(_remaining_batches(data, step, total_steps)) as batches:
            while run.step < total_steps:
                epoch = run.step // steps_per_epoch
                bar.set_description(f"{run_dir.name} epoch {epoch + 1}/{stage_config.num_epochs}")
                with idle_meter.waiting_for_input():
                    batch = next(batches)
                run.train(batch)
                if periods.log(run.step):
                    run.log()
                if periods.epoch_end(run.step):
                    run.end_epoch(epoch)
                validate, save = periods.validate(run.step), periods.checkpoint(run.step)
                if validate or save:  # the host's own work: neither step time nor input-pipeline idle
                    idle_meter.pause()
                    if validate:
                        run.validate()
                    if save:
                        run.checkpoint()
                    run.restart_window()
        run.log()
        if latest_manager.latest_step() != run.step:
            run.checkpoint()
    run.report_waits(is_main)
    return final_test(run_dir, eval_fn, run.replicated, data, config, class_names, best_manager, writer)


class _Run:
    """One ``fit`` in progress: the replicated state and its step, the device metrics of the steps
    not yet logged, and the periodic actions on them (``log``, ``validate``, ``checkpoint``)."""

    def __init__(self, train_fn, eval_fn, replicated, meta: dict, data: Data, config, stage_config,
                 class_names, *, bar, idle_meter: DeviceIdleMeter, writer: MetricWriter,
                 managers, resumed: bool):
        self.train_fn, self.eval_fn = train_fn, eval_fn
        self.data, self.config, self.class_names = data, config, class_names
        self.keep_last = stage_config.select == "last"
        self.bar, self.idle_meter, self.writer = bar, idle_meter, writer
        self.latest_manager, self.best_manager = managers
        self.replicated = replicated
        self.meta = meta  # the best validation result so far (saved beside every checkpoint)
        self.step = int(meta["step"])
        # Named by the error that stops a diverged run: where it can be resumed from.
        self.last_good = f"{self.latest_manager.directory}/{self.step}" if resumed else "none yet"
        self.pending: list[tuple[int, Any]] = []  # (step, device metrics) not yet fetched
        self.window_start, self.window_steps = time.perf_counter(), 0
        self.epoch_examples = 0.0  # videos decoded and trained on in this epoch
        self.run_waits = {"device_idle_s": 0.0, "device_busy_s": 0.0, "input_wait_s": 0.0, "wall_s": 0.0}
        # Several CPU "devices" of one process share one thread pool: with the collectives of more
        # than one step in flight their participants can take every thread and wait for each other
        # for ever (XLA aborts after 40 s). On a CPU, finish each step before dispatching the next.
        self.one_step_in_flight = jax.default_backend() == "cpu" and jax.local_device_count() > 1

    def train(self, batch: dict) -> None:
        """Dispatches one step; its metrics stay on the devices until the next ``log``."""
        self.replicated, metrics = self.train_fn(self.replicated, steps.shard(batch))
        self.idle_meter.dispatched(self.step + 1, metrics)
        if self.one_step_in_flight:
            jax.block_until_ready(metrics)
        self.step += 1
        self.window_steps += 1
        self.pending.append((self.step, metrics))
        self.bar.update(1)

    def log(self) -> None:
        """Fetches the pending metrics, stops on a NaN or infinity (``TrainingDiverged``) and writes
        their means (the learning rate of the last step), steps per second and idle fractions."""
        if not self.pending:
            return
        last_step = self.pending[-1][0]
        fetched = jax.device_get([metrics for _, metrics in self.pending])
        per_step = []
        for (metric_step, _), values in zip(self.pending, fetched):
            values = {name: float(np.asarray(value)[0]) for name, value in values.items()}
            check_finite(metric_step, values, self.last_good)
            per_step.append(values)
        values = {name: float(np.mean([v[name] for v in per_step])) for name in per_step[0]}
        self.epoch_examples += sum(v["valid_examples"] for v in per_step)
        values["learning_rate"] = per_step[-1]["learning_rate"]
        elapsed = time.perf_counter() - self.window_start
        values["steps_per_second"] = self.window_steps / elapsed if elapsed > 0 else 0.0
        waits = self.idle_meter.take(last_step)
        values["device_idle_fraction"] = idle_fraction(waits)
        values["input_wait_fraction"] = min(1.0, waits["input_wait_s"] / elapsed) if elapsed > 0 else 0.0
        for name, seconds in waits.items():
            self.run_waits[name] += seconds
        self.run_waits["wall_s"] += elapsed
        steps_per_epoch = self.data.steps_per_epoch
        self.writer.write(last_step, "train", values, epoch=(last_step - 1) // steps_per_epoch + 1)
        self.bar.set_postfix(loss=f"{values['loss']:.4f}", acc=f"{values['accuracy']:.3f}")
        self.pending.clear()
        self.restart_window()

    def restart_window(self) -> None:
        """Steps per second count from now (after the host's own work: validation, checkpoints)."""
        self.window_start, self.window_steps = time.perf_counter(), 0

    def end_epoch(self, epoch: int) -> None:
        """After the epoch's last ``log``: an epoch of empty batches is an error, not a result."""
        if self.epoch_examples == 0:  # every video failed to decode: nothing was learnt
            raise RajaxError(f"no usable videos in the training split: every batch of epoch "
                             f"{epoch + 1} was empty (see the warnings above); nothing is saved")
        self.epoch_examples = 0.0

    def checkpoint(self) -> None:
        """Saves the state to ``checkpoints/`` once its metrics are known to be finite."""
        self.log()  # never save a state whose update came from a NaN gradient
        checkpoints.save(self.latest_manager, self.step, steps.unreplicate(self.replicated),
                         dict(self.meta, step=self.step))
        self.last_good = f"{self.latest_manager.directory}/{self.step}"

    def validate(self) -> None:
        """Evaluates the validation split; saves to best/ when it improves (updates ``meta``), or
        every time with ``select="last"`` (when the validation split is too small or measures
        something else than what the run is for, e.g. the demo's full-frame validation of a backbone
        fine-tuned on regions, its best is noise and the last state is the one wanted)."""
        self.log()
        step, meta = self.step, self.meta
        split = self.config.data.validation_split
        if not split:  # no validation split: the newest state counts as the best
            meta.update(best_step=step)
            checkpoints.save(self.best_manager, step, steps.unreplicate(self.replicated), dict(meta, step=step))
            return
        report = evaluate_split(self.eval_fn, self.replicated, self.data, split, self.class_names)
        self.writer.write(step, "validation", {"accuracy": report["accuracy"], "loss": report["loss"],
                                               "mean_class_accuracy": report["mean_class_accuracy"]})
        if self.keep_last or _is_better(report, meta):
            meta.update(best_validation_accuracy=report["accuracy"], best_validation_loss=report["loss"],
                        best_step=step)
            checkpoints.save(self.best_manager, step, steps.unreplicate(self.replicated),
                             dict(meta, step=step, validation=_brief(report)))
            if jax.process_index() == 0:  # its picture is drawn once, for the best, at the end
                evaluation.write_report(report, Path(self.best_manager.directory).parent / EVAL_DIR,
                                        "validation", picture=False)

    def report_waits(self, is_main: bool) -> None:
        """The run's share of device idle time and of host time waiting for input."""
        waits = self.run_waits
        if waits["wall_s"] > 0 and is_main:
            print(f"Devices idle {100 * idle_fraction(waits):.1f}% of the time between steps; "
                  f"the host waited for input {100 * waits['input_wait_s'] / waits['wall_s']:.1f}% "
                  "of the training time.")


def _brief(report: dict) -> dict:
    return {key: report[key] for key in ("accuracy", "loss", "mean_class_accuracy", "num_examples")}


def final_test(run_dir, eval_fn, replicated, data, config, class_names, best_manager, writer):
    """Restores the best checkpoint and tests it (RUN/eval/test.json and its PNG).

    Returns ``(test report or {} without a test split, best state on the host)``.
    """
    template = steps.unreplicate(replicated)
    restored = checkpoints.restore(best_manager, template)
    if restored is None:
        raise RajaxError(f"{best_manager.directory}: no best checkpoint to test")
    best_state, best_meta = restored
    validation_json = Path(run_dir) / EVAL_DIR / "validation.json"
    if jax.process_index() == 0 and validation_json.is_file():
        evaluation.draw_report(json.loads(validation_json.read_text()), validation_json.parent, "validation")
    split = config.data.test_split
    if not split:
        return {}, best_state
    report = evaluate_split(eval_fn, steps.replicate(best_state), data, split, class_names)
    report["checkpoint_step"] = int(best_meta["step"])
    if jax.process_index() == 0:
        evaluation.write_report(report, Path(run_dir) / EVAL_DIR, split)
        writer.write(int(best_meta["step"]), split, {"accuracy": report["accuracy"], "loss": report["loss"],
                                                       "mean_class_accuracy": report["mean_class_accuracy"]})
        print(f"{split} ({best_manager.directory}/{best_meta['step']}): "
              + evaluation.format_report(report))
    writer.close()
    return report, best_state
