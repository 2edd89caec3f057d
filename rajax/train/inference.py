"""Classifying one video with a trained run: regions, features, head, attention per region.

``predict_video`` runs the chain of a work directory on one file: the regions of the config
(with the actor square found beforehand by ``rajax.detection.detect_actors``), the backbone's
features (stage 1's fine-tuned I3D, or the Kinetics one), and the best head of stage 3 (or the
best end-to-end model). ``rajax.pictures.draw_attention`` draws its result as the paper's
Figure 5.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rajax.errors import RajaxError
from rajax.models.heads import scorer_description
from rajax.models.region_model import RegionModel
from rajax.train import backbone as backbone_lib
from rajax.train import checkpoints, inputs, layout, stages


def check_trained(workdir: str | os.PathLike, stage: str):
    """The config ``stage`` was trained with, once its best checkpoint is known to exist.

    Light (no JAX computation): ``rajax predict`` calls it before running the detector.
    """
    if stage not in ("train_head", "end_to_end"):
        raise RajaxError(f"predict uses a head: stage must be train_head or end_to_end, not {stage!r}")
    workdir = Path(workdir)
    if checkpoints.latest_step(workdir / stage) is None:
        raise RajaxError(f"{workdir / stage / checkpoints.BEST_DIR}: no trained {stage} checkpoint in this "
                         "work directory")
    return layout.trained_config(workdir, stage)


def load_backbone_for_prediction(workdir: str | os.PathLike, config, stage: str):
    """``(model, variables)`` of the backbone ``stage`` runs on, checked (for a stage-3 head) to be
    the one whose features trained the head. Before detection, so a mismatch costs no YOLO run."""
    workdir = Path(workdir)
    if stage == "train_head":
        model, variables = backbone_lib.load_backbone(config, workdir)
        _check_same_backbone(workdir, variables)
        return model, variables
    return backbone_lib.load_backbone(config, workdir, dtype=config.end_to_end.dtype)


def _check_same_backbone(workdir: Path, variables: dict) -> None:
    """The backbone about to compute features must be the one whose features trained the head."""
    record = workdir / "train_head" / layout.FEATURES_RECORD
    if not record.is_file():
        return
    trained_on = json.loads(record.read_text()).get("backbone")
    now = backbone_lib.variables_digest(variables)
    if trained_on != now:
        raise RajaxError(f"{record}: the head was trained on features of backbone {trained_on}, but the "
                         f"backbone found now is {now} (was stage 1 run again?); extract and train the "
                         "head again")


def predict_video(workdir: str | os.PathLike, video: str | os.PathLike, *, stage: str = "train_head",
                  actor_square=None, config=None, backbone=None) -> dict:
    """The prediction for one video as a JSON-able dict (see ``rajax predict --json``).

    ``config`` defaults to the one ``stage`` was trained with, ``backbone`` (``(model,
    variables)``) to ``load_backbone_for_prediction``.
    """
    from rajax.data import crops
    from rajax.data.pipeline import load_video_frames

    workdir = Path(workdir)
    config = config or check_trained(workdir, stage)
    best_dir = workdir / stage / checkpoints.BEST_DIR
    regions = inputs.region_names(config)
    data = config.data
    frames, boxes = load_video_frames(str(video), regions=regions, actor_square=actor_square,
                                      num_timesteps=data.num_timesteps, timestep_length=data.frames_per_timestep,
                                      sampling_mode=data.sampling, frame_side=data.frame_side)
    head = stages.build_head(config)
    trained = checkpoints.restore_tree(best_dir)
    model, variables = backbone or load_backbone_for_prediction(workdir, config, stage)
    if stage == "train_head":

        @jax.jit
        def classify(variables, head_params, frames, boxes):
            features = backbone_lib.video_features(model, variables, frames, boxes, data.crop_size,
                                                   config.backbone.extraction, data.frames_per_timestep)
            return head.apply({"params": head_params}, features[None])

        logits, attention = classify(variables, trained["params"], frames, boxes)
    else:
        region_model = RegionModel(backbone=model, head=head)
        variables = {"params": trained["params"], "batch_stats": trained.get("batch_stats") or {}}

        @jax.jit
        def classify_end_to_end(variables, frames, boxes):
            return region_model.apply(variables, crops.region_clips(frames, boxes, data.crop_size, model.dtype)[None])

        logits, attention = classify_end_to_end(variables, frames, boxes)
    probabilities = np.asarray(jax.nn.softmax(logits[0].astype(jnp.float32)))
    weights = np.asarray(attention["region_weight"][0])
    scores = np.asarray(attention["region_score"][0]) if "region_score" in attention else None
    best = int(np.argmax(probabilities))
    return {
        "video": str(video),
        "workdir": str(workdir),
        "stage": stage,
        "activity": config.classes[best],
        "probability": float(probabilities[best]),
        "probabilities": {name: float(p) for name, p in zip(config.classes, probabilities)},
        "actor_square": None if actor_square is None else [int(v) for v in actor_square],
        "head": config.head.name,
        "scorer": scorer_description(head),
        "regions": [
            {"name": name, "weight": float(weights[i]),
             **({"score": float(scores[i])} if scores is not None else {})}
            for i, name in enumerate(regions)
        ],
    }


def format_prediction(result: dict) -> str:
    lines = [f"{result['video']}: {result['activity']} ({100 * result['probability']:.1f}%)", "probabilities:"]
    for name, p in sorted(result["probabilities"].items(), key=lambda item: -item[1]):
        lines.append(f"  {name:<14} {100 * p:6.2f}%")
    has_score = any("score" in region for region in result["regions"])
    lines.append(f"attention per region ({result['head']}: {result['scorer']}; weight"
                 + (", score)" if has_score else ")") + ":")
    for region in result["regions"]:
        score = f"  {region['score']:.3f}" if "score" in region else ""
        lines.append(f"  {region['name']:<10} {region['weight']:.3f}{score}")
    if result["actor_square"] is None:
        lines.append("actor: none detected; the actor region is the full frame")
    return "\n".join(lines)
