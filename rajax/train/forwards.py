"""The model forwards the stages hand the training loop: ``forward(params, batch_stats, batch, *,
train, rng) -> (logits, attention, batch_stats)`` (``rajax.train.steps``).

- :func:`i3d_forward`: stage 1, a bare I3D classifier on each video's one region.
- :func:`head_forward`: stage 3, a head on stored features.
- :func:`region_model_forward`: stage 4, I3D and head end to end on every region of each video.
- :func:`features_logits_forward`: the fine-tuned I3D's own classifier on stored features
  ("I3D alone").

The video forwards cut the regions on the device, inside the compiled step, from the uint8 frames
and integer boxes the pipelines send (``rajax.data.crops``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rajax.train import backbone as backbone_lib


def to_network_input(frames: jax.Array, dtype) -> jax.Array:
    """Clips already cut, as uint8 pixels or floats in [-1, 1] -> [-1, 1] in ``dtype``."""
    if frames.dtype == jnp.uint8:
        frames = frames.astype(jnp.float32) / 127.5 - 1.0
    return frames.astype(dtype)


def batch_clips(batch, crop_size: int, dtype) -> jax.Array:
    """The I3D input of a batch, ``[b, N, S, S, 3]`` in [-1, 1]: each video's one region cut on the
    device from its frames and box (what the pipelines send), or ``frames`` already cut (tests,
    benchmarks) when the batch has no boxes."""
    from rajax.data import crops

    if "boxes" not in batch:
        return to_network_input(batch["frames"], dtype)
    return crops.batch_region_clip(batch["frames"], batch["boxes"][:, 0], crop_size, dtype)


FLIP_STREAM = 0xF11B


def mirror_some(clips: jax.Array, rng) -> jax.Array:
    """Each clip ``[b, N, S, S, 3]`` mirrored left-right with probability 1/2 (augmentation)."""
    mirrored = jax.random.bernoulli(rng, 0.5, (clips.shape[0],))
    return jnp.where(mirrored[:, None, None, None, None], clips[:, :, :, ::-1], clips)


def i3d_forward(model, crop_size: int = 224, flip: bool = False):
    """Forward of a bare I3D classifier on each video's region (``batch_clips``).

    Training: the batch's one region per video, mirrored at random with ``flip``. Evaluation with
    several regions per video (``boxes [b, R, 3]``): the mean of the logits of the R regions, which
    (the classifier being linear) is the classifier on the regions' mean features.
    """

    def forward(params, batch_stats, batch, *, train, rng):
        variables = {"params": params, "batch_stats": batch_stats}
        if train:
            clips = batch_clips(batch, crop_size, model.dtype)
            if flip:  # a stream of its own; dropout keeps the step's key as without flipping
                clips = mirror_some(clips, jax.random.fold_in(rng, FLIP_STREAM))
            logits, updated = model.apply(variables, clips, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": rng})
            return logits, {}, updated["batch_stats"]
        if "boxes" in batch and batch["boxes"].shape[1] > 1:
            return _mean_over_regions(model, variables, batch, crop_size), {}, batch_stats
        return model.apply(variables, batch_clips(batch, crop_size, model.dtype), train=False), {}, batch_stats

    return forward


def _mean_over_regions(model, variables, batch, crop_size: int) -> jax.Array:
    """Logits averaged over every region of each video, one region through I3D at a time."""
    from rajax.data import crops

    def region_logits(boxes):  # boxes [b, 3]: the same region of every video
        clips = crops.batch_region_clip(batch["frames"], boxes, crop_size, model.dtype)
        return model.apply(variables, clips, train=False)

    per_region = jax.lax.map(region_logits, jnp.swapaxes(batch["boxes"], 0, 1))  # [R, b, K]
    return jnp.mean(per_region, axis=0)


def head_forward(head):
    """Forward of a head on ``batch['features']`` ``[b, R, T', C]`` (and its ``region_mask``)."""

    def forward(params, batch_stats, batch, *, train, rng):
        rngs = {"dropout": rng} if train else {}
        logits, attention = head.apply({"params": params}, batch["features"], batch.get("region_mask"),
                                       train=train, rngs=rngs)
        return logits, attention, batch_stats

    return forward


def region_model_forward(model, crop_size: int = 224):
    """Forward of a RegionModel on every region of each video, cut on the device from
    ``batch['frames']`` [b, N, F, F, 3] and ``batch['boxes']`` [b, R, 3]."""
    from rajax.data import crops

    def forward(params, batch_stats, batch, *, train, rng):
        clips = jax.vmap(lambda f, b: crops.region_clips(f, b, crop_size, model.backbone.dtype))(
            batch["frames"], batch["boxes"])
        variables = {"params": params, "batch_stats": batch_stats}
        if train:
            (logits, attention), updated = model.apply(variables, clips, train=True, mutable=["batch_stats"],
                                                       rngs={"dropout": rng})
            return logits, attention, updated["batch_stats"]
        logits, attention = model.apply(variables, clips, train=False)
        return logits, attention, batch_stats

    return forward


def features_logits_forward():
    """Forward of an I3D's own classifier (``params`` = its ``Logits``) on the stored features of
    one region, ``batch['features'][:, 0]``."""

    def forward(params, batch_stats, batch, *, train, rng):
        return backbone_lib.backbone_logits_on_features(params, batch["features"][:, 0]), {}, batch_stats

    return forward
