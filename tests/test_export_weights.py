"""rajax export-weights: rajax checkpoints to pytorch-i3d state dicts and DeepMind TF checkpoints.

Each format is checked both ways: read back by rajax's importer (the same arrays, the same logits
and features), and run by code that shares nothing with rajax's exporter: the PyTorch reference
(``rajax.reference.torch_i3d``, built from the architecture table) loading the state dict by
pytorch-i3d's names, and the raw ``tf.nn`` forward pass of test_i3d reading the TF checkpoint by
DeepMind's names. The Kinetics-400 weights must classify the two real Kinetics clips with both.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from numerics import i3d_atol
from rajax import cli, weights
from rajax.errors import WeightsError
from rajax.models.heads import RegionAttention
from rajax.models.i3d import InceptionI3d
from rajax.reference.torch_i3d import InceptionI3d as TorchInceptionI3d
from rajax.train import backbone, checkpoints, forwards, steps, trainer
from rajax.train.config import load_config, write_config_json
from rajax.weights import export
from test_i3d import tf_i3d

KINETICS_CLIPS = {"arm_wrestling.mp4": "arm wrestling", "flipping_pancake.mkv": "flipping pancake"}
CLIP_FRAMES = 64

# DeepMind's Sonnet names inside a unit -> where test_i3d.tf_i3d looks for the array. Written
# here from kinetics-i3d's naming, not taken from rajax, so the check is independent.
SONNET = {
    "conv_3d/w": ("params", "kernel"),
    "conv_3d/b": ("params", "bias"),
    "batch_norm/beta": ("params", "beta"),
    "batch_norm/moving_mean": ("batch_stats", "mean"),
    "batch_norm/moving_variance": ("batch_stats", "var"),
}
QUIRK = "Mixed_5b/Branch_2/Conv3d_0a_3x3"  # DeepMind's name for what is 0b everywhere else


def read_deepmind_checkpoint(prefix):
    """A DeepMind TF checkpoint as the nested {'params', 'batch_stats'} that tf_i3d takes.

    Arrays keep their stored (Sonnet) shapes; tf.nn.batch_normalization broadcasts [1,1,1,1,C].
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    tree = {"params": {}, "batch_stats": {}}
    for name in reader.get_variable_to_shape_map():
        assert name.startswith("RGB/inception_i3d/"), name
        scope, module, leaf = name[len("RGB/inception_i3d/"):].rsplit("/", 2)
        collection, key = SONNET[f"{module}/{leaf}"]
        scope = "Mixed_5b/Branch_2/Conv3d_0b_3x3" if scope == QUIRK else scope
        node = tree[collection]
        for part in scope.split("/"):
            node = node.setdefault(part, {})
        node[key] = reader.get_tensor(name)
    return tree


def torch_outputs(model, clips):
    """(logits, features) of the PyTorch reference from one forward pass (eval mode)."""
    with torch.no_grad():
        pooled = model.pooled(torch.from_numpy(np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))))
        features = pooled[:, :, :, 0, 0].transpose(1, 2)
        logits = model.logits(pooled).mean(dim=(2, 3, 4))  # as its forward(): dropout is off in eval
    return logits.numpy(), features.numpy()


@functools.partial(jax.jit, static_argnums=0)
def _rajax_outputs(model, variables, clips):
    return model.apply(variables, clips), model.apply(variables, clips, output="features")


def rajax_outputs(model, variables, clips):
    """(logits, features) of rajax's InceptionI3d (compiled once per model and input shape)."""
    return tuple(np.asarray(a) for a in _rajax_outputs(model, variables, clips))


def assert_same_arrays(got, expected):
    got, expected = weights.flatten(got), weights.flatten(expected)
    assert got.keys() == expected.keys()
    for path in expected:
        np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(expected[path]), err_msg="/".join(path))


