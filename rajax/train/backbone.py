"""The I3D backbone in the stages: fine-tuning model, feature extraction, end-to-end model.

- ``finetune_model``: InceptionI3d with a new ``num_classes``-way ``Logits`` layer (randomly
  initialised) and every other variable from the starting checkpoint (Kinetics-400 by default).
- ``extract_features``: features of region clips, one-shot (all ``T*L`` frames at once, the full
  temporal receptive field) or one-at-a-time (each ``L``-frame timestep alone, concatenated).
- ``export_backbone`` / ``load_backbone``: the fine-tuned backbone as a converted checkpoint
  (``RUN/finetune/backbone``) that ``rajax.load_i3d`` reads too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from rajax.errors import RajaxError
from rajax.models.i3d import ENDPOINTS, FEATURES, InceptionI3d, Logits, feature_channels

PyTree = Any
RANDOM_WEIGHTS = "random"  # config.backbone.weights value: no pretrained weights (tests, scratch)
EXPORT_DIR = "backbone"
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Parameters do not depend on the input size: initialise on a tiny clip (fast on a CPU).
_INIT_CLIP_SHAPE = (1, 8, 32, 32, 3)


def compute_dtype(name: str):
    if name not in DTYPES:
        raise RajaxError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def pretrained_variables(weights: str, width_multiplier: float) -> dict | None:
    """Variables of the starting checkpoint; None for ``random`` (fresh initialisation)."""
    if weights == RANDOM_WEIGHTS:
        return None
    import rajax

    model, variables = rajax.load_i3d(weights or None)
    if model.width_multiplier != width_multiplier:
        raise RajaxError(f"{weights or 'the Kinetics-400 checkpoint'} has width multiplier "
                         f"{model.width_multiplier}, the config asks for {width_multiplier} "
                         "(backbone.width_multiplier; use backbone.weights=random for a thin test model)")
    return jax.device_get(variables)


def _merge_pretrained(fresh: dict, pretrained: dict | None, skip_prefix: str) -> dict:
    """``fresh`` with every leaf not under ``skip_prefix`` taken from ``pretrained`` (shapes checked)."""
    if pretrained is None:
        return fresh
    fresh_flat = traverse_util.flatten_dict(flax.core.unfreeze(fresh), sep="/")
    given = traverse_util.flatten_dict(flax.core.unfreeze(pretrained), sep="/")
    merged, problems = {}, []
    for path, value in fresh_flat.items():
        if path.startswith(skip_prefix):
            merged[path] = value
        elif path not in given:
            problems.append(f"{path} missing")
        elif np.shape(given[path]) != np.shape(value):
            problems.append(f"{path} has shape {np.shape(given[path])}, expected {np.shape(value)}")
        else:
            merged[path] = np.asarray(given[path])
    if problems:
        raise RajaxError("the starting I3D checkpoint does not fit the model: " + "; ".join(problems[:8]))
    return traverse_util.unflatten_dict(merged, sep="/")


def random_variables(model: nn.Module, seed: int, *init_args) -> dict:
    """Fresh variables for ``model`` drawn with NumPy, without compiling the network's init.

    Compiling I3D's Flax initialisation takes the best part of a minute on a CPU (one random
    stream per parameter), longer than everything else a test does with the network. The
    distributions are those of the Flax initialisers: LeCun-normal kernels (std 1/sqrt(fan_in)),
    zero biases and BatchNorm offsets, zero moving means and unit moving variances.
    """
    init_args = init_args or (jnp.zeros(_INIT_CLIP_SHAPE),)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *init_args))
    rng = np.random.default_rng(seed)
    flat = traverse_util.flatten_dict(flax.core.unfreeze(shapes), sep="/")
    values = {}
    for path, spec in flat.items():
        name = path.rsplit("/", 1)[-1]
        if name == "kernel":
            fan_in = int(np.prod(spec.shape[:-1]))
            values[path] = (rng.standard_normal(spec.shape) / np.sqrt(fan_in)).astype(spec.dtype)
        elif name == "var":
            values[path] = np.ones(spec.shape, spec.dtype)
        else:  # bias, beta, mean
            values[path] = np.zeros(spec.shape, spec.dtype)
    return traverse_util.unflatten_dict(values, sep="/")


def trainable_endpoints(param_labels: PyTree) -> tuple[str, ...]:
    """Endpoints (top-level I3D scopes) with at least one trainable parameter."""
    from rajax.train.steps import TRAINABLE

    flat = traverse_util.flatten_dict(param_labels, sep="/")
    return tuple(sorted({path.split("/")[0] for path, label in flat.items()
                         if label == TRAINABLE and path.split("/")[0] in ENDPOINTS}))


def i3d_model(config, num_classes: int, **options) -> InceptionI3d:
    backbone = config.backbone
    return InceptionI3d(
        num_classes=num_classes,
        width_multiplier=backbone.width_multiplier,
        temporal_pool=backbone.temporal_pool,
        dtype=compute_dtype(options.pop("dtype", backbone.dtype)),
        **options,
    )


def finetune_model(config, num_classes: int, seed: int = 0) -> tuple[InceptionI3d, dict]:
    """Stage 1: I3D with a fresh ``num_classes``-way Logits layer; the rest from the checkpoint.

    Returns the model (BatchNorm in train mode only in the blocks the config trains, when
    ``finetune.update_batch_stats``) and ``{'params', 'batch_stats'}``.
    """
    from rajax.train import steps

    model = i3d_model(config, num_classes, dropout_rate=config.finetune.dropout_rate)
    fresh = random_variables(model, seed)
    pretrained = pretrained_variables(config.backbone.weights, config.backbone.width_multiplier)
    variables = {
        "params": _merge_pretrained(fresh["params"], pretrained and pretrained["params"], "Logits/"),
        "batch_stats": _merge_pretrained(fresh["batch_stats"], pretrained and pretrained["batch_stats"],
                                         "Logits/"),
    }
    labels = steps.parameter_labels(variables["params"], steps.rules_from_config(config.finetune))
    train_bn = trainable_endpoints(labels) if config.finetune.update_batch_stats else ()
    return model.clone(batch_norm_train_blocks=train_bn), variables


def export_backbone(variables: dict, directory: str | os.PathLike, config, source: str) -> Path:
    """Writes fine-tuned I3D variables as a converted checkpoint (replacing an older export)."""
    from rajax import weights

    variables = jax.device_get({"params": variables["params"], "batch_stats": variables["batch_stats"]})
    metadata = {"source": source, "width_multiplier": config.backbone.width_multiplier,
                "classes": list(config.classes)}
    return weights.save_checkpoint(variables, directory, metadata, overwrite=True)


def variables_digest(variables: dict) -> str:
    """A short SHA-256 of every variable (path, dtype, shape and bytes): which weights these are."""
    import hashlib

    digest = hashlib.sha256()
    for path, value in sorted(traverse_util.flatten_dict(flax.core.unfreeze(variables), sep="/").items()):
        value = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{path}|{value.dtype}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def finetuned_dir(config, workdir: str | os.PathLike) -> Path:
    return Path(config.backbone.finetuned_dir or Path(workdir) / "finetune")


def load_backbone(config, workdir: str | os.PathLike, **options) -> tuple[InceptionI3d, dict]:
    """The backbone of stages 2 and 4: fine-tuned (stage 1's export) or the starting checkpoint."""
    if config.backbone.finetuned:
        export = finetuned_dir(config, workdir) / EXPORT_DIR
        if not export.is_dir():
            raise RajaxError(f"{export}: no fine-tuned backbone; run stage 1 first "
                             "(`rajax train CONFIG --workdir DIR --config.stage=finetune`) or set "
                             "--config.backbone.finetuned=false")
        weights = str(export)
    else:
        weights = config.backbone.weights
    variables = pretrained_variables(weights, config.backbone.width_multiplier)
    if variables is None:  # random weights (tests): a fresh model with the dataset's classes
        model = i3d_model(config, len(config.classes))
        variables = random_variables(model, config.seed)
    return i3d_model(config, _logits_classes(variables), **options), variables


def _logits_classes(variables: dict) -> int:
    return int(np.shape(variables["params"]["Logits"]["Conv3d_0c_1x1"]["bias"])[0])


# --------------------------------------------------------------------------------------------
# Features


def feature_variables(variables: dict) -> dict:
    """``variables`` without the Logits layer, which features never read. Every backbone (the
    Kinetics-400 one, a fine-tuned one with any number of classes) then hands the feature function
    arguments of the same shapes, so its compiled program is reused (JAX's persistent cache)."""
    return {collection: {name: value for name, value in tree.items() if name != "Logits"}
            for collection, tree in variables.items()}


def extract_features(model: InceptionI3d, variables: dict, clips: jax.Array, mode: str,
                     timestep_length: int) -> jax.Array:
    """Features [B, T', C] (float32) of region clips [B, T*L, H, W, 3].

    ``one_shot``: the whole clip through I3D at once (T' = T - 1 with the VALID temporal pool).
    ``one_at_a_time``: each L-frame timestep through I3D alone (T' = T), so no feature sees beyond
    its own 8 frames: the paper's weaker variant.
    """
    if mode == "one_shot":
        return model.apply(variables, clips, train=False, output=FEATURES)
    if mode == "one_at_a_time":
        batch, frames = clips.shape[:2]
        if frames % timestep_length:
            raise RajaxError(f"{frames} frames do not split into timesteps of {timestep_length}")
        steps_ = frames // timestep_length
        per_step = clips.reshape((batch * steps_, timestep_length) + clips.shape[2:])
        features = model.apply(variables, per_step, train=False, output=FEATURES)  # [B*T, 1, C]
        return features.reshape(batch, steps_, features.shape[-1])
    raise RajaxError(f"unknown extraction mode {mode!r} (config backbone.extraction: one_shot or one_at_a_time)")


def region_features(model: InceptionI3d, variables: dict, frames: jax.Array, box: jax.Array, crop_size: int,
                    mode: str, timestep_length: int) -> jax.Array:
    """Features ``[T', C]`` of one region of one video, cut on the device from its frames
    ``uint8 [N, F, F, 3]`` (``box``: ``(x0, y0, side)``)."""
    from rajax.data import crops

    clip = crops.region_clip(frames, box, crop_size, model.dtype)[None]
    return extract_features(model, variables, clip, mode, timestep_length)[0]


def video_features(model: InceptionI3d, variables: dict, frames: jax.Array, boxes: jax.Array, crop_size: int,
                   mode: str, timestep_length: int, regions_per_call: int = 1) -> jax.Array:
    """Features ``[R, T', C]`` of every region of one video, all cut from one frame tensor,
    ``regions_per_call`` regions through I3D at a time (1: the peak memory of one region clip)."""
    return jax.lax.map(lambda box: region_features(model, variables, frames, box, crop_size, mode,
                                                   timestep_length), boxes, batch_size=regions_per_call)


def feature_dims(config) -> int:
    return feature_channels(config.backbone.width_multiplier)


def backbone_logits_on_features(params: dict, features: jax.Array) -> jax.Array:
    """The fine-tuned I3D's own classifier on stored features [B, T', C] ("I3D alone").

    I3D's logits are its Logits layer on the pooled Mixed_5c features, averaged over time: exactly
    what this computes from the features stage 2 stored, without running the network again.
    """
    kernel = params["Logits"]["Conv3d_0c_1x1"]["kernel"]
    module = Logits(in_features=kernel.shape[-2], num_classes=kernel.shape[-1])
    return module.apply({"params": params["Logits"]}, features, train=False)

