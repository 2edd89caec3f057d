"""Classifying one video with a trained run: regions, features, head, attention per region.

``predict_video`` runs the chain of a work directory on one file: the regions of the config
(with the actor square found beforehand by ``rajax.detection.detect_actors``), the backbone's
features (stage 1's fine-tuned I3D, or the Kinetics one), and the best head of stage 3 (or the
best end-to-end model). ``draw_attention`` draws the paper's Figure 5: a frame with each region
outlined and shaded by its attention weight, beside the weights as bars.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rajax.errors import RajaxError
from rajax.files import atomic_savefig
from rajax.models.heads import scorer_description
from rajax.train import backbone as backbone_lib
from rajax.train import checkpoints, stages


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
    return stages.trained_config(workdir, stage)


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
    record = workdir / "train_head" / stages.FEATURES_RECORD
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
    regions = stages.region_names(config)
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
        region_model = backbone_lib.RegionModel(backbone=model, head=head)
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


def draw_attention(result: dict, path: str | os.PathLike) -> Path:
    """The middle frame's central square with each region outlined and shaded by its weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from rajax.data import regions as regions_lib
    from rajax.data import video as video_lib

    info = video_lib.probe(result["video"])
    frame = regions_lib.central_square_crop(video_lib.read_frames(result["video"], [info.num_frames // 2])[0])
    side = frame.shape[0]
    names = [region["name"] for region in result["regions"]]
    weights = np.array([region["weight"] for region in result["regions"]])
    boxes = regions_lib.region_boxes(side, names, result["actor_square"])
    top = max(float(weights.max()), 1e-9)
    spread = float(weights.max() - weights.min())
    colormap = plt.get_cmap("inferno")

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [1.1, 1]})
    left.imshow(frame)
    # Regions overlap, so the fill only shows how far a region is above the least attended one;
    # outlines carry the weight itself. Heaviest last, so its outline is on top.
    for index in np.argsort(weights):
        x0, y0, crop = boxes[index]
        strength = weights[index] / top
        relative = (weights[index] - weights.min()) / spread if spread > 1e-6 else 0.0
        color = colormap(0.25 + 0.7 * strength)
        left.add_patch(Rectangle((x0, y0), crop, crop, facecolor=color, alpha=0.45 * relative,
                                 edgecolor=color, linewidth=1 + 3 * strength))
        name = names[index]
        # Grid cells are labelled at their centres (distinct), full frame and actor at a corner.
        at_centre = name.startswith("grid_")
        x, y = (x0 + crop / 2, y0 + crop / 2) if at_centre else (x0 + 3, y0 + 3)
        left.text(x, y, f"{name} {weights[index]:.2f}", color="white", fontsize=7,
                  ha="center" if at_centre else "left", va="center" if at_centre else "top",
                  bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "linewidth": 0})
    left.set_axis_off()
    left.set_title(f"{result['activity']} ({100 * result['probability']:.1f}%)\n{result['head']}: {result['scorer']}",
                   fontsize=10)
    right.barh(range(len(names)), weights, color=[colormap(0.25 + 0.7 * w / top) for w in weights])
    right.set_yticks(range(len(names)), names)
    right.invert_yaxis()
    right.set_xlabel("attention weight (sums to 1 over the regions)")
    figure.suptitle(Path(result["video"]).name)
    figure.tight_layout()
    atomic_savefig(figure, path, dpi=110)
    plt.close(figure)
    return path
