"""Pmapped train/eval steps on 4 host devices: freezing, gradient averaging, the optimizer, learning.

The fine-tuning step runs the real InceptionI3d (width 1/8, 16 frames of 32x32) so that the
freezing rules meet the real parameter tree.
"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from rajax.data.ahead import Ahead
from rajax.errors import RajaxError
from rajax.models import heads
from rajax.models.region_model import RegionModel
from rajax.train import backbone, forwards, stages, steps, trainer
from rajax.train.config import apply_overrides, load_config

DEVICES = 4


@pytest.fixture(autouse=True)
def _four_devices():
    assert jax.local_device_count() == DEVICES, "conftest must give 4 host devices"


def _flat(tree):
    return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def _tiny(**overrides):
    return apply_overrides(load_config("tiny"), {k: str(v) for k, v in overrides.items()})


def _finetune_batch(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "frames": rng.integers(0, 256, (DEVICES, 1, 16, 32, 32, 3), dtype=np.uint8),
        "label": rng.integers(0, 10, (DEVICES, 1)).astype(np.int32),
        "mask": np.ones((DEVICES, 1), np.float32),
    }


def _finetune_steps(config, seed=0):
    """(model, initial state, train step, eval step, labels) of the tiny fine-tuning stage."""
    model, variables = backbone.finetune_model(config, len(config.classes), seed)
    task = trainer.Task(forwards.i3d_forward(model), variables["params"], variables["batch_stats"])
    state, train_fn, eval_fn, labels = trainer.stage_steps(task, config.finetune, seed, total_steps=10)
    return model, state, train_fn, eval_fn, labels


def _finetune_step(config, seed=0):
    """(labels, params/stats before, state after one pmapped step) for the tiny fine-tuning model."""
    model, state, step, _, labels = _finetune_steps(config, seed)
    rules = steps.rules_from_config(config.finetune)
    stats_labels = steps.batch_stats_labels(state.batch_stats, rules, config.finetune.update_batch_stats)
    before = jax.device_get(state)
    after, metrics = step(steps.replicate(state), _finetune_batch(seed))
    return model, labels, stats_labels, before, jax.device_get(after), jax.device_get(metrics)


def _flops(lowered) -> float:
    cost = lowered.cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]


def test_the_frozen_trunk_gets_no_backward_pass():
    """XLA's FLOP count of the steps as JAX emits them (before XLA's optimisations, which could only
    remove work): the stage-1 step costs the forward pass plus the backward of the top blocks only;
    training every layer costs well over twice the forward."""
    batch = _finetune_batch()
    _, state, train_fn, eval_fn, _ = _finetune_steps(_tiny())
    replicated = steps.replicate(state)
    forward = _flops(eval_fn.lower(replicated, batch))
    stage1 = _flops(train_fn.lower(replicated, batch))
    _, state, train_all, _, _ = _finetune_steps(_tiny(**{"finetune.trainable": ".*", "finetune.frozen": ""}))
    everything = _flops(train_all.lower(steps.replicate(state), batch))
    assert forward < stage1 < 1.3 * forward
    assert everything > 2 * forward


def test_the_train_step_compiles_once():
    compiled = []

    def count(name, seconds, **kwargs):
        if name.endswith("backend_compile_duration"):
            compiled.append(name)

    _, state, train_fn, _, _ = _finetune_steps(_tiny())
    replicated = steps.replicate(state)
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        for seed in range(4):  # a new host batch every step, as from the input pipeline
            replicated, metrics = train_fn(replicated, _finetune_batch(seed))
            jax.block_until_ready(metrics)
            if seed == 0:
                first_step = len(compiled)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert first_step >= 1
    assert len(compiled) == first_step, "the train step compiled again after its first call"


def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_one_finetune_step_changes_exactly_the_trainable_parameters():
    config = _tiny()
    model, labels, stats_labels, before, after, metrics = _finetune_step(config)
    assert set(model.batch_norm_train_blocks) == {"Mixed_4f", "Mixed_5b", "Mixed_5c", "Logits"}
    flat_labels, flat_before = _flat(labels), _flat(before.params)
    replicas = _flat(after.params)
    trainable = [p for p, label in flat_labels.items() if label == steps.TRAINABLE]
    assert trainable and all(p.split("/")[0] in ("Mixed_4f", "Mixed_5b", "Mixed_5c", "Logits") for p in trainable)
    for path, label in flat_labels.items():
        new = replicas[path]
        # All four device replicas hold the same parameters (gradients were averaged).
        for d in range(1, DEVICES):
            assert _bits_equal(new[d], new[0]), path
        if label == steps.TRAINABLE:
            assert not np.array_equal(new[0], flat_before[path]), f"trainable {path} did not change"
        else:
            assert _bits_equal(new[0], flat_before[path]), f"frozen {path} changed"
    stats_before, stats_after = _flat(before.batch_stats), _flat(after.batch_stats)
    for path, label in _flat(stats_labels).items():
        frozen_block = path.split("/")[0] not in ("Mixed_4f", "Mixed_5b", "Mixed_5c")
        assert (label == steps.FROZEN) == frozen_block, path
        if frozen_block:
            assert _bits_equal(stats_after[path][0], stats_before[path]), f"frozen statistics {path} changed"
        else:
            assert not np.array_equal(stats_after[path][0], stats_before[path]), f"{path} not updated"
    assert int(after.step[0]) == 1
    assert np.isfinite(metrics["loss"]).all() and metrics["learning_rate"][0] == pytest.approx(1e-4)


def test_the_optimizer_holds_state_for_the_trainable_parameters_only():
    """One mechanism freezes: the optimizer is built on the trainable leaves alone, so Adam's two
    moments hold exactly as many numbers as the trainable parameters, and none for the trunk."""
    config = _tiny()
    _, state, _, _, labels = _finetune_steps(config)
    counts = steps.count_parameters(state.params, labels)
    trainable, _ = steps.split_trainable(labels, state.params)
    adam = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
    assert len(adam) == 1
    for moment in (adam[0].mu, adam[0].nu):
        assert [m.shape for m in moment] == [p.shape for p in trainable]
        assert sum(int(np.prod(m.shape)) for m in moment) == counts[steps.TRAINABLE]
    assert counts[steps.TRAINABLE] > 0 and counts[steps.FROZEN] > 0


def test_trainable_blocks_can_keep_their_batch_statistics():
    """update_batch_stats=False: every BatchNorm normalises with its moving averages and keeps them."""
    config = _tiny(**{"finetune.update_batch_stats": False})
    model, variables = backbone.finetune_model(config, len(config.classes))
    assert model.batch_norm_train_blocks == ()
    rules = steps.rules_from_config(config.finetune)
    labels = steps.batch_stats_labels(variables["batch_stats"], rules, update=False)
    assert set(jax.tree.leaves(labels)) == {steps.FROZEN}
    # With every statistic labelled frozen, a step hands back the old arrays themselves.
    new = jax.tree.map(lambda x: x + 1.0, variables["batch_stats"])
    updated, _ = steps.split_trainable(labels, new)
    assert updated == []
    kept = steps.with_trainable(labels, variables["batch_stats"], updated)
    assert all(a is b for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(variables["batch_stats"])))


def test_parameter_rules_must_cover_every_parameter_exactly_once():
    tree = {"Mixed_4f": {"w": np.zeros(2)}, "Mixed_3b": {"w": np.zeros(2)}, "extra": {"w": np.zeros(1)}}
    with pytest.raises(RajaxError, match=r"1 matched by no rule: extra/w"):
        steps.parameter_labels(tree, [(steps.TRAINABLE, "^Mixed_4f/"), (steps.FROZEN, "^Mixed_3")])
    with pytest.raises(RajaxError, match=r"matched as both trainable and frozen: Mixed_4f/w"):
        steps.parameter_labels(tree, [(steps.TRAINABLE, "^Mixed_4f/|^extra/"), (steps.FROZEN, "^Mixed")])
    labels = steps.parameter_labels(tree, [(steps.TRAINABLE, "^Mixed_4f/|^extra/"), (steps.FROZEN, "^Mixed_3")])
    assert labels == {"Mixed_4f": {"w": "trainable"}, "Mixed_3b": {"w": "frozen"}, "extra": {"w": "trainable"}}
    # An empty pattern is "no rule", not "everything".
    rules = steps.rules_from_config(load_config("tiny").train_head)
    assert steps.parameter_labels({"a": np.zeros(1)}, rules) == {"a": "trainable"}


def test_end_to_end_rules_cover_the_region_model():
    config = _tiny()
    i3d = backbone.i3d_model(config, 10)
    model = RegionModel(backbone=i3d, head=stages.build_head(config))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 2, 16, 32, 32, 3))))
    rules = steps.rules_from_config(config.end_to_end)
    labels = _flat(steps.parameter_labels(variables["params"], rules))
    trainable_scopes = {p.split("/")[1] if p.startswith("backbone/") else "head"
                        for p, label in labels.items() if label == steps.TRAINABLE}
    assert trainable_scopes == {"Mixed_4f", "Mixed_5b", "Mixed_5c", "head"}
    steps.parameter_labels(variables["batch_stats"], rules)  # statistics covered as well


def test_gradients_are_averaged_over_the_global_batch_with_uneven_masks():
    """pmean over devices of masked per-device losses == the gradient of the global masked mean."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(DEVICES * 3, 4, 2, 5)).astype(np.float32)
    labels = rng.integers(0, 3, DEVICES * 3).astype(np.int32)
    mask = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1], np.float32)  # 3, 0, 1, 1 valid per device
    head = heads.RegionAttention(num_classes=3)
    params = jax.device_get(head.init(jax.random.key(0), features)["params"])
    all_trainable = jax.tree.map(lambda _: steps.TRAINABLE, params)
    tx = optax.sgd(1.0)
    state = steps.create_train_state(params, {}, tx, 0, param_labels=all_trainable)
    step = steps.pmap_train_step(forward=forwards.head_forward(head), tx=tx, param_labels=all_trainable,
                                 batch_stats_labels={}, schedule=optax.constant_schedule(1.0))
    batch = steps.shard({"features": features, "label": labels, "mask": mask})
    after, metrics = step(steps.replicate(state), batch)

    def global_loss(p):
        logits, _ = head.apply({"params": p}, features)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return jnp.sum(losses * mask) / jnp.sum(mask)

    loss, grads = jax.value_and_grad(global_loss)(params)
    expected = jax.tree.map(lambda p, g: p - g, params, grads)
    got = jax.tree.map(lambda x: x[0], jax.device_get(after.params))
    for path, value in _flat(expected).items():
        np.testing.assert_allclose(_flat(got)[path], value, rtol=1e-5, atol=1e-6, err_msg=path)
    np.testing.assert_allclose(metrics["loss"][0], loss, rtol=1e-5)


