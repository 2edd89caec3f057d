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
  can log it, auxiliary losses (``rajax.models.losses``) can read it and ``rajax predict`` can draw
  it:

  - ``region_weight`` ``[B, R]``: how much each region contributes to the pooled vector; it sums to
    1 over the valid regions (uniform for Region Mean, one-hot for the single-region baseline).
  - ``time_weight`` ``[B, T']``: the same over temporal positions.
  - heads with learned scores also give them before normalisation: ``region_score`` ``[B, R]`` and
    ``time_score`` ``[B, T']`` (sigmoid scores in [0, 1] for the paper's heads), and
    ``region_weight_heads`` ``[B, H, R]`` with several attention heads.

``rajax.models.check_head`` (``rajax/models/contract.py``) checks any head against this contract.

Heads are made of three parts, each usable alone:

- what is scored: ``per_region`` (each region's feature averaged over time) or ``per_step`` (each
  timestep's feature averaged over the regions);
- a scorer (:func:`raw_scores`): ``linear`` (one Dense shared by all items, the paper's) or
  ``mlp`` (a tanh hidden layer first), with ``num_heads`` scores per item;
- a normalisation (:func:`attention_weights`): ``sigmoid`` (independent scores in [0, 1], the
  pooled vector their weighted *average*: the paper's) or ``softmax`` (items compete, with a
  temperature); ``uniform`` is no scorer at all (plain mean).

:class:`AttentionPool` combines the three over regions or timesteps, :class:`Classifier` is the
dropout and linear layer every head ends with. :class:`AttentionHead` is the one attention head:
every combination of the parts is a value of its options, and each option has a default (the
paper's Region Attention). The paper's heads are presets of it, a name and the option values that
differ (:class:`RegionAttention`, :class:`TemporalAttention`, :class:`TemporalRegionAttention`,
:class:`RegionMean`, and :class:`SoftmaxAttention` beyond the paper); a variant such as a gated
(MLP-scored) Region Attention is a config naming the options it changes, not a new class. A head
that needs something new is one class (``rajax/models/context_attention.py`` is the worked example,
``docs/new-head.md`` walks through it), named in the config by its import path.

Normalisation of the paper's attention: each region gets a sigmoid score ``s_r`` in [0, 1] from a
fully-connected layer shared by all regions, applied to the region's feature averaged over time;
the pooled vector is the weighted *average* ``sum_r s_r x_r / sum_r s_r`` (the scores divided by
their sum are ``region_weight``). A plain ``sum_r s_r x_r`` would change the scale of the vector
with the number of regions and with the overall level of the scores; the weighted average keeps it
the scale of one region feature, as docs/method.md says ("the region features are averaged with
those weights"). Equal scores therefore give exactly Region Mean.

Options: a head's options are its dataclass fields other than ``num_classes`` and
``dropout_rate``, with the class's values as defaults. ``config.head.options`` names only the ones
a config changes; an option the head does not take is an error naming the head and the option
(:func:`option_problems`), never ignored. Each head checks its own values when it is constructed
(``__post_init__`` raising ValueError), so validating a config builds its head.
"""

from __future__ import annotations

import dataclasses
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp

from rajax.errors import RajaxError

# Keeps a weighted average finite when every score of a video is ~0 (sigmoid underflow or all masked).
_EPSILON = 1e-6

SCORERS = ("linear", "mlp", "uniform")
NORMALISATIONS = ("sigmoid", "softmax")
AXES = ("regions", "timesteps")
# Every head takes these; they are not head options.
COMMON_FIELDS = ("num_classes", "dropout_rate")


# --------------------------------------------------------------------------------------------
# What is scored


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


def as_float32(features: jax.Array) -> jax.Array:
    if features.ndim != 4:
        raise ValueError(f"head features must be [B, R, T', C], got shape {features.shape}")
    return features.astype(jnp.float32)


def masks(features, region_mask, time_mask) -> tuple[jax.Array, jax.Array]:
    """The float ``[B, R]`` and ``[B, T']`` validity masks of ``features``."""
    batch, regions, steps, _ = features.shape
    return _valid_mask(region_mask, (batch, regions)), _valid_mask(time_mask, (batch, steps))


def per_region(features, region_valid, time_valid) -> jax.Array:
    """``[B, R, C]``: each region's feature averaged over its valid timesteps."""
    return masked_mean(features, time_valid[:, None, :, None], axis=2)


def per_step(features, region_valid, time_valid) -> jax.Array:
    """``[B, T', C]``: each timestep's feature averaged over the valid regions."""
    return masked_mean(features, region_valid[:, :, None, None], axis=1)


def uniform(mask: jax.Array) -> jax.Array:
    return mask / jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1.0)


# --------------------------------------------------------------------------------------------
# Scoring and normalising


def raw_scores(items: jax.Array, kind: str = "linear", hidden: int = 0, num_heads: int = 1) -> jax.Array:
    """``num_heads`` raw scores per item, ``[B, N, C] -> [B, N, H]``, layers shared by all items.

    Call it inside a ``@nn.compact`` method: its layers (``dense``, and ``hidden`` for ``mlp``)
    become that module's parameters.
    """
    if kind == "mlp":
        items = jnp.tanh(nn.Dense(hidden, name="hidden")(items))
    elif kind != "linear":
        raise ValueError(f"unknown scorer {kind!r}; choose one of linear, mlp")
    return nn.Dense(num_heads, name="dense")(items)


def attention_weights(raw: jax.Array, valid: jax.Array, normalisation: str,
                      temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """``(weights, scores)`` ``[B, N, H]`` from raw scores; weights sum to 1 over the valid items.

    ``sigmoid``: scores ``s = sigmoid(raw)`` in [0, 1], weights ``s / sum(s)`` (the paper's);
    ``softmax``: scores are the raw ones, weights ``softmax(raw / temperature)``.
    """
    valid = valid[:, :, None]
    if normalisation == "sigmoid":
        scores = jax.nn.sigmoid(raw) * valid
        return scores / (jnp.sum(scores, axis=1, keepdims=True) + _EPSILON), scores
    if normalisation == "softmax":
        logits = jnp.where(valid > 0, raw / temperature, -jnp.inf)
        return jax.nn.softmax(logits, axis=1), raw
    raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {', '.join(NORMALISATIONS)}")


class AttentionPool(nn.Module):
    """Pools regions or timesteps: what is scored, a scorer, a normalisation, a weighted sum.

    Returns ``(pooled [B, H*C], scores [B, N] or None, weights [B, N], weights per head [B, H, N])``;
    with several heads the scores and weights returned flat are the heads' means.
    """

    over: str = "regions"  # regions | timesteps
    scorer: str = "linear"  # linear | mlp | uniform
    normalisation: str = "sigmoid"  # sigmoid | softmax
    hidden: int = 0
    num_heads: int = 1
    temperature: float = 1.0

    @nn.compact
    def __call__(self, features, region_valid, time_valid):
        if self.over == "regions":
            items, valid = per_region(features, region_valid, time_valid), region_valid
        elif self.over == "timesteps":
            items, valid = per_step(features, region_valid, time_valid), time_valid
        else:
            raise ValueError(f"cannot pool over {self.over!r}; choose one of {', '.join(AXES)}")
        if self.scorer == "uniform":
            weights = uniform(valid)
            return jnp.einsum("bn,bnc->bc", weights, items), None, weights, weights[:, None]
        raw = raw_scores(items, self.scorer, self.hidden, self.num_heads)
        weights, scores = attention_weights(raw, valid, self.normalisation, self.temperature)
        pooled = jnp.einsum("bnh,bnc->bhc", weights, items).reshape(items.shape[0], -1)
        return pooled, jnp.mean(scores, axis=-1), jnp.mean(weights, axis=-1), jnp.transpose(weights, (0, 2, 1))


class Classifier(nn.Module):
    """Dropout then the linear classifier every head ends with."""

    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, pooled: jax.Array, train: bool) -> jax.Array:
        pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
        return nn.Dense(self.num_classes, name="logits")(pooled)


def describe_pool(scorer: str, normalisation: str, temperature: float = 1.0, hidden: int = 0) -> str:
    """How a pool weighs its items, in words (``rajax predict`` and the demo's pictures say it)."""
    if scorer == "uniform":
        return "no scorer: uniform weights"
    scorer_text = f"MLP scorer ({hidden} tanh units)" if scorer == "mlp" else "linear scorer"
    if normalisation == "softmax":
        return f"{scorer_text}, softmax (temperature {temperature:g})"
    return f"{scorer_text}, sigmoid scores"


# --------------------------------------------------------------------------------------------
# The attention head


def pooled_head(module: nn.Module, features, region_mask, time_mask, train: bool, pools: dict[str, dict]):
    """The body of an attention head: each pool of ``pools`` (module name -> AttentionPool
    options), their vectors concatenated, then the classifier. Call it inside ``@nn.compact``."""
    features = as_float32(features)
    region_valid, time_valid = masks(features, region_mask, time_mask)
    attention = {"region_weight": uniform(region_valid), "time_weight": uniform(time_valid)}
    vectors = []
    for name, options in pools.items():
        pool = AttentionPool(**options, name=name)
        pooled, scores, weights, per_head = pool(features, region_valid, time_valid)
        prefix = "region" if pool.over == "regions" else "time"
        attention[f"{prefix}_weight"] = weights
        if scores is not None:
            attention[f"{prefix}_score"] = scores
        if pool.num_heads > 1:
            attention[f"{prefix}_weight_heads"] = per_head
        vectors.append(pooled)
    pooled = vectors[0] if len(vectors) == 1 else jnp.concatenate(vectors, axis=-1)
    logits = Classifier(module.num_classes, module.dropout_rate, name="classifier")(pooled, train)
    return logits, attention


# The parameters of each pool live under these names, whatever the preset: a checkpoint of
# region_attention is one of attention with the same options.
_POOL_NAMES = {"regions": "region_score", "timesteps": "time_score"}


class AttentionHead(nn.Module):
    """The attention head: what to pool over, how to score, how to normalise, all options.

    ``over`` is a tuple of ``regions`` and/or ``timesteps`` (both: the two pooled vectors are
    concatenated, as TRA does); the other options configure every pool alike. The defaults are
    the paper's Region Attention; a gated RA is ``scorer="mlp", hidden=256``; multi-head softmax
    pooling is ``normalisation="softmax", num_heads=4``.
    """

    num_classes: int
    dropout_rate: float = 0.0
    over: tuple[str, ...] = ("regions",)
    scorer: str = "linear"  # linear | mlp | uniform
    normalisation: str = "sigmoid"  # sigmoid | softmax
    hidden: int = 0  # width of the mlp scorer's tanh layer
    num_heads: int = 1  # scores per item; their pooled vectors are concatenated
    temperature: float = 1.0  # divides the softmax's raw scores

    def __post_init__(self):
        problems = []
        if not self.over or not set(self.over) <= set(AXES) or len(set(self.over)) != len(self.over):
            problems.append(f"over={self.over!r}: give each of {', '.join(AXES)} at most once, "
                            "and at least one")
        if self.scorer not in SCORERS:
            problems.append(f"scorer={self.scorer!r}: choose one of {', '.join(SCORERS)}")
        if self.normalisation not in NORMALISATIONS:
            problems.append(f"normalisation={self.normalisation!r}: choose one of {', '.join(NORMALISATIONS)}")
        if self.scorer == "mlp" and not self.hidden >= 1:
            problems.append(f"hidden={self.hidden!r}: an mlp scorer needs at least one hidden unit")
        if not self.num_heads >= 1:
            problems.append(f"num_heads={self.num_heads!r}: must be at least 1")
        if not self.temperature > 0:
            problems.append(f"temperature={self.temperature!r}: must be positive")
        if problems:
            raise ValueError("; ".join(problems))
        super().__post_init__()

    @property
    def scorer_description(self) -> str:
        heads = f"{self.num_heads} heads, " if self.num_heads > 1 and self.scorer != "uniform" else ""
        return heads + describe_pool(self.scorer, self.normalisation, self.temperature, self.hidden)

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        options = dict(scorer=self.scorer, normalisation=self.normalisation, hidden=self.hidden,
                       num_heads=self.num_heads, temperature=self.temperature)
        return pooled_head(self, features, region_mask, time_mask, train,
                           {_POOL_NAMES[axis]: dict(options, over=axis) for axis in self.over})


# --------------------------------------------------------------------------------------------
# The paper's heads: presets of AttentionHead, a name and the option values that differ. No code
# of their own; a config may change any of their options as it would AttentionHead's.


class RegionAttention(AttentionHead):
    """Region Attention (RA), the paper's head: sigmoid-weighted average over regions (the defaults)."""


class TemporalAttention(AttentionHead):
    """Temporal Attention (TA): the same scoring over timesteps of the region-averaged features."""

    over: tuple[str, ...] = ("timesteps",)


class TemporalRegionAttention(AttentionHead):
    """Temporal-Region Attention (TRA): RA and TA vectors concatenated (2C) before the classifier.

    The two scorers are separate layers: one scores regions, the other timesteps.
    """

    over: tuple[str, ...] = ("regions", "timesteps")


class RegionMean(AttentionHead):
    """Region Mean: plain average over regions and time, no attention (the baseline for RA)."""

    scorer: str = "uniform"


class SoftmaxAttention(AttentionHead):
    """Beyond the paper: multi-head softmax attention pooling over regions.

    Each of ``num_heads`` heads scores every (time-averaged) region with its own linear layer,
    turns the scores into a distribution over the valid regions with a softmax (regions compete,
    unlike the independent sigmoids of RA), and pools the region features with it; the
    ``num_heads`` pooled vectors are concatenated before the classifier. ``region_weight`` is the
    heads' mean distribution, ``region_weight_heads`` [B, H, R] each head's.
    """

    normalisation: str = "softmax"
    num_heads: int = 4


class SingleRegion(nn.Module):
    """Single-region baseline: the time-averaged feature of one region (0: the full frame).

    With R = 1 features (a backbone fine-tuned on the full frame or the actor crop only) this is the
    linear classifier on the backbone's own pooled feature.
    """

    num_classes: int
    dropout_rate: float = 0.0
    region_index: int = 0
    scorer_description = "no scorer: one region"

    def __post_init__(self):
        if not self.region_index >= 0:
            raise ValueError(f"region_index={self.region_index!r}: must be 0 or more")
        super().__post_init__()

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = as_float32(features)
        batch, regions, _, _ = features.shape
        if not 0 <= self.region_index < regions:
            raise ValueError(f"region_index {self.region_index} out of range for {regions} regions")
        region_valid, time_valid = masks(features, region_mask, time_mask)
        pooled = per_region(features, region_valid, time_valid)[:, self.region_index]
        logits = Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        region_weights = jnp.zeros((batch, regions), jnp.float32).at[:, self.region_index].set(1.0)
        return logits, {"region_weight": region_weights, "time_weight": uniform(time_valid)}


# config.head.name -> module, for the heads shipped here. Any other head is named by its import
# path, "package.module:ClassName" (see docs/new-head.md): no list to edit.
HEADS = {
    "region_attention": RegionAttention,
    "temporal_attention": TemporalAttention,
    "temporal_region_attention": TemporalRegionAttention,
    "region_mean": RegionMean,
    "single_region": SingleRegion,
    "softmax_attention": SoftmaxAttention,
    "attention": AttentionHead,
}


# --------------------------------------------------------------------------------------------
# From config.head to a head


def head_class(name: str) -> type[nn.Module]:
    """The class a ``config.head.name`` names: a key of ``HEADS`` or ``"package.module:Class"``."""
    if name in HEADS:
        return HEADS[name]
    module_name, _, class_name = name.partition(":")
    if not class_name:
        raise RajaxError(f"unknown head {name!r} (config.head.name); choose one of {', '.join(sorted(HEADS))} "
                         "or give a class as package.module:ClassName")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise RajaxError(f"config.head.name={name}: cannot import the head ({error})") from None
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise RajaxError(f"config.head.name={name}: {class_name} is not a Flax module")
    return found


def head_options(cls: type[nn.Module]) -> dict[str, object]:
    """A head's options (its own dataclass fields) and their defaults (``dataclasses.MISSING``
    for an option the class gives no default)."""
    skipped = {"parent", "name", *COMMON_FIELDS}
    return {field.name: field.default for field in dataclasses.fields(cls) if field.name not in skipped}


def option_problems(name: str, options: dict) -> list[str]:
    """Each option of ``options`` the head ``name`` does not take, and each it needs (no default)
    that ``options`` lacks, named with the head."""
    wanted = head_options(head_class(name))
    problems = [f"config.head.options.{key}: head {name!r} takes no option {key!r} "
                f"(its options: {', '.join(wanted) or 'none'})" for key in options if key not in wanted]
    problems += [f"config.head.options.{key}: head {name!r} needs this option (it has no default)"
                 for key, default in wanted.items() if default is dataclasses.MISSING and key not in options]
    return problems


def _head_or_problems(name: str, num_classes: int, dropout_rate: float,
                      options: dict) -> tuple[nn.Module | None, list[str]]:
    """The head, or the reasons it cannot be built (one line each, naming head and option)."""
    try:
        problems = option_problems(name, options)
    except RajaxError as error:
        return None, [str(error)]
    if problems:
        return None, problems
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
    try:
        return head_class(name)(num_classes=num_classes, dropout_rate=dropout_rate, **values), []
    except (ValueError, TypeError) as error:  # the head refuses its option values
        return None, [f"config.head.options: head {name!r}: {error}"]


def build_head(name: str, num_classes: int, dropout_rate: float = 0.0, **options) -> nn.Module:
    """The head ``name`` with ``options`` over its defaults; an option it does not take, or a value
    it refuses, is a RajaxError naming the head and the option."""
    head, problems = _head_or_problems(name, num_classes, dropout_rate, options)
    if problems:
        raise RajaxError("; ".join(problems))
    return head


def scorer_description(head: nn.Module) -> str:
    """How the head weighs what it attends to, for people (``rajax predict``, demo pictures)."""
    return getattr(head, "scorer_description", "learned scores")


def head_config_problems(head_config, num_classes: int) -> list[str]:
    """One line per problem of ``config.head`` (checked with the rest of the config, up front)."""
    from rajax.models import losses

    _, problems = _head_or_problems(head_config.name, num_classes, head_config.dropout_rate,
                                    dict(head_config.options))
    if not 0 <= head_config.dropout_rate < 1:
        problems.append(f"config.head.dropout_rate={head_config.dropout_rate}: must be in [0, 1)")
    problems += losses.aux_loss_problems(head_config.aux_losses)
    return problems
