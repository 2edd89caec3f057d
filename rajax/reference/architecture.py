"""DeepMind's InceptionI3d as data, and its multiply-accumulate count at a given input size.

The layer table and the counts are plain Python, so that the benchmark can count the work of the
network it times without building it, and the tests can check this count against the shapes a
real forward pass produces. The Inception channel table and the fine-tuned blocks come from
rajax.models.i3d (so importing this module imports JAX, though nothing here runs it). Layer sizes
are those of Carreira & Zisserman (CVPR 2017), Inception-v1 inflated to 3D; the padding rule is
TensorFlow's 'SAME' (output size = ceil(input / stride)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The model's own tables, so that the network counted is the network that runs. INCEPTION_CHANNELS:
# per block, the output channels of Branch_0 1x1, Branch_1 1x1 -> 3x3, Branch_2 1x1 -> 3x3 and
# Branch_3 1x1 after the pool.
from rajax.models.i3d import FINE_TUNED_BLOCKS, INCEPTION_CHANNELS

# The blocks the stage-1 fine-tuning trains (docs/method.md); everything before them is frozen.
TRAINABLE_BLOCKS = FINE_TUNED_BLOCKS


@dataclass(frozen=True)
class Unit:
    """Conv3d (+ BatchNorm + ReLU), TF 'SAME' padding."""

    name: str
    channels: int
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int] = (1, 1, 1)


@dataclass(frozen=True)
class MaxPool:
    """Max pool, TF 'SAME' padding (padding never wins the max)."""

    name: str
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]


@dataclass(frozen=True)
class Inception:
    name: str

    @property
    def channels(self) -> tuple[int, int, int, int, int, int]:
        return INCEPTION_CHANNELS[self.name]

    @property
    def out_channels(self) -> int:
        b0, _, b1, _, b2, b3 = self.channels
        return b0 + b1 + b2 + b3


# The trunk up to Mixed_5c, endpoint by endpoint.
TRUNK = (
    Unit("Conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2)),
    MaxPool("MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    Unit("Conv3d_2b_1x1", 64, (1, 1, 1)),
    Unit("Conv3d_2c_3x3", 192, (3, 3, 3)),
    MaxPool("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    Inception("Mixed_3b"),
    Inception("Mixed_3c"),
    MaxPool("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    Inception("Mixed_4b"),
    Inception("Mixed_4c"),
    Inception("Mixed_4d"),
    Inception("Mixed_4e"),
    Inception("Mixed_4f"),
    MaxPool("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    Inception("Mixed_5b"),
    Inception("Mixed_5c"),
)

FEATURE_CHANNELS = Inception("Mixed_5c").out_channels  # 1024
AVG_POOL_KERNEL = (2, 7, 7)  # the stride-1 VALID average pool before the logits


def same_output_size(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after): the extra pixel goes after, as in TF."""
    total = max((same_output_size(size, stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def avg_pool_kernel(t: int, h: int, w: int) -> tuple[int, int, int]:
    """The 2x7x7 stride-1 VALID average pool on Mixed_5c, where the original crashes adapted.

    At 224x224 and >= 9 frames this is exactly the original window. Where the original crashes
    it follows rajax.models.i3d's documented choice: the spatial window covers the whole Mixed_5c
    map (a global spatial average, which is the 7x7 window at 224), and the temporal window
    shrinks to one position when Mixed_5c has only one.
    """
    return min(AVG_POOL_KERNEL[0], t), h, w


@dataclass(frozen=True)
class ConvWork:
    """One convolution executed by a forward pass at a given input size."""

    block: str  # endpoint name (Conv3d_1a_7x7, Mixed_4f, Logits, ...)
    name: str  # unit name inside the block (b0, b1a, ..., or '' for a stem unit)
    in_channels: int
    out_channels: int
    kernel: tuple[int, int, int]
    out_shape: tuple[int, int, int]  # T, H, W of the output
    reads_block_input: bool  # reads the block's input (directly or through the branch-3 pool)

    @property
    def macs(self) -> int:
        t, h, w = self.out_shape
        kt, kh, kw = self.kernel
        return t * h * w * self.out_channels * self.in_channels * kt * kh * kw


def conv_work(frames: int, height: int, width: int, num_classes: int | None = 400) -> list[ConvWork]:
    """Every convolution of one clip's forward pass, with its output size.

    `num_classes=None` stops at the features (after the average pool, no logits layer).
    """
    t, h, w, c = frames, height, width, 3
    work: list[ConvWork] = []
    for layer in TRUNK:
        if isinstance(layer, Unit):
            t, h, w = (same_output_size(s, st) for s, st in zip((t, h, w), layer.stride))
            work.append(ConvWork(layer.name, "", c, layer.channels, layer.kernel, (t, h, w), True))
            c = layer.channels
        elif isinstance(layer, MaxPool):
            t, h, w = (same_output_size(s, st) for s, st in zip((t, h, w), layer.stride))
        else:
            b0, b1a, b1b, b2a, b2b, b3b = layer.channels
            one, three = (1, 1, 1), (3, 3, 3)
            for name, cin, cout, kernel, reads_input in (
                ("b0", c, b0, one, True),
                ("b1a", c, b1a, one, True),
                ("b1b", b1a, b1b, three, False),
                ("b2a", c, b2a, one, True),
                ("b2b", b2a, b2b, three, False),
                ("b3b", c, b3b, one, True),
            ):
                work.append(ConvWork(layer.name, name, cin, cout, kernel, (t, h, w), reads_input))
            c = layer.out_channels
    if num_classes is not None:
        kt, kh, kw = avg_pool_kernel(t, h, w)
        out = (t - kt + 1, h - kh + 1, w - kw + 1)
        work.append(ConvWork("Logits", "", c, num_classes, (1, 1, 1), out, True))
    return work


def forward_macs(frames: int, height: int, width: int, num_classes: int | None = None) -> int:
    """Multiply-accumulates of the convolutions of one clip's forward pass.

    Convolutions only: BatchNorm, ReLU and pooling add well under 1% and are memory-bound work
    that a FLOP rate should not be credited with. With `num_classes=None` (default) the count
    stops at the features, which is what feature extraction computes.
    """
    return sum(item.macs for item in conv_work(frames, height, width, num_classes))


def train_step_macs(
    frames: int,
    height: int,
    width: int,
    num_classes: int = 10,
    trainable: tuple[str, ...] = TRAINABLE_BLOCKS,
) -> int:
    """Multiply-accumulates of one clip's stage-1 training step (forward + backward).

    Forward: the whole network with a new `num_classes` classifier. Backward: for every
    convolution in the trainable blocks (and the classifier) the weight gradient costs as much as
    its forward, and the input gradient as much again, except where the input is frozen
    activations nobody needs a gradient for (the convolutions that read the first trainable
    block's input). Rematerialisation is not counted: it is overhead, not model work.
    """
    work = conv_work(frames, height, width, num_classes)
    total = sum(item.macs for item in work)
    trainable_set = set(trainable) | {"Logits"}
    first = trainable[0]
    for item in work:
        if item.block not in trainable_set:
            continue
        total += item.macs  # weight gradient
        if not (item.block == first and item.reads_block_input):
            total += item.macs  # input gradient
    return total


# Each Inception block's units: (branch, unit name, index of its output channels in the block's
# channel table, index of its input channels: None = the block's input).
_INCEPTION_UNITS = (
    ("Branch_0", "Conv3d_0a_1x1", 0, None),
    ("Branch_1", "Conv3d_0a_1x1", 1, None),
    ("Branch_1", "Conv3d_0b_3x3", 2, 1),
    ("Branch_2", "Conv3d_0a_1x1", 3, None),
    ("Branch_2", "Conv3d_0b_3x3", 4, 3),
    ("Branch_3", "Conv3d_0b_1x1", 5, None),
)


def parameter_shapes(num_classes: int = 400, width_multiplier: float = 1.0) -> dict[tuple[str, ...], tuple]:
    """Every variable of rajax's InceptionI3d as ``{(collection, *path): shape}``, from this table.

    Each unit has a kernel ``[kt, kh, kw, in, out]``, a BatchNorm offset ``beta [out]`` (no scale,
    as DeepMind's) and moving ``mean``/``var [out]``; the classifier a kernel ``[1, 1, 1, C, K]``
    and a bias. Plain Python: checking a checkpoint against it costs nothing, where tracing the
    model's initialisation takes seconds (tests check the two agree).
    """
    from rajax.models.i3d import scaled_channels

    shapes: dict[tuple[str, ...], tuple] = {}

    def unit(path: tuple[str, ...], kernel, cin: int, cout: int) -> None:
        shapes[("params", *path, "kernel")] = (*kernel, cin, cout)
        shapes[("params", *path, "beta")] = (cout,)
        shapes[("batch_stats", *path, "mean")] = (cout,)
        shapes[("batch_stats", *path, "var")] = (cout,)

    channels = 3
    for layer in TRUNK:
        if isinstance(layer, Unit):
            out = scaled_channels(layer.channels, width_multiplier)
            unit((layer.name,), layer.kernel, channels, out)
            channels = out
        elif isinstance(layer, Inception):
            widths = [scaled_channels(c, width_multiplier) for c in layer.channels]
            for branch, name, out_index, in_index in _INCEPTION_UNITS:
                kernel = (3, 3, 3) if name.endswith("3x3") else (1, 1, 1)
                cin = channels if in_index is None else widths[in_index]
                unit((layer.name, branch, name), kernel, cin, widths[out_index])
            channels = sum(widths[i] for i in (0, 2, 4, 5))
    shapes[("params", "Logits", "Conv3d_0c_1x1", "kernel")] = (1, 1, 1, channels, num_classes)
    shapes[("params", "Logits", "Conv3d_0c_1x1", "bias")] = (num_classes,)
    return shapes
