"""The worked example of a new head (docs/new-head.md): its formula, its masks, its config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rajax.errors import RajaxError
from rajax.models import check_head, heads
from rajax.models.context_attention import ContextRegionAttention
from rajax.train.config import load_config, validate_config
from rajax.train.stages import build_head

B, R, T, C, K, H = 2, 4, 3, 5, 6, 7


def _dense(params, x):
    return x @ np.asarray(params["kernel"]) + np.asarray(params["bias"])


def test_each_region_is_scored_beside_the_mean_of_the_regions():
    x = np.random.default_rng(0).normal(size=(B, R, T, C)).astype(np.float32)
    head = ContextRegionAttention(num_classes=K, hidden=H)
    variables = head.init(jax.random.key(0), x)
    logits, attention = head.apply(variables, x)
    p = variables["params"]
    items = x.mean(axis=2)  # [B, R, C]
    paired = np.concatenate([items, np.repeat(items.mean(axis=1, keepdims=True), R, axis=1)], axis=-1)
    scores = 1 / (1 + np.exp(-_dense(p["dense"], np.tanh(_dense(p["hidden"], paired)))[..., 0]))
    weights = scores / scores.sum(axis=1, keepdims=True)
    expected = _dense(p["classifier"]["logits"], np.einsum("br,brc->bc", weights, items))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(attention["region_weight"], weights, rtol=1e-5)
    # A masked region is absent from the scores, the weights and the context.
    mask = np.ones((B, R), bool)
    mask[:, 1] = False
    masked, masked_attention = head.apply(variables, x, region_mask=jnp.asarray(mask))
    np.testing.assert_allclose(masked, head.apply(variables, np.delete(x, 1, axis=1))[0], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(masked_attention["region_weight"])[:, 1] == 0)


def test_its_config_names_it_by_import_path_with_its_one_option():
    config = validate_config(load_config("af_mr_context"))
    head = build_head(config)
    assert isinstance(head, ContextRegionAttention) and head.hidden == 128 and head.num_classes == 10
    assert heads.head_options(ContextRegionAttention) == {"hidden": 128}
    assert heads.scorer_description(head) == "context MLP scorer (128 tanh units), sigmoid scores"


def test_it_keeps_the_head_contract():
    check_head("rajax.models.context_attention:ContextRegionAttention")


def test_it_checks_its_own_option():
    config = load_config("af_mr_context")
    with config.head.options.unlocked():
        config.head.options.hidden = 0
    with pytest.raises(RajaxError, match=r"config.head.options: head 'rajax.models.context_attention:"
                                         r"ContextRegionAttention': hidden=0: the scorer needs at least one"):
        validate_config(config)