# --------------------------------------------------------------------------- a stage-1 tiny run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real fine-tuning step of the thin I3D (configs/tiny.py, 10 classes), its stage-1 export
    (WORKDIR/finetune/backbone) and its training checkpoint (WORKDIR/finetune/best), plus the
    checkpoints of a head-only and an end-to-end run made from it."""
    workdir = tmp_path_factory.mktemp("run")
    config = load_config("tiny")
    model, variables = backbone.finetune_model(config, len(config.classes), config.seed)
    task = trainer.Task(forwards.i3d_forward(model), variables["params"], variables["batch_stats"])
    state, train_fn, _, _ = trainer.stage_steps(task, config.finetune, config.seed, total_steps=2)
    rng = np.random.default_rng(0)
    devices = jax.local_device_count()
    batch = {"frames": rng.integers(0, 256, (devices, 1, 16, 32, 32, 3), dtype=np.uint8),
             "label": rng.integers(0, 10, (devices, 1)).astype(np.int32),
             "mask": np.ones((devices, 1), np.float32)}
    trained, _ = train_fn(steps.replicate(state), batch)
    trained = steps.unreplicate(trained)
    before = weights.flatten(variables["params"])
    changed = {p[0] for p, a in weights.flatten(trained.params).items() if not np.array_equal(a, before[p])}
    assert changed == {"Mixed_4f", "Mixed_5b", "Mixed_5c", "Logits"}  # a real stage-1 step
    trained_variables = {"params": trained.params, "batch_stats": trained.batch_stats}
    export_dir = backbone.export_backbone(trained_variables, workdir / "finetune" / backbone.EXPORT_DIR,
                                          config, source="tiny test run")
    checkpoints.save(checkpoints.make_manager(workdir / "finetune" / checkpoints.BEST_DIR, 1), 1, trained, {})

    # Stage 3 (head only) and stage 4 (backbone without its Logits + head), saved as the trainer does.
    head = RegionAttention(num_classes=10)
    head_params = jax.device_get(head.init(jax.random.key(1), jnp.ones((1, 11, 1, 128)))["params"])
    empty = {"step": np.int32(5), "opt_state": {"count": np.zeros((), np.int32)}, "rng": np.zeros(2, np.uint32)}
    head_state = steps.TrainState(params=head_params, batch_stats={}, **empty)
    checkpoints.save(checkpoints.make_manager(workdir / "train_head" / checkpoints.BEST_DIR, 1), 5, head_state, {})
    trunk = {k: v for k, v in trained.params.items() if k != "Logits"}
    e2e_state = steps.TrainState(params={"backbone": trunk, "head": head_params},
                                 batch_stats={"backbone": trained.batch_stats}, **empty)
    checkpoints.save(checkpoints.make_manager(workdir / "end_to_end" / checkpoints.BEST_DIR, 1), 5, e2e_state, {})
    write_config_json(config, workdir / "end_to_end" / "config.json")
    return {"workdir": workdir, "export_dir": export_dir, "variables": jax.device_get(trained_variables),
            "model": InceptionI3d(num_classes=10, width_multiplier=config.backbone.width_multiplier),
            "classes": list(config.classes),
            # One input for every tiny forward pass (one compilation); 224 reaches tf_i3d's 7x7 pool.
            "clips": np.random.default_rng(1).uniform(-1, 1, (1, 16, 224, 224, 3)).astype(np.float32)}


def test_stage_one_backbone_exports_to_both_formats_and_reloads(tiny_run, tmp_path):
    model, original = tiny_run["model"], tiny_run["variables"]
    said = {}
    for name, output in (("pytorch-i3d", tmp_path / "tiny.pt"), ("deepmind", tmp_path / "dm" / "model.ckpt")):
        said[name] = []
        done = export.export(name, tiny_run["export_dir"], output, warn=said[name].append)
        assert done.network.num_classes == 10 and done.network.width_multiplier == 0.125
        # The importer reads back exactly the fine-tuned arrays.
        assert_same_arrays(weights.convert(name, output), original)
    # A thin network and (for TF) the class names are what the formats cannot hold: said, not dropped.
    assert any("width multiplier 0.125" in s for s in said["pytorch-i3d"])
    assert any("no class names" in s and ", ".join(tiny_run["classes"]) in s for s in said["deepmind"])

    # The re-imported network computes what the original computes, on a clip that reaches the logits.
    clips = tiny_run["clips"]
    logits, features = rajax_outputs(model, original, clips)
    for name, output in (("pytorch-i3d", tmp_path / "tiny.pt"), ("deepmind", tmp_path / "dm" / "model.ckpt")):
        again = rajax_outputs(model, weights.convert(name, output), clips)
        np.testing.assert_array_equal(again[0], logits)
        np.testing.assert_array_equal(again[1], features)

    # The TF checkpoint, read by DeepMind's names and run by raw tf.nn ops, gives rajax's outputs.
    _, tf_features, tf_logits = tf_i3d(read_deepmind_checkpoint(tmp_path / "dm" / "model.ckpt"), clips)
    assert np.abs(logits).max() > 0
    np.testing.assert_allclose(tf_logits, logits, rtol=0, atol=i3d_atol(logits, original))
    np.testing.assert_allclose(tf_features, features, rtol=0, atol=i3d_atol(features, original))

    # The state dict has exactly pytorch-i3d's keys (its InceptionI3d is full width only, so the
    # thin one is checked by names; the full-width Kinetics test below loads it strictly).
    state = torch.load(tmp_path / "tiny.pt", weights_only=True)
    assert state.keys() == TorchInceptionI3d(num_classes=10).state_dict().keys()
    assert state["logits.conv3d.weight"].shape == (10, 128, 1, 1, 1)
    record = state._metadata[""]["rajax_export"]
    assert record["bn_epsilon"] == 1e-3 and record["num_classes"] == 10
    assert record["class_names"] == tiny_run["classes"]


def test_deepmind_export_restores_by_name_into_a_tf1_graph(tiny_run, tmp_path):
    """DeepMind's code restores with a name-based tf.train.Saver into Sonnet v1's variables:
    kernels as they are, beta and the moving statistics as [1, 1, 1, 1, C], the quirk's name."""
    import tensorflow as tf

    prefix = tmp_path / "model.ckpt"
    export.export("deepmind", tiny_run["export_dir"], prefix, warn=lambda _: None)
    expected = {}
    for (collection, *scope, leaf), array in weights.flatten(tiny_run["variables"]).items():
        scope = "/".join(scope)
        scope = QUIRK if scope == "Mixed_5b/Branch_2/Conv3d_0b_3x3" else scope
        sonnet = next(k for k, v in SONNET.items() if v == (collection, leaf))
        expected[f"RGB/inception_i3d/{scope}/{sonnet}"] = array if leaf in ("kernel", "bias") else array.reshape(1, 1, 1, 1, -1)
    assert len(expected) == 230
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.get_variable(name, shape=a.shape, dtype=tf.float32,
                                                     initializer=tf.compat.v1.zeros_initializer())
                     for name, a in expected.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables, reshape=False)
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, str(prefix))
            restored = session.run(variables)
    for name, array in expected.items():
        np.testing.assert_array_equal(restored[name], array, err_msg=name)


