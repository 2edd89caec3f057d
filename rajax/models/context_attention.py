"""Context Region Attention: a head variant built from the parts of ``rajax.models.heads``.

The worked example of docs/new-head.md. The paper's Region Attention scores each region from its
own feature alone, so a region cannot be judged against the rest of the scene (a hand near a
kettle matters more in a kitchen than on a desk). Here the scorer sees each region's feature beside
the video's context, the mean of all its regions: ``s_r = sigmoid(w . tanh(W [x_r ; mean(x)]))``,
then the paper's weighted average and classifier. Nothing in rajax.train or configs/base.py knows
about this class: a config names it by import path (configs/af_mr_context.py).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from rajax.models import heads


class ContextRegionAttention(nn.Module):
    """Region Attention whose scorer sees each region beside the mean of the video's regions.

    Option: ``hidden``, the width of the scorer's tanh layer.
    """

    num_classes: int
    dropout_rate: float = 0.0
    hidden: int = 128

    def __post_init__(self):
        if not self.hidden >= 1:  # checked when the config is validated, before anything runs
            raise ValueError(f"hidden={self.hidden!r}: the scorer needs at least one hidden unit")
        super().__post_init__()

    @property
    def scorer_description(self) -> str:
        return f"context MLP scorer ({self.hidden} tanh units), sigmoid scores"

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train: bool = False):
        features = heads.as_float32(features)
        region_valid, time_valid = heads.masks(features, region_mask, time_mask)
        items = heads.per_region(features, region_valid, time_valid)  # [B, R, C]
        context = heads.masked_mean(items, region_valid[:, :, None], axis=1)  # [B, C], valid regions only
        paired = jnp.concatenate([items, jnp.broadcast_to(context[:, None], items.shape)], axis=-1)
        raw = heads.raw_scores(paired, "mlp", self.hidden)  # parameters "hidden" and "dense" of this head
        weights, scores = heads.attention_weights(raw, region_valid, "sigmoid")  # [B, R, 1]
        pooled = jnp.einsum("br,brc->bc", weights[..., 0], items)
        logits = heads.Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        return logits, {"region_score": scores[..., 0], "region_weight": weights[..., 0],
                        "time_weight": heads.uniform(time_valid)}
