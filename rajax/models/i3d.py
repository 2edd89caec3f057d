"""Inflated Inception-v1 (I3D, Carreira and Zisserman 2017) in Flax, equal to DeepMind's network.

The module reproduces ``kinetics-i3d/i3d.py`` (Sonnet v1, TensorFlow 1) to float32 precision:

* scope names: ``Conv3d_1a_7x7`` ... ``Mixed_5c`` and ``Logits``, each Inception block holding
  ``Branch_0/Conv3d_0a_1x1``, ``Branch_1/Conv3d_0a_1x1``, ``Branch_1/Conv3d_0b_3x3``,
  ``Branch_2/...`` and ``Branch_3/Conv3d_0b_1x1``; every unit has ``kernel`` and ``beta`` params and
  ``mean``/``var`` batch statistics (the logits unit: ``kernel`` and ``bias``).
* TensorFlow's 'SAME' padding, which pads one more cell after than before when the total is odd
  (the stride-2 layers); ``lax`` uses the same rule. Max pools pad with -inf, so a padded cell
  never wins.
* Sonnet v1 BatchNorm: no scale (gamma), offset ``beta``, epsilon 1e-3, moving averages with decay
  0.999 (``new = 0.999 * old + 0.001 * batch``), biased batch variance, moving averages at inference.
* Dropout before the logits. The original takes a *keep* probability (``dropout_keep_prob``, 1.0
  at evaluation, 0.5 in DeepMind's training); here ``dropout_rate`` is the *drop* probability,
  ``dropout_rate = 1 - dropout_keep_prob``.

Features for the rest of rajax (``output='features'``) are Mixed_5c averaged by the original
2x7x7, stride-1, VALID pool: [B, N/8 - 1, 1024] for N input frames at 224x224. Two inputs
crash the original and get a documented choice here:

* spatial sizes other than 224 (Mixed_5c is not 7x7): the spatial average is taken over the whole
  Mixed_5c map (global average), which equals the 7x7 window at 224;
* fewer than 9 frames (a single temporal position at Mixed_5c): the temporal window shrinks to that
  one position, so one 8-frame timestep gives one feature.

``temporal_pool='none'`` skips the temporal window altogether: one feature per 8-frame timestep
(N/8 positions), as the paper describes its features.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

# Endpoints in network order, as in DeepMind's VALID_ENDPOINTS (without 'Predictions').
ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
)
# Besides the endpoints, `output` accepts these two.
FEATURES = "features"
LOGITS = "logits"

# Output channels of each Inception block's units, in the original's order:
# Branch_0 1x1, Branch_1 1x1 -> 3x3, Branch_2 1x1 -> 3x3, Branch_3 max-pool -> 1x1.
INCEPTION_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# The stem: (name, output channels, kernel, stride) of each convolution.
STEM_UNITS = {
    "Conv3d_1a_7x7": (64, (7, 7, 7), (2, 2, 2)),
    "Conv3d_2b_1x1": (64, (1, 1, 1), (1, 1, 1)),
    "Conv3d_2c_3x3": (192, (3, 3, 3), (1, 1, 1)),
}
# Max pools: (window, stride); all 'SAME'.
MAX_POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
# The blocks that Multi-Regional fine-tuning trains (docs/method.md); everything below stays frozen.
FINE_TUNED_BLOCKS = ("Mixed_4f", "Mixed_5b", "Mixed_5c")

BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_DECAY = 0.999


def scaled_channels(channels: int, width_multiplier: float) -> int:
    """Channel count of a thinner variant (for tests); the full network uses multiplier 1."""
    return max(1, int(round(channels * width_multiplier)))


def feature_channels(width_multiplier: float = 1.0) -> int:
    """Channels of ``output='features'``: the four branch outputs of Mixed_5c (1024 at full width)."""
    c = INCEPTION_CHANNELS["Mixed_5c"]
    return sum(scaled_channels(c[i], width_multiplier) for i in (0, 2, 4, 5))


def max_pool_same(x: jax.Array, window: Sequence[int], strides: Sequence[int]) -> jax.Array:
    """TensorFlow 'SAME' max pool over (time, height, width): padding never wins the max."""
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), "SAME"
    )


# How 3D convolutions are computed: "native" (one 3D convolution), "as_2d" (2D convolutions over
# batch x time frames, see conv3d_same_as_2d) or "auto" (as_2d on a CPU, native elsewhere).
CONV_IMPLS = ("auto", "native", "as_2d")


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after); the odd cell goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv3d_same_as_2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int]) -> jax.Array:
    """The 'SAME' 3D convolution computed with 2D convolutions over (batch x time) frames.

    XLA:CPU runs 2D convolutions through its optimised Eigen kernels and 3D ones several times
    more slowly (the 7x7x7 stride-2 stem 6-8x), so on a CPU this form is much faster; the result
    is the same up to float rounding. Few input channels (the RGB stem): the temporal taps are
    stacked on channels, one 2D convolution contracting over kt x kh x kw x C_in. Otherwise: one
    2D convolution per temporal tap, summed (no kt-fold copy of a wide input kept for training).
    """
    kt, kh, kw, in_channels, out_channels = kernel.shape
    batch, frames, height, width, _ = x.shape
    st = strides[0]
    out_frames = -(-frames // st)
    spatial_pads = [_same_padding(height, kh, strides[1]), _same_padding(width, kw, strides[2])]
    padded = jnp.pad(x, ((0, 0), _same_padding(frames, kt, st), (0, 0), (0, 0), (0, 0)))
    # taps[i]: for every output frame, the input frame that temporal tap i of the kernel sees.
    taps = [padded[:, i : i + st * (out_frames - 1) + 1 : st] for i in range(kt)]

    def conv2d(frames_: jax.Array, kernel_2d: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(
            frames_.reshape(batch * out_frames, height, width, frames_.shape[-1]),
            kernel_2d,
            window_strides=tuple(strides[1:]),
            padding=spatial_pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    if in_channels * kt <= 64:
        stacked = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * in_channels, out_channels)
        y = conv2d(jnp.concatenate(taps, axis=-1), stacked)
    else:
        y = conv2d(taps[0], kernel[0])
        for i in range(1, kt):
            y = y + conv2d(taps[i], kernel[i])
    return y.reshape(batch, out_frames, *y.shape[1:])


def conv3d_same(
    x: jax.Array, kernel: jax.Array, strides: Sequence[int], impl: str = "native"
) -> jax.Array:
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = "as_2d" if jax.default_backend() == "cpu" else "native"
    # 1x1x1 convolutions are matrix products that every backend already runs well.
    if impl == "as_2d" and (kernel.shape[:3] != (1, 1, 1) or tuple(strides) != (1, 1, 1)):
        return conv3d_same_as_2d(x, kernel, strides)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=tuple(strides),
        padding="SAME",
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
    )


class Unit3D(nn.Module):
    """Conv3d (no bias) + Sonnet BatchNorm (offset only) + ReLU, or a plain conv with bias.

    ``train_batch_norm`` decides, when ``train`` is true, whether this unit normalises with batch
    statistics and updates its moving averages (a frozen unit keeps its moving averages).
    With ``fold_batch_norm``, inference folds the normalisation into the kernel and a per-channel
    shift, saving one pass over the activations (equal up to float rounding).
    """

    in_features: int
    features: int
    kernel_size: tuple[int, int, int] = (1, 1, 1)
    strides: tuple[int, int, int] = (1, 1, 1)
    use_batch_norm: bool = True
    use_bias: bool = False
    use_relu: bool = True
    train_batch_norm: bool = True
    fold_batch_norm: bool = False
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    def setup(self):
        self.kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, self.in_features, self.features),
            jnp.float32,
        )
        if self.use_bias:
            self.bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        if self.use_batch_norm:
            self.beta = self.param("beta", nn.initializers.zeros, (self.features,), jnp.float32)
            self.mean = self.variable(
                "batch_stats", "mean", jnp.zeros, (self.features,), jnp.float32
            )
            self.var = self.variable("batch_stats", "var", jnp.ones, (self.features,), jnp.float32)

    def uses_batch_statistics(self, train: bool) -> bool:
        return self.use_batch_norm and train and self.train_batch_norm

    def conv_kernel(self, train: bool) -> jax.Array:
        """The kernel the convolution uses: folded with the BatchNorm scale when allowed."""
        if self.fold_batch_norm and self.use_batch_norm and not self.uses_batch_statistics(train):
            return self.kernel * lax.rsqrt(self.var.value + BATCH_NORM_EPSILON)
        return self.kernel

    def after_conv(self, y: jax.Array, train: bool) -> jax.Array:
        """Everything after the convolution: bias or BatchNorm, then ReLU."""
        if self.use_bias:
            y = y + self.bias.astype(y.dtype)
        if self.use_batch_norm:
            y = self._batch_norm(y, train)
        if self.use_relu:
            y = nn.relu(y)
        return y

    def _batch_norm(self, y: jax.Array, train: bool) -> jax.Array:
        if self.uses_batch_statistics(train):
            axes = tuple(range(y.ndim - 1))
            y32 = y.astype(jnp.float32)
            mean = jnp.mean(y32, axes)
            var = jnp.mean(jnp.square(y32 - mean), axes)
            if not self.is_initializing():
                self.mean.value = BATCH_NORM_DECAY * self.mean.value + (1 - BATCH_NORM_DECAY) * mean
                self.var.value = BATCH_NORM_DECAY * self.var.value + (1 - BATCH_NORM_DECAY) * var
        else:
            mean, var = self.mean.value, self.var.value
        inv = lax.rsqrt(var + BATCH_NORM_EPSILON)
        if self.fold_batch_norm and not self.uses_batch_statistics(train):
            # The kernel already carries `inv`; only the shift is left.
            return y + (self.beta - mean * inv).astype(y.dtype)
        return (y * inv.astype(y.dtype)) + (self.beta - mean * inv).astype(y.dtype)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kernel = self.conv_kernel(train).astype(self.dtype)
        y = conv3d_same(x.astype(self.dtype), kernel, self.strides, self.conv_impl)
        return self.after_conv(y, train)


class Branch(nn.Module):
    """One branch of an Inception block: optional 3x3x3 max pool, then its units in order."""

    units: tuple[tuple[str, int, int, tuple[int, int, int]], ...]  # (name, in, out, kernel)
    pool_first: bool = False
    unit_options: dict | None = None

    def setup(self):
        options = self.unit_options or {}
        for name, in_features, features, kernel in self.units:
            setattr(self, name, Unit3D(in_features, features, kernel, name=name, **options))

    def unit(self, index: int) -> Unit3D:
        return getattr(self, self.units[index][0])

    def __call__(self, x: jax.Array, train: bool, skip_first: bool = False) -> jax.Array:
        """Runs the branch; with ``skip_first``, ``x`` is already the first unit's output."""
        if self.pool_first:
            x = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        for index in range(len(self.units)):
            if not (skip_first and index == 0):
                x = self.unit(index)(x, train)
        return x


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels.

    ``fuse_1x1`` runs the three 1x1x1 convolutions that read the block input (Branch_0, and the
    first units of Branch_1 and Branch_2) as one convolution with concatenated kernels: one read of
    the input instead of three. BatchNorm is per channel, so splitting the fused output and
    normalising each part is exactly the unfused computation.
    """

    in_features: int
    channels: tuple[int, int, int, int, int, int]
    fuse_1x1: bool = False
    unit_options: dict | None = None

    def setup(self):
        c, cin = self.channels, self.in_features
        make = functools.partial(Branch, unit_options=self.unit_options)
        self.Branch_0 = make((("Conv3d_0a_1x1", cin, c[0], (1, 1, 1)),))
        self.Branch_1 = make(
            (("Conv3d_0a_1x1", cin, c[1], (1, 1, 1)), ("Conv3d_0b_3x3", c[1], c[2], (3, 3, 3)))
        )
        self.Branch_2 = make(
            (("Conv3d_0a_1x1", cin, c[3], (1, 1, 1)), ("Conv3d_0b_3x3", c[3], c[4], (3, 3, 3)))
        )
        self.Branch_3 = make((("Conv3d_0b_1x1", cin, c[5], (1, 1, 1)),), pool_first=True)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        branches = (self.Branch_0, self.Branch_1, self.Branch_2)
        if self.fuse_1x1:
            units = [branch.unit(0) for branch in branches]
            kernel = jnp.concatenate([u.conv_kernel(train) for u in units], axis=-1)
            dtype = units[0].dtype
            fused = conv3d_same(x.astype(dtype), kernel.astype(dtype), (1, 1, 1), units[0].conv_impl)
            splits = jnp.split(fused, [self.channels[0], self.channels[0] + self.channels[1]], -1)
            first_outputs = [u.after_conv(y, train) for u, y in zip(units, splits)]
            outputs = [
                branch(y, train, skip_first=True) for branch, y in zip(branches, first_outputs)
            ]
        else:
            outputs = [branch(x, train) for branch in branches]
        outputs.append(self.Branch_3(x, train))
        return jnp.concatenate(outputs, axis=-1)


class Logits(nn.Module):
    """The original classifier: dropout, then a 1x1x1 convolution with bias (``Conv3d_0c_1x1``)."""

    in_features: int
    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
        x = features.astype(jnp.float32)[:, :, None, None, :]  # [B, T', 1, 1, C]
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        logits = Unit3D(
            self.in_features,
            self.num_classes,
            use_batch_norm=False,
            use_bias=True,
            use_relu=False,
            name="Conv3d_0c_1x1",
        )(x, train)
        return jnp.mean(logits[:, :, 0, 0, :], axis=1)  # the original averages logits over time


def pool_mixed_5c(x: jax.Array, temporal_pool: str) -> jax.Array:
    """The 2x7x7 stride-1 average pool on Mixed_5c (see the module docstring), as [B, T', C]."""
    per_position = jnp.mean(x.astype(jnp.float32), axis=(2, 3))
    if temporal_pool == "none" or per_position.shape[1] < 2:
        return per_position
    if temporal_pool == "valid":
        return 0.5 * (per_position[:, :-1] + per_position[:, 1:])
    raise ValueError(f"temporal_pool must be 'valid' or 'none', got {temporal_pool!r}")


class InceptionI3d(nn.Module):
    """DeepMind's InceptionI3d; ``model.apply(variables, clips, output=...)``.

    ``clips``: [B, N, H, W, 3] in [-1, 1]. ``output``: ``'logits'`` ([B, num_classes], averaged over
    time like the original), ``'features'`` ([B, T', C], see the module docstring), or an endpoint
    name (its activation; the network stops there).

    Options: ``dtype`` is the compute dtype (parameters stay float32; features and logits come back
    float32); ``width_multiplier`` < 1 gives thin variants for tests; ``batch_norm_train_blocks``
    names the endpoints whose BatchNorm uses batch statistics when ``train`` is true (None: all, as
    in the original; frozen blocks should keep their moving averages); ``remat_blocks`` names the
    blocks recomputed in the backward pass instead of stored (gradient checkpointing);
    ``conv_impl`` chooses how 3D convolutions are computed (``CONV_IMPLS``; the default ``'auto'``
    uses 2D convolutions on a CPU, where XLA's 3D convolutions are slow, and native ones elsewhere).
    """

    num_classes: int = 400
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    temporal_pool: str = "valid"
    width_multiplier: float = 1.0
    fuse_1x1: bool = False
    fold_batch_norm: bool = False
    batch_norm_train_blocks: tuple[str, ...] | None = None
    remat_blocks: tuple[str, ...] = ()
    conv_impl: str = "auto"

    def _unit_options(self, endpoint: str) -> dict:
        train_bn = self.batch_norm_train_blocks is None or endpoint in self.batch_norm_train_blocks
        return dict(
            train_batch_norm=train_bn, fold_batch_norm=self.fold_batch_norm, dtype=self.dtype,
            conv_impl=self.conv_impl,
        )

    @nn.compact
    def __call__(self, clips: jax.Array, train: bool = False, output: str = LOGITS) -> jax.Array:
        if output not in ENDPOINTS + (FEATURES, LOGITS):
            raise ValueError(
                f"unknown output {output!r}: choose 'logits', 'features' or one of {ENDPOINTS}"
            )
        if clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"clips must be [batch, frames, height, width, 3], got {clips.shape}")
        for name in self.remat_blocks:
            if name not in INCEPTION_CHANNELS:
                raise ValueError(f"remat_blocks: {name!r} is not an Inception block")
        width = functools.partial(scaled_channels, width_multiplier=self.width_multiplier)

        x = clips.astype(self.dtype)
        channels = 3
        for endpoint in ENDPOINTS[:-1]:
            if endpoint in STEM_UNITS:
                features, kernel, strides = STEM_UNITS[endpoint]
                x = Unit3D(
                    channels, width(features), kernel, strides, name=endpoint,
                    **self._unit_options(endpoint),
                )(x, train)
                channels = width(features)
            elif endpoint in MAX_POOLS:
                x = max_pool_same(x, *MAX_POOLS[endpoint])
            else:
                block_channels = tuple(width(c) for c in INCEPTION_CHANNELS[endpoint])
                block = InceptionBlock
                if endpoint in self.remat_blocks:
                    block = nn.remat(InceptionBlock, static_argnums=(2,))
                x = block(
                    channels, block_channels, self.fuse_1x1, self._unit_options(endpoint),
                    name=endpoint,
                )(x, train)
                c = block_channels
                channels = c[0] + c[2] + c[4] + c[5]
            if output == endpoint:
                return x

        features = pool_mixed_5c(x, self.temporal_pool)
        if output == FEATURES:
            return features
        logits = Logits(channels, self.num_classes, self.dropout_rate, name="Logits")(
            features, train
        )
        return logits
