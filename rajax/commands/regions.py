"""``rajax regions``: draw the regions the model sees on one frame of a video, crops beside it."""

from __future__ import annotations

import argparse
import sys

HELP = "Draw the spatial regions (full, 3x3 grid, actor) on a frame and show the crops the model sees."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="a video file (mp4, avi, gif ...)")
    parser.add_argument("--output", required=True, metavar="PNG", help="the image to write")
    parser.add_argument("--actors", metavar="FILE", default=None,
                        help="actor-record file from `rajax detect-actors` (without it, or when the video "
                             "is not in it, the actor region is the full frame)")
    parser.add_argument("--frame", type=int, default=None, metavar="N",
                        help="frame index to show (default: the middle frame)")
    parser.add_argument("--regions", default="all", metavar="NAMES",
                        help="'all', 'no_actor', or comma-separated region names (default: all)")
    parser.add_argument("--size", type=int, default=224, metavar="PIXELS",
                        help="side the crops are resized to, as for the model (default: 224)")


def find_actor_square(video_path: str, actors_file: str | None) -> tuple[tuple[int, int, int] | None, str]:
    """The video's actor square from a detect-actors file, and a note saying where it came from."""
    if actors_file is None:
        return None, "no actor file: actor region = full frame"
    from rajax.data.records import VideoRecord, attach_actor_squares

    (record,), matched = attach_actor_squares([VideoRecord("video", video_path, 0)], actors_file)
    if not matched:
        return None, f"{video_path} not in {actors_file}: actor region = full frame"
    if record.actor_square is None:
        return None, "no person detected: actor region = full frame"
    return record.actor_square, f"actor square {list(record.actor_square)} from {actors_file}"


def draw_regions(frame, regions, boxes, crops, title: str, output: str) -> None:
    """Writes the figure: the frame with the central square and region boxes, then the crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    figure.savefig(output)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rajax.data import regions as regions_lib
    from rajax.data import video
    from rajax.errors import RajaxError

    try:
        regions = regions_lib.resolve_regions(args.regions)
    except ValueError as error:
        raise RajaxError(f"--regions: {error}") from None
    if args.size < 8:
        raise RajaxError(f"--size must be at least 8, got {args.size}")
    info = video.probe(args.video)
    index = info.num_frames // 2 if args.frame is None else args.frame
    if not 0 <= index < info.num_frames:
        raise RajaxError(f"--frame {index}: {args.video} has frames 0..{info.num_frames - 1}")
    actor_square, note = find_actor_square(args.video, args.actors)
    print(f"rajax regions: {note}", file=sys.stderr)
    frame = video.read_frames(args.video, [index])[0]
    square = regions_lib.central_square_crop(frame)
    boxes = regions_lib.region_boxes(square.shape[0], regions, actor_square)
    crops = regions_lib.crop_regions(square[None], regions, actor_square, args.size, output="uint8")[:, 0]
    output = Path(args.output)
    if output.parent and not output.parent.is_dir():
        raise RajaxError(f"{output}: folder {output.parent} does not exist")
    title = f"{Path(args.video).name}: frame {index} of {info.num_frames}, {info.width}x{info.height}\n{note}"
    draw_regions(frame, regions, boxes, crops, title, str(output))
    print(f"rajax regions: wrote {output}")
    return 0