def _torch_adam_reference(p, grads, lr, b1, b2, eps, wd):
    """torch.optim.Adam(weight_decay=wd) step by step, as PyTorch documents it (L2 into the gradient)."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def test_adam_adds_weight_decay_to_the_gradient_like_torch():
    config = load_config("tiny").train_head.optimizer  # the paper's Adam: lr 1e-3, eps 1e-8
    wd = 0.5  # far above the paper's 1e-5, so that where the decay enters shows
    config.weight_decay = wd
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(6,)).astype(np.float64)
    grads = [rng.normal(size=(6,)) * 0.01 for _ in range(5)]
    tx = steps.build_optimizer(config, optax.constant_schedule(config.learning_rate))
    p = jnp.asarray(p0, jnp.float32)
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g, p.dtype), state, p)
        p = optax.apply_updates(p, updates)
    expected = _torch_adam_reference(p0, grads, 1e-3, 0.9, 0.999, 1e-8, wd)
    np.testing.assert_allclose(np.asarray(p), expected, rtol=1e-5, atol=1e-7)
    decoupled = optax.adamw(1e-3, eps=1e-8, weight_decay=wd)  # AdamW: a different optimizer
    q = jnp.asarray(p0, p.dtype)
    dstate = decoupled.init(q)
    for g in grads:
        updates, dstate = decoupled.update(jnp.asarray(g, p.dtype), dstate, q)
        q = optax.apply_updates(q, updates)
    assert not np.allclose(np.asarray(q), expected, rtol=1e-5, atol=1e-7)


def _toy_problem(n, seed, regions=4, steps_=3, channels=16, classes=3, informative=2):
    """Only region ``informative`` carries the class (a prototype plus noise, and a +2 offset on
    channel 0 that lets a linear scorer tell it from the others); other regions are noise."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(99).normal(size=(classes, channels)) * 1.5
    labels = rng.integers(0, classes, n).astype(np.int32)
    x = rng.normal(size=(n, regions, steps_, channels)).astype(np.float32)
    x[:, informative] += prototypes[labels][:, None, :]
    x[:, informative, :, 0] += 2.0
    return x, labels


