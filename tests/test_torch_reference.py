"""The Flax I3D against the independent PyTorch reference (rajax.reference.torch_i3d).

The reference is written from the architecture, with the parameter names of the PyTorch port
piergiaj/pytorch-i3d, so these tests check three things at once: the Flax network computes
DeepMind's function, the ``pytorch-i3d`` converter maps that port's state dict correctly, and the
reference the benchmark times against computes the same function as rajax.
"""

# torch before anything that may import tensorflow (torchvision segfaults the other way round).
import torch  # isort: skip

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageSequence

import rajax
from rajax import weights
from rajax.models.i3d import InceptionI3d
from rajax.reference import architecture
from rajax.reference.torch_i3d import (
    InceptionI3d as TorchI3d,
    model_from_flax,
    randomize_,
    state_dict_from_flax,
)


def _torch_run(model, clips_nthwc: np.ndarray, output: str) -> np.ndarray:
    """Runs the torch reference on rajax-layout clips [B, N, H, W, 3]."""
    x = torch.from_numpy(np.ascontiguousarray(clips_nthwc.transpose(0, 4, 1, 2, 3)))
    with torch.inference_mode():
        return model(x, output=output).numpy()


def _assert_close(actual, expected, rtol, what):
    """max |actual - expected| within rtol of the largest |expected|: a float32-scale criterion
    that does not let a tiny output pass by absolute tolerance alone."""
    scale = float(np.abs(expected).max())
    error = float(np.abs(actual - expected).max())
    assert scale > 1e-3, f"{what}: the reference output is degenerate (max |x| = {scale})"
    assert error <= rtol * scale, f"{what}: max abs diff {error:.3g} > {rtol} x {scale:.3g}"
    return error / scale


@pytest.fixture(scope="module")
def random_torch_model():
    """The reference with random weights and random BatchNorm statistics (so that swapping beta,
    mean or variance anywhere would show), in eval mode."""
    torch.manual_seed(0)
    return randomize_(TorchI3d(num_classes=400), seed=1).eval()


@pytest.fixture(scope="module")
def converted_from_torch(random_torch_model, tmp_path_factory):
    """Its state dict saved as a ``.pt`` file and converted by rajax's ``pytorch-i3d`` converter."""
    path = tmp_path_factory.mktemp("pytorch_i3d") / "random_i3d.pt"
    torch.save(random_torch_model.state_dict(), path)
    return jax.device_put(weights.convert("pytorch-i3d", path))