def test_end_to_end_run_exports_its_backbone_and_names_the_head(tiny_run, tmp_path):
    run = tiny_run["workdir"] / "end_to_end"
    said = []
    output = tmp_path / "e2e.pt"
    export.export("pytorch-i3d", run, output, warn=said.append)
    assert any("region_attention head" in s and "not exported" in s for s in said), said
    assert any("all zeros" in s for s in said), said
    back = weights.convert("pytorch-i3d", output)
    trunk = {k: v for k, v in tiny_run["variables"]["params"].items() if k != "Logits"}
    assert_same_arrays({k: v for k, v in back["params"].items() if k != "Logits"}, trunk)
    assert_same_arrays(back["batch_stats"], tiny_run["variables"]["batch_stats"])
    logits = back["params"]["Logits"]["Conv3d_0c_1x1"]
    assert logits["kernel"].shape == (1, 1, 1, 128, 10) and not logits["kernel"].any() and not logits["bias"].any()
    _, features = rajax_outputs(tiny_run["model"], back, tiny_run["clips"])
    _, expected = rajax_outputs(tiny_run["model"], tiny_run["variables"], tiny_run["clips"])
    np.testing.assert_array_equal(features, expected)


def test_a_training_run_exports_its_best_state(tiny_run, tmp_path):
    """WORKDIR/finetune (its best step) and the stage-1 export it wrote are the same network."""
    export.export("deepmind", tiny_run["workdir"] / "finetune", tmp_path / "run.ckpt", warn=lambda _: None)
    assert_same_arrays(weights.convert("deepmind", tmp_path / "run.ckpt"), tiny_run["variables"])


