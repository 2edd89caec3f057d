"""Losses: cross-entropy on the logits, plus optional auxiliary terms on what a head returns.

A loss is a pure function ``loss(logits, attention, labels) -> [B]`` (one value per example; the
train step weights them by the batch mask and averages). :func:`build_loss` makes it from the
config: ``config.head.aux_losses`` is a tuple of ``"name=weight"`` entries naming terms of
``AUX_LOSSES``, each computed from the head's ``attention`` dict (see ``rajax.models.heads``), e.g.
``--config.head.aux_losses=region_weight_entropy=0.01``. A new term is one function here; the train
step never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

Loss = Callable[[jax.Array, Mapping[str, jax.Array], jax.Array], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy, in float32 whatever the compute dtype."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def _entropy(weights: jax.Array) -> jax.Array:
    """Entropy of each row of a distribution [B, N] (0 log 0 = 0)."""
    return -jnp.sum(jnp.where(weights > 0, weights * jnp.log(jnp.maximum(weights, 1e-30)), 0.0), axis=-1)


def region_weight_entropy(attention: Mapping[str, jax.Array]) -> jax.Array:
    """Low when the head attends to few regions: a positive weight makes its attention sparser."""
    return _entropy(attention["region_weight"])


def time_weight_entropy(attention: Mapping[str, jax.Array]) -> jax.Array:
    """The same over the temporal positions."""
    return _entropy(attention["time_weight"])


def region_score_l1(attention: Mapping[str, jax.Array]) -> jax.Array:
    """Sum of the region scores (sigmoid scores are >= 0): pushes unused regions' scores to 0."""
    return jnp.sum(jnp.abs(attention["region_score"]), axis=-1)


# name -> (term, the entry of the head's attention dict it reads)
AUX_LOSSES = {
    "region_weight_entropy": (region_weight_entropy, "region_weight"),
    "time_weight_entropy": (time_weight_entropy, "time_weight"),
    "region_score_l1": (region_score_l1, "region_score"),
}


def parse_aux_losses(entries: Sequence[str]) -> list[tuple[str, float]]:
    """``("name=weight", ...)`` -> ``[(name, weight)]``; ValueError naming a bad entry."""
    parsed = []
    for entry in entries:
        name, separator, weight = str(entry).partition("=")
        if not separator or name.strip() not in AUX_LOSSES:
            raise ValueError(f"{entry!r}: expected NAME=WEIGHT with NAME one of {', '.join(AUX_LOSSES)}")
        try:
            parsed.append((name.strip(), float(weight)))
        except ValueError:
            raise ValueError(f"{entry!r}: the weight {weight!r} is not a number") from None
    return parsed


def aux_loss_problems(entries: Sequence[str]) -> list[str]:
    try:
        parse_aux_losses(entries)
    except ValueError as error:
        return [f"config.head.aux_losses: {error}"]
    return []


def missing_attention(aux_losses: Sequence[str], attention_keys) -> list[str]:
    """``"name needs attention['key']"`` for every term whose input the head does not return."""
    return [f"{name} needs the head's {AUX_LOSSES[name][1]}" for name, _ in parse_aux_losses(aux_losses)
            if AUX_LOSSES[name][1] not in attention_keys]


def build_loss(aux_losses: Sequence[str] = ()) -> Loss:
    """Cross-entropy plus the weighted auxiliary terms of ``aux_losses`` (``"name=weight"``)."""
    terms = [(AUX_LOSSES[name][0], weight) for name, weight in parse_aux_losses(aux_losses) if weight]

    def loss(logits, attention, labels):
        total = cross_entropy(logits, labels)
        for term, weight in terms:
            total = total + weight * term(attention)
        return total

    return loss


def classification_loss(logits, attention, labels):
    """Plain cross-entropy: the loss of every stage without auxiliary terms."""
    return cross_entropy(logits, labels)