def test_region_attention_learns_a_separable_toy_problem_and_attends_to_the_informative_region():
    x, y = _toy_problem(512, seed=1)
    x_test, y_test = _toy_problem(256, seed=2)
    head = heads.RegionAttention(num_classes=3)
    params = jax.device_get(head.init(jax.random.key(0), x[:1])["params"])
    labels = jax.tree.map(lambda _: steps.TRAINABLE, params)
    optimizer = load_config("tiny").train_head.optimizer
    schedule = optax.constant_schedule(1e-2)
    tx = steps.build_optimizer(optimizer, schedule)
    forward = forwards.head_forward(head)
    train = steps.pmap_train_step(forward=forward, tx=tx, param_labels=labels, batch_stats_labels={},
                                  schedule=schedule)
    evaluate = steps.pmap_eval_step(forward=forward)
    state = steps.replicate(steps.create_train_state(params, {}, tx, 0, param_labels=labels))
    first_loss = None
    for epoch in range(15):
        order = np.random.default_rng(epoch).permutation(len(x))
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            state, metrics = train(state, steps.shard({"features": x[idx], "label": y[idx],
                                                        "mask": np.ones(len(idx), np.float32)}))
            # One step at a time: simulated CPU devices deadlock with several steps' collectives
            # in flight (see rajax.train.trainer).
            jax.block_until_ready(metrics)
            first_loss = first_loss if first_loss is not None else float(metrics["loss"][0])
    outputs = trainer.run_evaluation(evaluate, state, [{"features": x_test, "label": y_test,
                                                        "mask": np.ones(len(y_test), np.float32)}])
    accuracy = np.mean(np.argmax(outputs["logits"], -1) == y_test)
    assert float(metrics["loss"][0]) < 0.25 * first_loss
    assert accuracy >= 0.95
    mean_weight = outputs["attention/region_weight"].mean(axis=0)
    assert mean_weight[2] > 0.5 and mean_weight[2] == mean_weight.max()


