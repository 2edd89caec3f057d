"""The pure pieces of training: state, parameter freezing, optimizer, train and eval steps.

Nothing here reads files or touches the host beyond building pytrees: ``train_step`` and
``eval_step`` are pure functions of (state, batch) that ``pmap_train_step`` / ``pmap_eval_step``
compile once, replicate over the local devices (gradients and batch statistics averaged with
``lax.pmean``) and donate the state to, so a step updates it in place.

Freezing has one mechanism: the TRAINABLE / FROZEN labels of a stage's regex rules split the
parameters into two lists of leaves (:func:`split_trainable`). The step differentiates the
trainable list only (the frozen trunk carries no tangents, so no backward pass is built for it),
the optimizer is initialised on and updates that list only (its state holds nothing for frozen
parameters), and the new parameters are the updated trainable leaves joined with the frozen ones,
the very arrays the step received (:func:`join_trainable`). BatchNorm statistics are split the
same way by their own labels (:func:`batch_stats_labels`).

A *forward function* adapts a model to the steps: ``forward(params, batch_stats, batch, *, train,
rng) -> (logits, attention, new_batch_stats)``; the trainer builds one per stage (I3D
fine-tuning, head on features, end-to-end). ``attention`` is a dict of per-example arrays (empty
for a bare I3D). ``new_batch_stats`` is what the model's BatchNorm layers computed in train mode;
the step keeps it only for trainable layers.

Batches are dicts with ``label`` [b] int32 and ``mask`` [b] (1 for a real example, 0 for the
padding that makes the last evaluation batch full: such rows weigh nothing in the loss, the
metrics or the predictions used downstream).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from rajax.errors import RajaxError
from rajax.models.losses import Loss, classification_loss

PyTree = Any
AXIS = "devices"  # the pmap axis over local (and, multi-host, global) devices

TRAINABLE = "trainable"
FROZEN = "frozen"


@flax.struct.dataclass
class TrainState:
    """Everything a step changes; also what a checkpoint holds (with the data position beside it).

    ``rng`` is raw key data (uint32 [2]) so that checkpoints store a plain array.
    """

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    rng: jax.Array


# --------------------------------------------------------------------------------------------
# Freezing


def parameter_labels(tree: PyTree, rules: Sequence[tuple[str, str]]) -> PyTree:
    """Label every leaf of ``tree`` TRAINABLE or FROZEN by regex on its '/'-joined path.

    ``rules`` are ``(label, regex)`` pairs; a path must be matched (``re.search``) by the rules of
    exactly one label. A path no rule matches, or one matched by both labels, is an error listing
    the offending paths: a typo in a block name must not silently freeze (or train) it.
    """
    compiled = [(label, re.compile(pattern)) for label, pattern in rules]
    for label, _ in compiled:
        if label not in (TRAINABLE, FROZEN):
            raise RajaxError(f"parameter rule label {label!r} is neither {TRAINABLE!r} nor {FROZEN!r}")
    flat = traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")
    labels, unmatched, ambiguous = {}, [], []
    for path in flat:
        matched = {label for label, pattern in compiled if pattern.search(path)}
        if not matched:
            unmatched.append(path)
        elif len(matched) > 1:
            ambiguous.append(path)
        else:
            labels[path] = matched.pop()
    problems = []
    if unmatched:
        problems.append(f"{len(unmatched)} matched by no rule: {', '.join(unmatched[:8])}")
    if ambiguous:
        problems.append(f"{len(ambiguous)} matched as both trainable and frozen: {', '.join(ambiguous[:8])}")
    if problems:
        rules_text = "; ".join(f"{label}={pattern!r}" for label, pattern in rules)
        raise RajaxError(f"parameter rules ({rules_text}) do not cover the model exactly: "
                         + "; ".join(problems))
    return traverse_util.unflatten_dict(labels, sep="/")


def rules_from_config(stage_config) -> list[tuple[str, str]]:
    """The (label, regex) rules of a training stage's config (``trainable`` and ``frozen``).

    An empty pattern is no rule at all (``re.search('', path)`` would match every path).
    """
    rules = [(TRAINABLE, stage_config.trainable), (FROZEN, stage_config.frozen)]
    return [(label, pattern) for label, pattern in rules if pattern]


def batch_stats_labels(batch_stats: PyTree, rules, update: bool) -> PyTree:
    """TRAINABLE for the statistics of trainable layers when they update them, else FROZEN.

    The model runs BatchNorm in train mode in exactly those layers (``batch_norm_train_blocks``);
    a step keeps the statistics it computes for them and the old ones, bit for bit, for the rest.
    """
    if not update or not jax.tree.leaves(batch_stats):
        return jax.tree.map(lambda _: FROZEN, batch_stats)
    return parameter_labels(batch_stats, rules)


def split_trainable(labels: PyTree, tree: PyTree) -> tuple[list, list]:
    """The leaves of ``tree`` as (trainable, frozen) lists, in tree order."""
    label_leaves, leaves = jax.tree.leaves(labels), jax.tree.leaves(tree)
    if len(label_leaves) != len(leaves):
        raise RajaxError(f"{len(label_leaves)} labels for a tree of {len(leaves)} leaves")
    pairs = list(zip(label_leaves, leaves))
    return [p for label, p in pairs if label == TRAINABLE], [p for label, p in pairs if label != TRAINABLE]


def join_trainable(labels: PyTree, trainable: Sequence, frozen: Sequence, like: PyTree) -> PyTree:
    """Inverse of :func:`split_trainable`: a tree shaped like ``like`` holding the given leaves
    themselves (a frozen leaf comes back as the very array it was)."""
    trainable, frozen = iter(trainable), iter(frozen)
    leaves = [next(trainable) if label == TRAINABLE else next(frozen) for label in jax.tree.leaves(labels)]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


def with_trainable(labels: PyTree, tree: PyTree, trainable: Sequence) -> PyTree:
    """``tree`` with its trainable leaves replaced by ``trainable`` (in tree order); its frozen
    leaves are the very same arrays."""
    return join_trainable(labels, trainable, split_trainable(labels, tree)[1], tree)


def count_parameters(params: PyTree, labels: PyTree) -> dict[str, int]:
    counts = {TRAINABLE: 0, FROZEN: 0}
    for label, leaf in zip(jax.tree.leaves(labels), jax.tree.leaves(params)):
        counts[label] += int(np.prod(leaf.shape))
    return counts


# --------------------------------------------------------------------------------------------
# Optimizer


def learning_rate_schedule(optimizer_config, total_steps: int) -> optax.Schedule:
    """Constant (the paper's), or cosine decay after a linear warm-up."""
    peak = optimizer_config.learning_rate
    warmup = int(optimizer_config.warmup_steps)
    if optimizer_config.schedule == "constant":
        if warmup:
            return optax.join_schedules(
                [optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup])
        return optax.constant_schedule(peak)
    if optimizer_config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1))
    raise RajaxError(f"unknown learning-rate schedule {optimizer_config.schedule!r} "
                     "(config optimizer.schedule: 'constant' or 'cosine')")


