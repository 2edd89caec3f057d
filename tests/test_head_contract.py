"""rajax.models.check_head: a head written outside rajax passes it in a three-line test of its own,
and each way of breaking the contract fails it with that property named.

The heads live in a module written to a temporary folder (not inside rajax/), named by import path
as a config would name them. Each broken head differs from the good one in one place.
"""

import importlib
import sys
import textwrap

import pytest

from rajax.errors import RajaxError
from rajax.models import HeadContractError, check_head

MODULE = "rajax_contract_example_heads"
HEADS_SOURCE = '''
import flax.linen as nn
import jax.numpy as jnp

from rajax.models import heads


class SoftGate(nn.Module):
    """Softmax attention over regions with a temperature: what a user's own head looks like."""

    num_classes: int
    dropout_rate: float = 0.0
    temperature: float = 2.0

    def pool(self, features, region_valid, time_valid):
        items = heads.per_region(features, region_valid, time_valid)
        weights, scores = heads.attention_weights(heads.raw_scores(items), region_valid, "softmax",
                                                  self.temperature)
        return jnp.einsum("br,brc->bc", weights[..., 0], items), weights[..., 0], scores[..., 0]

    def attention(self, weights, scores, time_valid):
        return {"region_weight": weights, "region_score": scores, "time_weight": heads.uniform(time_valid)}

    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train=False):
        features = heads.as_float32(features)
        region_valid, time_valid = heads.masks(features, region_mask, time_mask)
        pooled, weights, scores = self.pool(features, region_valid, time_valid)
        logits = heads.Classifier(self.num_classes, self.dropout_rate, name="classifier")(pooled, train)
        return logits, self.attention(weights, scores, time_valid)


class LeaksMaskedRegions(SoftGate):
    """Reports zero weight for a masked region, but pools every region's feature anyway."""

    def pool(self, features, region_valid, time_valid):
        _, weights, scores = super().pool(features, region_valid, time_valid)
        everything = heads.per_region(features, jnp.ones_like(region_valid), time_valid)
        return everything.mean(axis=1), weights, scores


class LeaksMaskedTimesteps(SoftGate):
    def pool(self, features, region_valid, time_valid):
        return super().pool(features, region_valid, jnp.ones_like(time_valid))


class NoTimeWeight(SoftGate):
    def attention(self, weights, scores, time_valid):
        return {"region_weight": weights, "region_score": scores}


class ScoresOverTheWrongAxis(SoftGate):
    def attention(self, weights, scores, time_valid):
        return {"region_weight": weights, "region_score": scores[:, :, None], "time_weight": heads.uniform(time_valid)}


class UnnormalisedWeights(SoftGate):
    def attention(self, weights, scores, time_valid):
        return {"region_weight": 2 * weights, "time_weight": heads.uniform(time_valid)}


class WrongLogits(SoftGate):
    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train=False):
        logits, attention = SoftGate.__call__(self, features, region_mask, time_mask, train=train)
        return logits[:, :-1], attention


class KeepsBatchStatistics(SoftGate):
    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train=False):
        features = nn.BatchNorm(use_running_average=not train)(heads.as_float32(features))
        return SoftGate.__call__(self, features, region_mask, time_mask, train=train)


class MixesTheBatch(SoftGate):
    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train=False):
        features = heads.as_float32(features)
        return SoftGate.__call__(self, features - features.mean(axis=0), region_mask, time_mask, train=train)


class ReadsValuesInPython(SoftGate):
    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train=False):
        scale = 2.0 if float(jnp.sum(features)) > 0 else 1.0
        return SoftGate.__call__(self, heads.as_float32(features) * scale, region_mask, time_mask, train=train)


class DrawsOtherRandomness(SoftGate):
    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train=False):
        if train:
            self.make_rng("noise")
        return SoftGate.__call__(self, features, region_mask, time_mask, train=train)


class HalfPrecisionLogits(SoftGate):
    @nn.compact
    def __call__(self, features, region_mask=None, time_mask=None, *, train=False):
        logits, attention = SoftGate.__call__(self, features, region_mask, time_mask, train=train)
        return logits.astype(features.dtype), attention
'''

# The three lines a head's author writes in their own test file.
OWN_TEST_SOURCE = '''from rajax.models import check_head

def test_soft_gate_keeps_the_head_contract():
    check_head("rajax_contract_example_heads:SoftGate")
'''


@pytest.fixture(scope="module")
def head_folder(tmp_path_factory):
    """A folder outside rajax/ holding the heads and their author's own test, on sys.path."""
    folder = tmp_path_factory.mktemp("my_project")
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(HEADS_SOURCE))
    (folder / "test_soft_gate.py").write_text(OWN_TEST_SOURCE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    for name in (MODULE, "test_soft_gate"):
        sys.modules.pop(name, None)


def test_a_head_in_a_file_of_its_own_passes_its_three_line_test(head_folder):
    assert len([line for line in OWN_TEST_SOURCE.splitlines() if line.strip()]) == 3
    importlib.import_module("test_soft_gate").test_soft_gate_keeps_the_head_contract()
    check_head(f"{MODULE}:SoftGate", {"temperature": 0.5})  # and with options


@pytest.mark.parametrize("head, broken", [
    ("LeaksMaskedRegions", r"masked regions equal dropped regions: row 0 with region_mask False at \[1\]: logits"),
    ("LeaksMaskedTimesteps", r"masked timesteps equal dropped timesteps: row 0 with time_mask False at \[3\]: logits"),
    ("NoTimeWeight", "attention dict keys and shapes: no time_weight"),
    ("ScoresOverTheWrongAxis", r"attention dict keys and shapes: region_score has shape \(3, 5, 1\), expected \[B, R\]"),
    ("UnnormalisedWeights", "weights are distributions: region_weight has negative entries or rows that do not sum"),
    ("WrongLogits", r"output shapes: logits are float32 \(3, 6\), expected float32 \(3, 7\)"),
    ("KeepsBatchStatistics", r"initialises like stage 3: it makes the variable collections \['batch_stats', 'params'\]"),
    ("MixesTheBatch", "examples are independent: row 0 gives other logits alone than in a batch of 3"),
    ("ReadsValuesInPython", "runs compiled: ConcretizationTypeError"),
    ("DrawsOtherRandomness", "trains with dropout as its only randomness: InvalidRngError"),
    ("HalfPrecisionLogits", "computes in float32 whatever the input dtype: float16 features give float16 logits"),
])
def test_a_head_that_breaks_the_contract_fails_with_the_property_named(head_folder, head, broken):
    with pytest.raises(HeadContractError, match=rf"head '{MODULE}:{head}' breaks the head contract: {broken}"):
        check_head(f"{MODULE}:{head}")


def test_options_the_head_does_not_take_fail_the_first_property(head_folder):
    with pytest.raises(HeadContractError, match=r"builds from its name and options: config.head.options.temprature: "
                                                r"head '[a-z_]+:SoftGate' takes no option 'temprature'"):
        check_head(f"{MODULE}:SoftGate", {"temprature": 0.5})
    with pytest.raises(HeadContractError, match="builds from its name and options: .*cannot import the head"):
        check_head("no_such_module_anywhere:Head")
    assert issubclass(HeadContractError, AssertionError) and not issubclass(HeadContractError, RajaxError)
