"""The rows of the results table (the paper's Table 3 in miniature) and the config of each.

A row is a head trained on some of the regions' features (stage 3), on each backbone's features:
the Kinetics-400 I3D as it is, and the I3D after Multi-Regional fine-tuning (stage 1). ``i3d`` is
the paper's first column, I3D alone: for the Kinetics-400 backbone a linear classifier on its
full-frame features (the ``full_frame`` row), for the fine-tuned one its own classifier.
"""

from __future__ import annotations

import dataclasses

from rajax.data.regions import REGION_NAMES, REGIONS_WITHOUT_ACTOR

BACKBONES = ("kinetics", "finetuned")


@dataclasses.dataclass(frozen=True)
class Row:
    """A head (a name of rajax.models.heads, with options) on some regions."""

    key: str
    title: str
    head: str
    regions: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()


I3D_ALONE = "i3d"
ROWS = {row.key: row for row in (
    Row(I3D_ALONE, "I3D alone", "single_region", ("full",), (("region_index", 0),)),
    Row("region_mean", "Region Mean (11 regions)", "region_mean", REGION_NAMES),
    Row("region_attention", "Region Attention (11 regions)", "region_attention", REGION_NAMES),
    Row("region_attention_no_actor", "Region Attention, no actor crop (10)", "region_attention",
        REGIONS_WITHOUT_ACTOR),
    Row("full_frame", "full frame only", "single_region", ("full",), (("region_index", 0),)),
    Row("actor_only", "actor crop only", "single_region", ("actor",), (("region_index", 0),)),
)}


def trained_row(key: str) -> Row:
    """The stage-3 run that gives a row on the Kinetics-400 features: I3D alone is the full-frame
    head there (the backbone's own Kinetics classifier knows other classes)."""
    return ROWS["full_frame"] if key == I3D_ALONE else ROWS[key]


def row_overrides(row: Row, backbone: str, features_dir: str, finetuned_dir: str) -> dict:
    """The config fields a row's stage-3 run sets, dotted keys with typed values."""
    import ml_collections

    return {
        "backbone.finetuned": backbone == "finetuned",
        "backbone.finetuned_dir": finetuned_dir,
        "data.features_dir": features_dir,
        "data.regions": row.regions,
        "head.name": row.head,
        "head.options": ml_collections.ConfigDict(dict(row.options)),
    }


def uses_actor(config) -> bool:
    """Whether the recipe of ``config`` needs actor squares (some region it reads is the actor's)."""
    rows = [ROWS[key] for key in config.run.rows if key in ROWS]
    wanted = {*config.data.regions, *config.finetune.regions, *(r for row in rows for r in row.regions)}
    return "actor" in wanted
