"""The head contract, checked on any head: ``rajax.models.check_head(head, options=None)``.

docs/new-head.md states what rajax expects of a head (``rajax/models/heads.py`` restates it); the
stages rely on every point, for the heads shipped in rajax and for one named by import path alike::

    from rajax.models import check_head

    def test_my_head_keeps_the_head_contract():
        check_head("my_package.my_heads:MyHead")

builds the head the way ``rajax train`` does (``heads.build_head``: registry name or
``package.module:Class``, ``options`` over its defaults), runs it on small random features and
raises :class:`HeadContractError` naming the first property it breaks, in this order:

- ``builds from its name and options``;
- ``initialises like stage 3``: ``head.init(key, zeros [1, R, T', C])`` gives parameters only
  (stage 3 keeps ``params`` and nothing else, and applies the head to any batch size);
- ``output shapes``: ``logits [B, num_classes]`` float32, and an attention dict;
- ``attention dict keys and shapes``: ``region_weight [B, R]`` and ``time_weight [B, T']`` always,
  ``region_score``, ``time_score``, ``region_weight_heads [B, H, R]`` and ``time_weight_heads
  [B, H, T']`` when given, and any other entry float32 with the batch as its first axis;
- ``weights are distributions``: the region and time weights are >= 0 and sum to 1;
- ``runs compiled``: the same outputs under ``jax.jit`` (the stages compile every step);
- ``trains with dropout as its only randomness``: ``train=True`` with a ``dropout`` stream;
- ``computes in float32 whatever the input dtype``: float16 features give float32 logits, those
  of the same values in float32;
- ``examples are independent``: each row's outputs do not depend on the other rows (evaluation
  pads its last batch and drops the padding rows);
- ``masked regions equal dropped regions``: with ``region_mask`` False for some regions of a
  video (never the first, the full frame every video has), its logits and weights are those of the
  video without them, and their weights are 0;
- ``masked timesteps equal dropped timesteps``: the same for ``time_mask``.

Values are compared to 1e-5, float32 rounding of these small computations.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rajax.errors import RajaxError
from rajax.models import heads

# Small, pairwise different sizes: an axis used in place of another shows as a shape error.
BATCH, REGIONS, STEPS, CHANNELS, CLASSES = 3, 5, 4, 6, 7
TOLERANCE = 1e-5
# Per row of the batch, the regions (and timesteps) masked: a different set in each row, so that a
# head applying row 0's mask to every row, or none at all, is caught. Region 0 stays: it is the full
# frame, which every video has (the single-region baseline reads it and nothing else).
MASKED_REGIONS = ((1,), (2, 3), (REGIONS - 1,))
MASKED_STEPS = ((STEPS - 1,), (0,), (1, 2))
# Entries of the attention dict the contract names, and their shapes after the batch axis
# ("H": any number of heads).
_KNOWN_ENTRIES = {
    "region_weight": ("R",), "time_weight": ("T",), "region_score": ("R",), "time_score": ("T",),
    "region_weight_heads": ("H", "R"), "time_weight_heads": ("H", "T"),
}
_REQUIRED_ENTRIES = ("region_weight", "time_weight")


class HeadContractError(AssertionError):
    """A head breaks a property of the head contract; the message names the property."""


def check_head(head: str, options: Mapping | None = None) -> None:
    """Runs the head contract on the head ``head`` (a key of ``heads.HEADS`` or
    ``package.module:ClassName``) built with ``options``; raises :class:`HeadContractError` naming
    the first property it breaks. Returns None when the head keeps them all."""
    _Check(head, dict(options or {})).run()


class _Check:
    """One head under check: its module, its variables, and one method per property."""

    def __init__(self, name: str, options: dict):
        self.name = name
        self.options = options
        self.features = np.random.default_rng(0).normal(size=(BATCH, REGIONS, STEPS, CHANNELS)).astype(np.float32)

    def fail(self, prop: str, detail: str):
        raise HeadContractError(f"head {self.name!r} breaks the head contract: {prop}: {detail}")

    def attempt(self, prop: str, function, *args, **kwargs):
        """``function(*args, **kwargs)``; an exception it raises fails ``prop``."""
        try:
            return function(*args, **kwargs)
        except HeadContractError:
            raise
        except Exception as error:  # noqa: BLE001 - whatever the head raises breaks the property
            self.fail(prop, f"{type(error).__name__}: {error}")

    def apply(self, features, region_mask=None, time_mask=None, **kwargs):
        logits, attention = self.module.apply(self.variables, jnp.asarray(features), region_mask=region_mask,
                                              time_mask=time_mask, **kwargs)
        return np.asarray(logits), {key: np.asarray(value) for key, value in attention.items()}

    def run(self) -> None:
        self.builds()
        self.initialises()
        logits, attention = self.output_shapes()
        self.attention_entries(attention)
        self.distributions(attention)
        self.compiled(logits, attention)
        self.dropout()
        self.float32()
        self.independent_examples(logits)
        self.masked_regions()
        self.masked_steps()

    # ----------------------------------------------------------------------------------------

    def builds(self) -> None:
        try:
            self.module = heads.build_head(self.name, CLASSES, **self.options)
        except RajaxError as error:
            self.fail("builds from its name and options", str(error))

    def initialises(self) -> None:
        prop = "initialises like stage 3"
        dummy = jnp.zeros((1, REGIONS, STEPS, CHANNELS), jnp.float32)
        self.variables = self.attempt(prop, self.module.init, jax.random.key(0), dummy)
        collections = set(self.variables)
        if collections - {"params"}:
            self.fail(prop, f"it makes the variable collections {sorted(collections)}; a head has parameters "
                            "only (stage 3 keeps 'params' and nothing else)")

    def output_shapes(self):
        prop = "output shapes"
        outputs = self.attempt(prop, self.module.apply, self.variables, jnp.asarray(self.features),
                               region_mask=None, time_mask=None, train=False)
        if not (isinstance(outputs, tuple) and len(outputs) == 2):
            self.fail(prop, f"the head returns {type(outputs).__name__}, not (logits, attention)")
        logits, attention = outputs
        dtype = getattr(logits, "dtype", type(logits).__name__)
        if tuple(np.shape(logits)) != (BATCH, CLASSES) or dtype != jnp.float32:
            self.fail(prop, f"logits are {dtype} {tuple(np.shape(logits))}, expected float32 "
                            f"{(BATCH, CLASSES)} [B, num_classes]")
        if not isinstance(attention, Mapping):
            self.fail(prop, f"the attention is a {type(attention).__name__}, not a dict")
        if not np.all(np.isfinite(np.asarray(logits))):
            self.fail(prop, "logits are not finite")
        return np.asarray(logits), attention

    def attention_entries(self, attention) -> None:
        prop = "attention dict keys and shapes"
        missing = [key for key in _REQUIRED_ENTRIES if key not in attention]
        if missing:
            self.fail(prop, f"no {', '.join(missing)} (it gives {', '.join(sorted(attention)) or 'nothing'})")
        for key, value in attention.items():
            shape = tuple(np.shape(value))
            if getattr(value, "dtype", None) != jnp.float32:
                self.fail(prop, f"{key} is {getattr(value, 'dtype', type(value).__name__)}, not float32")
            if not shape or shape[0] != BATCH:
                self.fail(prop, f"{key} has shape {shape}, not the batch ({BATCH}) as its first axis")
            axes = _KNOWN_ENTRIES.get(key)
            sizes = {"R": REGIONS, "T": STEPS}
            if axes is not None and (len(shape) != 1 + len(axes) or any(
                    axis != "H" and size != sizes[axis] for axis, size in zip(axes, shape[1:]))):
                expected = ", ".join(("B", *axes)).replace("T", "T'")
                self.fail(prop, f"{key} has shape {shape}, expected [{expected}] with B={BATCH}, R={REGIONS}, "
                                f"T'={STEPS}")

    def distributions(self, attention, where: str = "") -> None:
        for key in ("region_weight", "time_weight", "region_weight_heads", "time_weight_heads"):
            if key not in attention:
                continue
            weights = np.asarray(attention[key])
            if np.any(weights < 0) or not np.allclose(weights.sum(axis=-1), 1.0, rtol=TOLERANCE, atol=TOLERANCE):
                self.fail("weights are distributions",
                          f"{key}{where} has negative entries or rows that do not sum to 1 "
                          f"(sums {np.round(weights.sum(axis=-1), 6).tolist()})")

    def compiled(self, logits, attention) -> None:
        prop = "runs compiled"

        def forward(variables, features):
            return self.module.apply(variables, features, region_mask=None, time_mask=None, train=False)

        jit_logits, jit_attention = self.attempt(prop, jax.jit(forward), self.variables, jnp.asarray(self.features))
        if not np.allclose(jit_logits, logits, rtol=TOLERANCE, atol=TOLERANCE):
            self.fail(prop, "logits under jax.jit differ from those outside it")
        if set(jit_attention) != set(attention):
            self.fail(prop, f"the attention under jax.jit has the entries {sorted(jit_attention)}, "
                            f"outside it {sorted(attention)}")

    def dropout(self) -> None:
        prop = "trains with dropout as its only randomness"
        logits, _ = self.attempt(prop, self.apply, self.features, train=True, rngs={"dropout": jax.random.key(1)})
        if logits.shape != (BATCH, CLASSES):
            self.fail(prop, f"logits in training are {logits.shape}, expected {(BATCH, CLASSES)}")

    def float32(self) -> None:
        prop = "computes in float32 whatever the input dtype"
        half = self.features.astype(np.float16)
        logits16, _ = self.attempt(prop, self.apply, half)
        logits32, _ = self.apply(half.astype(np.float32))
        if logits16.dtype != np.float32:
            self.fail(prop, f"float16 features give {logits16.dtype} logits")
        if not np.allclose(logits16, logits32, rtol=TOLERANCE, atol=TOLERANCE):
            self.fail(prop, "float16 features give other logits than the same values in float32")

    def independent_examples(self, logits) -> None:
        prop = "examples are independent"
        for row in range(BATCH):
            alone, _ = self.attempt(prop, self.apply, self.features[row:row + 1])
            if not np.allclose(alone[0], logits[row], rtol=TOLERANCE, atol=TOLERANCE):
                self.fail(prop, f"row {row} gives other logits alone than in a batch of {BATCH}")

    def masked_regions(self) -> None:
        self._masked_equals_dropped("masked regions equal dropped regions", "region_mask", MASKED_REGIONS,
                                    axis=1, weight_key="region_weight")

    def masked_steps(self) -> None:
        self._masked_equals_dropped("masked timesteps equal dropped timesteps", "time_mask", MASKED_STEPS,
                                    axis=2, weight_key="time_weight")

    def _masked_equals_dropped(self, prop: str, mask_name: str, masked: tuple, axis: int, weight_key: str) -> None:
        size = self.features.shape[axis]
        mask = np.ones((BATCH, size), bool)
        for row, positions in enumerate(masked):
            mask[row, list(positions)] = False
        logits, attention = self.attempt(prop, self.apply, self.features, **{mask_name: jnp.asarray(mask)})
        self.distributions(attention, f" with {mask_name}")
        for row, positions in enumerate(masked):
            dropped = np.delete(self.features[row:row + 1], list(positions), axis=axis)
            expected, expected_attention = self.attempt(prop, self.apply, dropped)
            shown = f"row {row} with {mask_name} False at {list(positions)}"
            if not np.allclose(logits[row], expected[0], rtol=TOLERANCE, atol=TOLERANCE):
                difference = float(np.max(np.abs(logits[row] - expected[0])))
                self.fail(prop, f"{shown}: logits differ from those of the features without them by up to "
                                f"{difference:.3g}")
            for key in (weight_key, f"{weight_key}_heads"):
                if key in attention and np.any(attention[key][row][..., list(positions)] != 0):
                    self.fail(prop, f"{shown}: {key} is {attention[key][row][..., list(positions)].tolist()} there, "
                                    "not 0")
            kept = np.delete(attention[weight_key][row], list(positions))
            if not np.allclose(kept, expected_attention[weight_key][0], rtol=TOLERANCE, atol=TOLERANCE):
                self.fail(prop, f"{shown}: the other {weight_key} differ from those without them")