def build_optimizer(optimizer_config, schedule: optax.Schedule) -> optax.GradientTransformation:
    """The optimizer of one training stage; it only ever sees the trainable parameters (the list
    :func:`split_trainable` gives), so it needs no mask.

    ``adam``: PyTorch's ``torch.optim.Adam(weight_decay=wd)``, i.e. L2 regularisation: ``wd * p``
    is ADDED TO THE GRADIENT before the Adam moments, so it is rescaled by Adam like the rest of
    the gradient. (``optax.adamw`` would instead add ``wd * p`` to the Adam update, decoupled
    decay: a different optimizer.) Hence ``add_decayed_weights`` comes first in the chain.
    ``sgd``: momentum SGD with the same L2 term.
    """
    name = optimizer_config.name
    weight_decay = optimizer_config.weight_decay
    if name == "adam":
        core = optax.scale_by_adam(b1=optimizer_config.b1, b2=optimizer_config.b2,
                                   eps=optimizer_config.eps)
    elif name == "sgd":
        core = optax.trace(decay=optimizer_config.momentum) if optimizer_config.momentum else optax.identity()
    else:
        raise RajaxError(f"unknown optimizer {name!r} (config optimizer.name: 'adam' or 'sgd')")
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        core,
        optax.scale_by_learning_rate(schedule),
    )