def test_what_is_not_an_i3d_is_refused_with_what_is_missing(tiny_run, tmp_path):
    workdir = tiny_run["workdir"]
    with pytest.raises(WeightsError, match=r"train_head: no I3D backbone to export \(missing Conv3d_1a_7x7.*"
                                           r"parameters are: classifier, region_score\)"):
        export.export("pytorch-i3d", workdir / "train_head", tmp_path / "head.pt")
    with pytest.raises(WeightsError, match=r"a rajax work directory, not one checkpoint; pass one of its "
                                           r"checkpoints: .*finetune/backbone, .*end_to_end"):
        export.export("pytorch-i3d", workdir, tmp_path / "x.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"empty: not a rajax checkpoint"):
        export.export("deepmind", tmp_path / "empty", tmp_path / "x.ckpt")
    assert not (tmp_path / "head.pt").exists() and not (tmp_path / "x.pt").exists()


def test_nothing_is_overwritten_without_overwrite(tiny_run, tmp_path, capsys):
    source = str(tiny_run["export_dir"])
    for name, output, written in (("pytorch-i3d", tmp_path / "a.pt", [tmp_path / "a.pt"]),
                                  ("deepmind", tmp_path / "m.ckpt", [tmp_path / "m.ckpt.index"])):
        for path in written:
            path.write_bytes(b"keep me")
        capsys.readouterr()
        assert cli.main(["export-weights", "--format", name, "--input", source, "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err and str(output) in err
        assert all(p.read_bytes() == b"keep me" for p in written)
        assert cli.main(["export-weights", "--format", name, "--input", source, "--output", str(output),
                         "--overwrite"]) == 0
        out, err = capsys.readouterr()
        assert f"({name}, 10 classes, width 0.125," in out and "rajax export-weights: warning: a thin I3D" in err
        assert_same_arrays(weights.convert(name, output), tiny_run["variables"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "m.ckpt.data-00000-of-00001", "m.ckpt.index"]


# --------------------------------------------------------------------------- Kinetics-400, full size


@pytest.fixture(scope="module")
def kinetics(input_path, tmp_path_factory):
    """The two Kinetics clips (64 central frames, decoded as rajax classify does), rajax's logits
    and features for them, and the default Kinetics-400 checkpoint exported to both formats by
    the command with its default --input."""
    import rajax
    from rajax.data.regions import central_square_crop, resize_square
    from rajax.data.video import probe, read_frames

    clips = []
    for name in KINETICS_CLIPS:
        path = input_path(f"data/kinetics_clips/{name}")
        start = (probe(path).num_frames - CLIP_FRAMES) // 2
        clips.append(resize_square(central_square_crop(read_frames(path, np.arange(start, start + CLIP_FRAMES))), 224))
    clips = np.stack(clips)
    model, variables = rajax.load_i3d()
    logits, features = rajax_outputs(model, variables, clips)
    out = tmp_path_factory.mktemp("kinetics")
    outputs = {"pytorch-i3d": out / "i3d_kinetics400.pt", "deepmind": out / "rgb_kinetics400" / "model.ckpt"}
    for name, output in outputs.items():
        assert cli.main(["export-weights", "--format", name, "--output", str(output)]) == 0
    labels = rajax.kinetics400_labels()
    return {"clips": clips, "logits": logits, "features": features, "outputs": outputs,
            "variables": jax.device_get(variables), "expected": [labels.index(c) for c in KINETICS_CLIPS.values()]}


def check_against_rajax(kinetics, logits, features, what):
    difference = np.abs(logits - kinetics["logits"]).max(axis=1)
    print(f"\n{what}: max |logit difference| per clip " + ", ".join(
        f"{clip} {d:.2e}" for clip, d in zip(KINETICS_CLIPS, difference)))
    np.testing.assert_allclose(logits, kinetics["logits"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(features, kinetics["features"], rtol=0, atol=1e-4)
    assert list(logits.argmax(axis=1)) == kinetics["expected"]  # arm wrestling, flipping pancake


@pytest.mark.slow
def test_kinetics_pytorch_export_runs_in_the_reference_and_classifies_both_clips(kinetics):
    path = kinetics["outputs"]["pytorch-i3d"]
    state = torch.load(path, weights_only=True)
    assert all(torch.equal(state[k], torch.ones_like(state[k])) for k in state if k.endswith("bn.weight"))
    assert state._metadata[""]["rajax_export"]["bn_epsilon"] == 1e-3
    model = TorchInceptionI3d(num_classes=400)
    model.load_state_dict(state, strict=True)
    check_against_rajax(kinetics, *torch_outputs(model.eval(), kinetics["clips"]), "pytorch-i3d")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        back = weights.convert("pytorch-i3d", path)
    assert not [w for w in said if "gamma" in str(w.message)]  # unit gamma: nothing folded
    assert_same_arrays(back, kinetics["variables"])


@pytest.mark.slow
def test_kinetics_deepmind_export_runs_in_tensorflow_and_classifies_both_clips(kinetics):
    import tensorflow as tf

    prefix = kinetics["outputs"]["deepmind"]
    shapes = tf.train.load_checkpoint(str(prefix)).get_variable_to_shape_map()
    assert len(shapes) == 230
    assert shapes[f"RGB/inception_i3d/{QUIRK}/conv_3d/w"] == [3, 3, 3, 32, 128]
    assert "RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0b_3x3/conv_3d/w" not in shapes
    assert shapes["RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/beta"] == [1, 1, 1, 1, 64]
    assert shapes["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"] == [400]
    _, tf_features, tf_logits = tf_i3d(read_deepmind_checkpoint(prefix), kinetics["clips"])
    check_against_rajax(kinetics, tf_logits, tf_features, "deepmind")
    assert_same_arrays(weights.convert("deepmind", prefix), kinetics["variables"])
