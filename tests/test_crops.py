"""Regions cut on the device (rajax.data.crops) against TensorFlow's host resize they replaced.

TensorFlow's ``tf.image.resize(..., antialias=True)`` on crops cut with NumPy is the independent
computation: it is what the host pipeline ran before the crops moved into the compiled steps, and
it shares no code with rajax's JAX implementation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rajax.data import crops, regions, sampling, video
from rajax.data.pipeline import load_video_frames


def tf_crop_resize(frames: np.ndarray, box, size: int) -> np.ndarray:
    """The host path: crop with NumPy, antialiased bilinear resize with TensorFlow, [0, 255] float32."""
    import tensorflow as tf

    x0, y0, side = (int(v) for v in box)
    crop = tf.cast(frames[:, y0:y0 + side, x0:x0 + side], tf.float32)
    return tf.clip_by_value(tf.image.resize(crop, (size, size), method="bilinear", antialias=True), 0, 255).numpy()


@pytest.mark.parametrize("box, size", [
    ((0, 0, 240), 224),  # a full Breakfast square, shrunk
    ((45, 45, 150), 224),  # a 5/8 grid cell of 240, enlarged
    ((7, 11, 61), 224),  # a small actor square, enlarged 3.7x
    ((0, 0, 224), 224),  # no resampling at all: exact
    ((3, 5, 200), 32),  # shrunk 6x (antialiasing matters)
    ((10, 20, 230), 112),
])
def test_device_crop_equals_the_tensorflow_host_resize(box, size):
    rng = np.random.default_rng(sum(box))
    canvas = rng.integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)  # pixels outside the box must not leak in
    got = np.asarray(jax.jit(crops.crop_resize, static_argnums=2)(canvas, jnp.asarray(box), size))
    expected = tf_crop_resize(canvas, box, size)
    assert got.shape == expected.shape == (3, size, size, 3)
    # Grey levels in [0, 255]: a hundredth of a level is float32 rounding in two summation orders.
    np.testing.assert_allclose(got, expected, rtol=0, atol=0.02)
    if box[2] == size:
        np.testing.assert_array_equal(got, canvas[:, box[1]:box[1] + size, box[0]:box[0] + size])


def test_padding_and_neighbours_never_reach_a_crop():
    rng = np.random.default_rng(1)
    square = rng.integers(0, 256, (2, 100, 100, 3), dtype=np.uint8)
    canvas = np.full((2, 128, 128, 3), 255, np.uint8)
    canvas[:, :100, :100] = square
    clips = jax.jit(crops.region_clips, static_argnums=2)(canvas, jnp.asarray(regions.region_boxes(100)), 64)
    alone = jax.jit(crops.region_clips, static_argnums=2)(square, jnp.asarray(regions.region_boxes(100)), 64)
    # Equal up to float32 summation order (the canvas adds zero-weight terms); a single leaked
    # padding pixel would move a value by at least 1/255 of its weight, far above this.
    np.testing.assert_allclose(clips, alone, rtol=0, atol=1e-6)
    assert clips.shape == (11, 2, 64, 64, 3) and float(jnp.abs(clips).max()) <= 1.0


@pytest.fixture(scope="module")
def kinetics_functions():
    """The Kinetics I3D and its compiled device-path and host-path functions (compiled once)."""
    import rajax
    from rajax.train import backbone

    model, variables = rajax.load_i3d()
    return variables, {
        "device_features": jax.jit(lambda v, f, b: backbone.video_features(model, v, f, b, 224, "one_shot", 8)),
        "device_logits": jax.jit(lambda v, f, b: model.apply(v, crops.region_clip(f, b, 224)[None])),
        "host_features": jax.jit(lambda v, x: model.apply(v, x, output="features")),
        "host_logits": jax.jit(lambda v, x: model.apply(v, x)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name, actor", [
    ("dancer/dancer.avi", (150, 40, 260)),
    ("kinetics_clips/arm_wrestling.mp4", (60, 70, 120)),
    ("kinetics_clips/flipping_pancake.mkv", (20, 10, 200)),
])
def test_features_and_logits_from_the_device_path_equal_the_host_path(input_path, kinetics_functions, name, actor):
    """Real videos through the Kinetics I3D: regions cut on the device vs TensorFlow on the host."""
    variables, run = kinetics_functions
    path = str(input_path(f"data/{name}"))
    names = ("full", "grid_1_2", "actor")
    # The canvas holds the native square (496 for the dancer), so both paths see the same pixels.
    frames, boxes = load_video_frames(path, regions=names, actor_square=actor, num_timesteps=2, timestep_length=8,
                                      frame_side=512)
    device_features = np.asarray(run["device_features"](variables, frames, boxes))
    device_logits = np.asarray(run["device_logits"](variables, frames, boxes[0]))

    info = video.probe(path)
    square = regions.central_square_crop(video.read_frames(path, sampling.uniform_timesteps(info.num_frames, 2, 8)))
    host_boxes = regions.region_boxes(square.shape[1], names, actor)
    host_clips = np.stack([tf_crop_resize(square, box, 224) for box in host_boxes]) / 127.5 - 1.0
    host_features = np.asarray(run["host_features"](variables, host_clips))
    host_logits = np.asarray(run["host_logits"](variables, host_clips[:1]))

    assert device_features.shape == host_features.shape == (3, 1, 1024)
    # Input pixels agree to ~1e-2 grey levels (test above): features and logits to float32 noise.
    np.testing.assert_allclose(device_features, host_features, rtol=0, atol=2e-4 * np.abs(host_features).max())
    np.testing.assert_allclose(device_logits, host_logits, rtol=0, atol=2e-4 * np.abs(host_logits).max())
    assert int(np.argmax(device_logits)) == int(np.argmax(host_logits))