def test_eval_step_drops_padding_rows_so_every_example_counts_once():
    head = heads.RegionMean(num_classes=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 2, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8).astype(np.int32)
    params = head.init(jax.random.key(0), x)["params"]
    state = steps.replicate(steps.TrainState(step=np.zeros((), np.int32), params=params, batch_stats={},
                                                 opt_state=None, rng=np.zeros(2, np.uint32)))
    evaluate = steps.pmap_eval_step(forward=forwards.head_forward(head))
    mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)  # a padded last batch
    outputs = trainer.run_evaluation(evaluate, state, [
        {"features": x, "label": y, "mask": np.ones(8, np.float32)},
        {"features": x, "label": y, "mask": mask},
    ])
    assert len(outputs["label"]) == 13
    expected_logits, _ = head.apply({"params": params}, x)
    np.testing.assert_allclose(outputs["logits"][8:], np.asarray(expected_logits)[:5], rtol=1e-5)
    np.testing.assert_array_equal(outputs["label"], np.concatenate([y, y[:5]]))


def test_batches_come_ahead_in_order_across_epochs_and_errors_reach_the_loop():
    import time

    produced = []

    def epoch(number, skip):
        for index in range(skip, 3):
            produced.append((number, index))
            yield {"epoch": number, "index": index}

    data = trainer.Data(steps_per_epoch=3, train_batches=epoch, eval_batches=lambda split: [])
    ahead = Ahead(trainer._remaining_batches(data, 4, 9))  # resumed mid-epoch 1
    first = next(ahead)
    assert first == {"epoch": 1, "index": 1}
    deadline = time.monotonic() + 30
    while len(produced) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(produced) == 3  # the producer ran ahead of the caller, into the next epoch
    rest = list(ahead)
    assert [(b["epoch"], b["index"]) for b in [first, *rest]] == [(1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]

    def short_epoch(number, skip):
        yield {"epoch": number}

    short = Ahead(trainer._remaining_batches(trainer.Data(3, short_epoch, lambda split: []), 0, 6))
    assert next(short) == {"epoch": 0}
    with pytest.raises(RajaxError, match="ended after 1 batches instead of 3"):
        next(short)


def test_ahead_close_stops_and_joins_its_thread():
    closed = []

    def endless():
        try:
            for index in itertools.count():
                yield index
        finally:
            closed.append(True)

    with Ahead(endless()) as ahead:
        assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    assert not ahead._thread.is_alive()
    assert closed == [True]  # the generator was closed, in the thread that ran it
    assert ahead.close()  # closing again is harmless


def test_periodic_actions_fall_on_the_steps_the_config_says():
    """4 steps per epoch, 3 epochs: log every 3 steps and at epoch ends, validate every 2nd epoch and
    after the last, checkpoint every 5 steps and every epoch's end (or at no epoch end with 0)."""
    periods = trainer.Periods(steps_per_epoch=4, total_steps=12, log_every_steps=3, eval_every_epochs=2,
                              checkpoint_every_steps=5, checkpoint_every_epochs=1)
    done = range(1, 13)
    assert [s for s in done if periods.log(s)] == [3, 4, 6, 8, 9, 12]
    assert [s for s in done if periods.validate(s)] == [8, 12]
    assert [s for s in done if periods.checkpoint(s)] == [4, 5, 8, 10, 12]
    no_epochs = dataclasses.replace(periods, checkpoint_every_epochs=0)
    assert [s for s in done if no_epochs.checkpoint(s)] == [5, 10]
    config = _tiny()
    assert trainer.Periods.of(4, config.finetune, config) == trainer.Periods(
        4, 4 * config.finetune.num_epochs, config.log_every_steps, config.finetune.eval_every_epochs,
        config.checkpoint.every_steps, config.checkpoint.every_epochs)
