"""Classification heads on per-region I3D features (stage 3 of the method, and the end of stage 4).

Every head has the same signature::

    logits, attention = head.apply(variables, features, region_mask=None, time_mask=None,
                                   train=False)

- ``features``: ``[B, R, T', C]``, one feature vector per region and temporal position (C = 1024
  for the full-width I3D). Any float dtype; the head computes in float32.
- ``region_mask``: optional ``[B, R]`` bool, False for a region that is missing (it then gets zero
  weight); ``time_mask``: optional ``[B, T']`` bool, False for padded temporal positions.
- ``logits``: ``[B, num_classes]`` float32.
- ``attention``: a dict of float32 arrays that every head fills the same way, so that the trainer
  can log it and ``rajax predict`` can draw it:

  - ``region_weight`` ``[B, R]``: how much each region contributes to the pooled vector; it sums to
    1 over the valid regions (uniform for Region Mean, one-hot for the single-region baseline).
  - ``time_weight`` ``[B, T']``: the same over temporal positions.
  - heads with learned scores also give them before normalisation: ``region_score`` ``[B, R]`` and
    ``time_score`` ``[B, T']`` (sigmoid scores in [0, 1] for the paper's heads).

Normalisation of the paper's attention (Region, Temporal, Temporal-Region Attention): each region
gets a sigmoid score ``s_r`` in [0, 1] from a fully-connected layer shared by all regions, applied
to the region's feature averaged over time; the pooled vector is the weighted *average*
``sum_r s_r x_r / sum_r s_r`` (the scores divided by their sum are ``region_weight``). A plain
``sum_r s_r x_r`` would change the scale of the vector with the number of regions and with the
overall level of the scores; the weighted average keeps it the scale of one region feature, as
docs/method.md says ("the region features are averaged with those weights"). Equal scores therefore give
exactly Region Mean.

Adding a variant: write a module with this signature and add one line to ``HEADS``; configs select
it with ``config.head.name``. ``SoftmaxAttention`` (multi-head softmax pooling over regions) is the
example beyond the paper.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from rajax.errors import RajaxError

# Keeps a weighted average finite when every score of a video is ~0 (sigmoid underflow or all masked).
_EPSILON = 1e-6


def _valid_mask(mask: jax.Array | None, shape: tuple[int, int]) -> jax.Array:
    """A float {0, 1} mask of ``shape`` ([B, R] or [B, T']); all ones when no mask is given."""
    if mask is None:
        return jnp.ones(shape, jnp.float32)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match the features' {shape}")
    return mask.astype(jnp.float32)


def masked_mean(x: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """Mean of ``x`` over ``axis`` counting only positions where ``mask`` (broadcastable) is 1."""
    total = jnp.sum(x * mask, axis=axis)
    count = jnp.sum(jnp.broadcast_to(mask, x.shape), axis=axis)
    return total / jnp.maximum(count, 1.0)


def _normalise(weights: jax.Array, mask: jax.Array) -> jax.Array:
    weights = weights * mask
    return weights / (jnp.sum(weights, axis=-1, keepdims=True) + _EPSILON)


def _as_float32(features: jax.Array) -> jax.Array:
    if features.ndim != 4:
        raise ValueError(f"head features must be [B, R, T', C], got shape {features.shape}")
    return features.astype(jnp.float32)


class _Classifier(nn.Module):
    """Dropout then the linear classifier shared by every head."""

    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, pooled: jax.Array, train: bool) -> jax.Array:
        pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
        return nn.Dense(self.num_classes, name="logits")(pooled)


class SigmoidScore(nn.Module):
    """The paper's scorer: one Dense(1) shared across items, then a sigmoid, giving [..., N]."""

    @nn.compact
    def __call__(self, items: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(nn.Dense(1, name="dense")(items)[..., 0])


def region_attention_pool(features, region_mask, time_mask, scorer):
    """RA pooling: mean over time, sigmoid score per region, weighted average over regions.

    Returns the pooled ``[B, C]`` vector, the scores and the normalised weights ``[B, R]``.
    """
    batch, regions, steps, _ = features.shape
    region_valid = _valid_mask(region_mask, (batch, regions))
    time_valid = _valid_mask(time_mask, (batch, steps))
    per_region = masked_mean(features, time_valid[:, None, :, None], axis=2)  # [B, R, C]
    scores = scorer(per_region)  # [B, R]
    weights = _normalise(scores, region_valid)
    pooled = jnp.einsum("br,brc->bc", weights, per_region)
    return pooled, scores, weights


def temporal_attention_pool(features, region_mask, time_mask, scorer):
    """TA pooling: mean over regions, sigmoid score per timestep, weighted average over time."""
    batch, regions, steps, _ = features.shape
    region_valid = _valid_mask(region_mask, (batch, regions))
    time_valid = _valid_mask(time_mask, (batch, steps))
    per_step = masked_mean(features, region_valid[:, :, None, None], axis=1)  # [B, T', C]
    scores = scorer(per_step)  # [B, T']
    weights = _normalise(scores, time_valid)
    pooled = jnp.einsum("bt,btc->bc", weights, per_step)
    return pooled, scores, weights


def _uniform(mask: jax.Array) -> jax.Array:
    return mask / jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1.0)


class RegionAttention(nn.Module):
    """Region Attention (RA), the paper's head: sigmoid-weighted average over regions."""

    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = _as_float32(features)
        batch, _, steps, _ = features.shape
        pooled, scores, weights = region_attention_pool(
            features, region_mask, time_mask, SigmoidScore(name="region_score")
        )
        logits = _Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        attention = {
            "region_score": scores,
            "region_weight": weights,
            "time_weight": _uniform(_valid_mask(time_mask, (batch, steps))),
        }
        return logits, attention


class TemporalAttention(nn.Module):
    """Temporal Attention (TA): the same scoring over timesteps of the region-averaged features."""

    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = _as_float32(features)
        batch, regions, _, _ = features.shape
        pooled, scores, weights = temporal_attention_pool(
            features, region_mask, time_mask, SigmoidScore(name="time_score")
        )
        logits = _Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        attention = {
            "time_score": scores,
            "time_weight": weights,
            "region_weight": _uniform(_valid_mask(region_mask, (batch, regions))),
        }
        return logits, attention


class TemporalRegionAttention(nn.Module):
    """Temporal-Region Attention (TRA): RA and TA vectors concatenated (2C) before the classifier.

    The two scorers are separate layers: one scores regions, the other timesteps.
    """

    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = _as_float32(features)
        region_pooled, region_scores, region_weights = region_attention_pool(
            features, region_mask, time_mask, SigmoidScore(name="region_score")
        )
        time_pooled, time_scores, time_weights = temporal_attention_pool(
            features, region_mask, time_mask, SigmoidScore(name="time_score")
        )
        pooled = jnp.concatenate([region_pooled, time_pooled], axis=-1)
        logits = _Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        attention = {
            "region_score": region_scores,
            "region_weight": region_weights,
            "time_score": time_scores,
            "time_weight": time_weights,
        }
        return logits, attention


class RegionMean(nn.Module):
    """Region Mean: plain average over regions and time, no attention (the baseline for RA)."""

    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = _as_float32(features)
        batch, regions, steps, _ = features.shape
        region_weights = _uniform(_valid_mask(region_mask, (batch, regions)))
        time_weights = _uniform(_valid_mask(time_mask, (batch, steps)))
        pooled = jnp.einsum("br,bt,brtc->bc", region_weights, time_weights, features)
        logits = _Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        return logits, {"region_weight": region_weights, "time_weight": time_weights}


class SingleRegion(nn.Module):
    """Single-region baseline: the time-averaged feature of one region (default 0, the full frame).

    With R = 1 features (a backbone fine-tuned on the full frame or the actor crop only) this is the
    linear classifier on the backbone's own pooled feature.
    """

    num_classes: int
    dropout_rate: float = 0.0
    region_index: int = 0

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = _as_float32(features)
        batch, regions, steps, _ = features.shape
        if not 0 <= self.region_index < regions:
            raise ValueError(f"region_index {self.region_index} out of range for {regions} regions")
        time_valid = _valid_mask(time_mask, (batch, steps))
        pooled = masked_mean(features[:, self.region_index], time_valid[:, :, None], axis=1)
        logits = _Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        region_weights = jnp.zeros((batch, regions), jnp.float32).at[:, self.region_index].set(1.0)
        return logits, {"region_weight": region_weights, "time_weight": _uniform(time_valid)}


class SoftmaxAttention(nn.Module):
    """Beyond the paper: multi-head softmax attention pooling over regions.

    Each of ``num_heads`` heads scores every (time-averaged) region with its own linear layer,
    turns the scores into a distribution over the valid regions with a softmax (regions compete,
    unlike the independent sigmoids of RA), and pools the region features with it; the
    ``num_heads`` pooled vectors are concatenated before the classifier. ``region_weight`` is the
    heads' mean distribution, ``region_weight_heads`` [B, H, R] each head's.
    """

    num_classes: int
    dropout_rate: float = 0.0
    num_heads: int = 4

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = _as_float32(features)
        batch, regions, steps, _ = features.shape
        region_valid = _valid_mask(region_mask, (batch, regions))
        time_valid = _valid_mask(time_mask, (batch, steps))
        per_region = masked_mean(features, time_valid[:, None, :, None], axis=2)  # [B, R, C]
        logits_per_head = nn.Dense(self.num_heads, name="region_score")(per_region)  # [B, R, H]
        logits_per_head = jnp.where(region_valid[:, :, None] > 0, logits_per_head, -jnp.inf)
        weights = jax.nn.softmax(logits_per_head, axis=1)  # over regions
        weights = jnp.transpose(weights, (0, 2, 1))  # [B, H, R]
        pooled = jnp.einsum("bhr,brc->bhc", weights, per_region).reshape(batch, -1)
        logits = _Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        attention = {
            "region_weight": jnp.mean(weights, axis=1),
            "region_weight_heads": weights,
            "time_weight": _uniform(time_valid),
        }
        return logits, attention


# config.head.name -> module. A new head: one class above, one line here.
HEADS = {
    "region_attention": RegionAttention,
    "temporal_attention": TemporalAttention,
    "temporal_region_attention": TemporalRegionAttention,
    "region_mean": RegionMean,
    "single_region": SingleRegion,
    "softmax_attention": SoftmaxAttention,
}


def build_head(name: str, num_classes: int, **options) -> nn.Module:
    """The head called ``name`` in ``HEADS``; ``options`` it does not take are ignored.

    ``options`` is usually ``config.head`` without its name: settings shared by every head's config
    (``num_heads``, ``region_index`` ...) only reach the heads that have them.
    """
    if name not in HEADS:
        raise RajaxError(f"unknown head {name!r} (config.head.name); choose one of {', '.join(sorted(HEADS))}")
    head_class = HEADS[name]
    accepted = {field.name for field in dataclasses.fields(head_class)} - {"parent", "name"}
    kwargs = {key: value for key, value in options.items() if key in accepted}
    return head_class(num_classes=num_classes, **kwargs)


def head_config_problems(head_config) -> list[str]:
    """One line per problem of ``config.head`` (checked with the rest of the config, up front)."""
    problems = []
    if head_config.name not in HEADS:
        problems.append(f"config.head.name={head_config.name}: unknown head; choose one of "
                        f"{', '.join(sorted(HEADS))}")
    if not 0 <= head_config.dropout_rate < 1:
        problems.append(f"config.head.dropout_rate={head_config.dropout_rate}: must be in [0, 1)")
    return problems
