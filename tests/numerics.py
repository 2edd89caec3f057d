"""Tolerances for comparing float32 computations, derived from the computation rather than one machine.

Two float32 evaluations of one function that differ only in the order of their sums (a fused
convolution, a folded BatchNorm, another convolution algorithm, another thread count) do not agree
bit for bit. A sum of n products rounded in float32 carries an error that grows like
sqrt(n) * eps times the magnitude of its terms (rounding errors of either sign add like a random
walk); a network of ``depth`` such layers in sequence accumulates about ``depth`` times that, on the
scale of its output. ``float32_atol`` is that bound, scaled by the largest magnitude of the
reference, so it means the same for logits of size 0.01 or 100, and a wrong
computation (a missing branch, a wrong scale) still differs by orders of magnitude more.
"""

from __future__ import annotations

import math

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)

# Sequential convolutions from the clip to the logits on I3D's longest path: the stem's three
# units, two per Inception block (1x1 then 3x3x3) in nine blocks, and the logits layer.
I3D_DEPTH = 22


def float32_atol(reference, *, depth: int, fan_in: int) -> float:
    """Absolute tolerance for a reordered float32 evaluation of a ``depth``-layer computation whose
    widest sum has ``fan_in`` terms, at the scale of ``reference``."""
    scale = float(np.max(np.abs(np.asarray(reference, np.float64))))
    return depth * math.sqrt(fan_in) * FLOAT32_EPS * scale


def max_fan_in(variables) -> int:
    """The widest sum of a network: the largest kernel's number of inputs per output channel."""
    import jax

    kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
               if getattr(path[-1], "key", None) == "kernel"]
    return max(int(np.prod(kernel.shape[:-1])) for kernel in kernels)


def i3d_atol(reference, variables) -> float:
    """``float32_atol`` for an I3D output (features or logits) computed with ``variables``."""
    return float32_atol(reference, depth=I3D_DEPTH, fan_in=max_fan_in(variables))