def create_train_state(params, batch_stats, tx: optax.GradientTransformation, seed: int, *,
                       param_labels: PyTree) -> TrainState:
    """The state before the first step; ``opt_state`` is ``tx``'s state of the trainable leaves
    (a list, in tree order) and holds nothing for frozen parameters."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats if batch_stats is not None else {},
        opt_state=tx.init(split_trainable(param_labels, params)[0]),
        rng=jax.random.key_data(jax.random.key(seed)),
    )


# --------------------------------------------------------------------------------------------
# Steps

Forward = Callable[..., tuple[jax.Array, Mapping[str, jax.Array], PyTree]]


def _global_count(mask: jax.Array) -> jax.Array:
    return jnp.maximum(jax.lax.psum(jnp.sum(mask), AXIS), 1.0)


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    forward: Forward,
    tx: optax.GradientTransformation,
    param_labels: PyTree,
    batch_stats_labels: PyTree,
    schedule: optax.Schedule,
    loss: Loss = classification_loss,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step on one device's share of the global batch; call it under pmap.

    ``loss(logits, attention, labels)`` gives one value per example (cross-entropy, plus the
    config's auxiliary terms: ``rajax.models.losses``). The objective is its mean over the valid
    examples of the *global* batch: each device
    divides its sum by (global count / devices), so the ``pmean`` of the gradients is the gradient
    of the global mean even when the devices hold different numbers of valid examples.
    """
    mask = batch["mask"].astype(jnp.float32)
    # One key per step, one stream per device (dropout differs across devices, as it would in a
    # single big batch); the same on every host for the same global device index.
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    device_key = jax.random.fold_in(step_key, jax.lax.axis_index(AXIS))
    devices = jax.lax.psum(1, AXIS)
    per_device_count = _global_count(mask) / devices

    # Only the trainable leaves are differentiated: the frozen trunk then carries no tangents, so
    # no backward pass is built for it at all (not merely masked out afterwards).
    trainable, frozen = split_trainable(param_labels, state.params)

    def loss_fn(trainable_leaves):
        params = join_trainable(param_labels, trainable_leaves, frozen, state.params)
        logits, attention, new_batch_stats = forward(params, state.batch_stats, batch, train=True, rng=device_key)
        losses = loss(logits, attention, batch["label"])
        return jnp.sum(losses * mask) / per_device_count, (logits, new_batch_stats)

    (objective, (logits, new_batch_stats)), trainable_grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    trainable_grads = jax.lax.pmean(trainable_grads, AXIS)
    # The optimizer sees the trainable leaves only; the frozen ones go back untouched.
    updates, opt_state = tx.update(trainable_grads, state.opt_state, trainable)
    params = join_trainable(param_labels, optax.apply_updates(trainable, updates), frozen, state.params)
    # BatchNorm statistics: averaged across devices for the layers that update them (the same
    # statistics a single device would see on the whole batch, up to the variance of the mean);
    # frozen layers keep theirs bit for bit.
    updated_stats, _ = split_trainable(batch_stats_labels, new_batch_stats)
    batch_stats = with_trainable(batch_stats_labels, state.batch_stats, jax.lax.pmean(updated_stats, AXIS))

    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    metrics = {
        "loss": jax.lax.pmean(objective, AXIS),
        "accuracy": jax.lax.psum(jnp.sum(correct * mask), AXIS) / _global_count(mask),
        "valid_examples": jax.lax.psum(jnp.sum(mask), AXIS),
        "grad_norm": optax.tree.norm(trainable_grads),
        "learning_rate": schedule(state.step),
    }
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, metrics


def eval_step(state: TrainState, batch: Mapping[str, jax.Array], *, forward: Forward,
              loss: Loss = classification_loss) -> dict[str, jax.Array]:
    """Per-example outputs on one device's share of an evaluation batch; call it under pmap.

    Returns logits, labels, the mask, the per-example loss (the same loss as training) and the
    attention arrays; the host keeps the rows whose mask is 1, so every example counts once.
    """
    logits, attention, _ = forward(state.params, state.batch_stats, batch, train=False, rng=None)
    logits = logits.astype(jnp.float32)
    return {
        "logits": logits,
        "label": batch["label"],
        "mask": batch["mask"],
        "loss": loss(logits, attention, batch["label"]),
        **{f"attention/{key}": value for key, value in attention.items()},
    }


def pmap_train_step(*, forward, tx, param_labels, batch_stats_labels, schedule, donate=True,
                    loss: Loss = classification_loss):
    """``train_step`` compiled over the devices, with the state donated (updated in place)
    unless ``donate`` is False (benchmarks compare both)."""
    step = functools.partial(train_step, forward=forward, tx=tx, param_labels=param_labels,
                             batch_stats_labels=batch_stats_labels, schedule=schedule, loss=loss)
    return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,) if donate else ())


def pmap_eval_step(*, forward, loss: Loss = classification_loss):
    return jax.pmap(functools.partial(eval_step, forward=forward, loss=loss), axis_name=AXIS)


# --------------------------------------------------------------------------------------------
# Host <-> devices


def replicate(tree: PyTree) -> PyTree:
    """One copy of ``tree`` per local device, the layout pmapped steps take.

    The copies are sharded over a mesh axis named like the steps' pmap axis: the arrays a step
    returns then have the same sharding as those it was first called with, so the second call
    does not compile the step again.
    """
    from flax import jax_utils

    return jax_utils.replicate(tree, axis_name=AXIS)


def unreplicate(tree: PyTree) -> PyTree:
    """The first device's copy, as host numpy arrays."""
    return jax.device_get(jax.tree.map(lambda x: x[0], tree))


def shard(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Split a host batch [b, ...] into [local devices, b / devices, ...] for pmap."""
    devices = jax.local_device_count()
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.shape[0] % devices:
            raise RajaxError(f"batch of {value.shape[0]} ({key}) does not split over {devices} devices; "
                             "make the per-host batch size a multiple of the local device count")
        out[key] = value.reshape((devices, value.shape[0] // devices) + value.shape[1:])
    return out