def test_state_dict_has_the_pytorch_ports_names(random_torch_model):
    keys = list(random_torch_model.state_dict())
    # 3 stem units + 9 blocks x 6 units, each conv weight + 5 BatchNorm entries, + logits weight/bias.
    assert len(keys) == 57 * 6 + 2
    for key in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Conv3d_2c_3x3.bn.num_batches_tracked",
        "Mixed_3b.b0.conv3d.weight",
        "Mixed_4f.b1b.bn.bias",
        "Mixed_5c.b2b.bn.running_mean",
        "Mixed_5c.b3b.conv3d.weight",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ):
        assert key in keys, key
    state = random_torch_model.state_dict()
    assert tuple(state["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(state["Mixed_4b.b1b.conv3d.weight"].shape) == (208, 96, 3, 3, 3)
    assert random_torch_model.Mixed_3b.b0.bn.eps == pytest.approx(1e-3)
    assert random_torch_model.Mixed_3b.b0.bn.momentum == pytest.approx(0.01)


def test_state_dict_from_flax_inverts_the_pytorch_i3d_converter(random_torch_model, converted_from_torch):
    """torch state dict -> rajax converter -> state_dict_from_flax gives back every array exactly."""
    original = random_torch_model.state_dict()
    back = state_dict_from_flax(converted_from_torch)
    assert set(back) == set(original)
    for key, value in original.items():
        assert back[key].shape == value.shape, key
        assert torch.equal(back[key].to(value.dtype), value), key


@pytest.mark.parametrize(
    "options",
    [{}, {"fuse_1x1": True, "fold_batch_norm": True}],
    ids=["plain", "fused_1x1_folded_bn"],
)
def test_flax_matches_torch_with_random_weights(random_torch_model, converted_from_torch, options):
    """Odd sizes (17 frames, 65 x 63) so that every stride-2 layer pads asymmetrically, and two
    clips so that batch handling is covered. Logits, features and an inner endpoint agree to
    float32 precision."""
    rng = np.random.default_rng(0)
    clips = rng.uniform(-1, 1, (2, 17, 65, 63, 3)).astype(np.float32)
    model = InceptionI3d(num_classes=400, **options)
    apply = jax.jit(model.apply, static_argnames=("output",))

    logits = np.asarray(apply(converted_from_torch, clips, output="logits"))
    features = np.asarray(apply(converted_from_torch, clips, output="features"))
    torch_logits = _torch_run(random_torch_model, clips, "logits")
    torch_features = _torch_run(random_torch_model, clips, "features")

    assert logits.shape == torch_logits.shape == (2, 400)
    assert features.shape == torch_features.shape == (2, 2, 1024)  # Mixed_5c has 3 positions
    errors = {
        "features": _assert_close(features, torch_features, 1e-4, "features"),
        "logits": _assert_close(logits, torch_logits, 1e-4, "logits"),
    }
    if not options:  # one inner endpoint too (its own compilation: once is enough)
        mixed_4f = np.asarray(apply(converted_from_torch, clips, output="Mixed_4f"))
        torch_mixed_4f = _torch_run(random_torch_model, clips, "Mixed_4f").transpose(0, 2, 3, 4, 1)
        assert mixed_4f.shape == torch_mixed_4f.shape == (2, 5, 5, 4, 832)
        errors["Mixed_4f"] = _assert_close(mixed_4f, torch_mixed_4f, 1e-4, "Mixed_4f")
    print("max |flax - torch| / max |torch|:", {k: f"{v:.1e}" for k, v in errors.items()})
    # The two clips differ, so a port that mixed up the batch would not match both.
    assert np.abs(torch_logits[0] - torch_logits[1]).max() > 1e-2


def test_multiply_accumulate_count_matches_a_real_forward_pass(random_torch_model):
    """The benchmark's FLOP count (architecture.forward_macs) against the convolutions that a
    torch forward pass actually runs, counted from their real output shapes."""
    counted = []

    def count(module, inputs, output):
        kernel_size = module.weight[0].numel()  # in_channels x kt x kh x kw
        counted.append(output[0].numel() * kernel_size)  # per clip

    hooks = [
        m.register_forward_hook(count)
        for m in random_torch_model.modules()
        if isinstance(m, torch.nn.Conv3d)
    ]
    try:
        for frames, height, width in ((17, 65, 63), (16, 64, 64)):
            counted.clear()
            clips = np.zeros((1, frames, height, width, 3), np.float32)
            _torch_run(random_torch_model, clips, "logits")
            assert sum(counted) == architecture.forward_macs(frames, height, width, num_classes=400)
            counted.clear()
            _torch_run(random_torch_model, clips, "features")
            assert sum(counted) == architecture.forward_macs(frames, height, width)
    finally:
        for hook in hooks:
            hook.remove()
    # The figure quoted for I3D at 64 x 224 x 224 (about 111 GMACs), from the same count.
    assert architecture.forward_macs(64, 224, 224) == pytest.approx(111.15e9, rel=1e-3)


def _decode_gif(path) -> np.ndarray:
    """All frames of the sample GIF as [1, N, 224, 224, 3] in [-1, 1] (pixel = (x + 1) / 2)."""
    with Image.open(path) as gif:
        frames = [np.asarray(frame.convert("RGB"), np.float32) for frame in ImageSequence.Iterator(gif)]
    return (np.stack(frames)[None] / 255.0 * 2.0 - 1.0).astype(np.float32)


@pytest.mark.slow
def test_kinetics_weights_agree_with_torch_on_the_cricket_clip(cricket_gif):
    """The real Kinetics-400 network in both frameworks on the real clip: the same logits to
    float32 precision and "playing cricket" first in both."""
    clips = _decode_gif(cricket_gif)
    assert clips.shape == (1, 79, 224, 224, 3)

    model, variables = rajax.load_i3d()
    flax_logits = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(clips)))[0]
    torch_model = model_from_flax(variables)
    torch_logits = _torch_run(torch_model, clips, "logits")[0]

    relative = _assert_close(flax_logits, torch_logits, 1e-3, "Kinetics-400 logits")
    print(f"cricket clip: max |flax - torch| / max |logit| = {relative:.2e}")
    labels = rajax.kinetics400_labels()
    assert labels[int(np.argmax(torch_logits))] == "playing cricket"
    assert labels[int(np.argmax(flax_logits))] == "playing cricket"
    # The same top-5 in the same order: the agreement is not limited to the winner.
    np.testing.assert_array_equal(np.argsort(-flax_logits)[:5], np.argsort(-torch_logits)[:5])
