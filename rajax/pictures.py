"""Pictures of regions and attention, one implementation for every command that draws them.

- :func:`draw_regions`: a frame with the central square and the region boxes, and the crops the
  model reads (``rajax regions``, the demo's ``regions.png``);
- :func:`draw_attention`: a frame with each region shaded by its attention weight, beside the
  weights as bars: the paper's Figure 5 (``rajax predict --visualize``, the demo's attention
  pictures);
- :func:`draw_training_curve`: loss and accuracy per epoch of a training run, training and
  validation, from its ``metrics.jsonl`` (the demo's stage-1 curve).

Matplotlib is imported inside the functions (Agg backend): commands that draw nothing never pay for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rajax.files import atomic_savefig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_regions(frame, regions, boxes, crops, title: str, output: str) -> None:
    """Writes the figure: the frame with the central square and region boxes, then the crops."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    from rajax.data.regions import central_square_box

    height, width = frame.shape[:2]
    sq_x, sq_y, side = central_square_box(height, width)
    columns = 4
    rows = -(-len(regions) // columns)
    figure = plt.figure(figsize=(6 + 2.2 * columns, max(6.0, 2.2 * rows)), dpi=100)
    grid = figure.add_gridspec(rows, columns + 3)
    main = figure.add_subplot(grid[:, :3])
    main.imshow(frame)
    main.add_patch(Rectangle((sq_x - 0.5, sq_y - 0.5), side, side, fill=False, ec="white", ls="--", lw=1.5))
    # Red and yellow are kept for the actor and full boxes.
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown",
               "tab:pink", "tab:gray", "tab:cyan", "tab:olive"]
    colours = [
        "red" if name == "actor" else "yellow" if name == "full" else palette[i % len(palette)]
        for i, name in enumerate(regions)
    ]
    for i, (name, (x0, y0, s)) in enumerate(zip(regions, boxes)):
        colour = colours[i]
        # Thick boxes for the two that matter most; the overlapping grid boxes stay thin.
        lw = 3.0 if name in ("actor", "full") else 1.2
        main.add_patch(Rectangle((sq_x + x0 - 0.5, sq_y + y0 - 0.5), s, s, fill=False, ec=colour, lw=lw))
        if name == "actor":
            main.text(sq_x + x0 + 2, sq_y + y0 + 2, "actor", color="red", va="top", fontsize=9,
                      bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})
    main.set_title(title, fontsize=9)
    main.axis("off")
    for i, (name, crop) in enumerate(zip(regions, crops)):
        axis = figure.add_subplot(grid[i // columns, 3 + i % columns])
        axis.imshow(crop)
        x0, y0, s = boxes[i]
        axis.set_title(f"{name}\n({x0},{y0}) side {s}", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():  # the crop framed in its box's colour
            spine.set_edgecolor(colours[i])
            spine.set_linewidth(3)
    figure.tight_layout()
    atomic_savefig(figure, output, dpi=100)
    plt.close(figure)


def draw_attention(result: dict, path: str | os.PathLike) -> Path:
    """The middle frame's central square with each region outlined and shaded by its weight."""
    plt = _pyplot()
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


def draw_training_curve(records: list[dict], path: str | os.PathLike, title: str) -> Path:
    """Loss and accuracy per epoch, training (mean of the logged steps of each epoch) and
    validation, from the records of ``rajax.train.metrics.read_metrics``."""
    plt = _pyplot()
    train: dict[int, list[dict]] = {}
    for record in records:
        if record["split"] == "train":
            train.setdefault(int(record["epoch"]), []).append(record)
    validation = [r for r in records if r["split"] == "validation"]
    steps_per_epoch = max((r["step"] / r["epoch"] for r in records if r["split"] == "train" and r.get("epoch")),
                          default=1.0)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = sorted(train)
    for axis, key in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(epochs, [np.mean([r[key] for r in train[e]]) for e in epochs], "o-", label="training")
        if validation:
            axis.plot([r["step"] / steps_per_epoch for r in validation], [r[key] for r in validation], "s-",
                      label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    accuracy_axis.set_ylim(-0.02, 1.02)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    atomic_savefig(figure, path, dpi=110)
    plt.close(figure)
    return Path(path)
