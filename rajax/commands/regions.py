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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rajax.data import regions as regions_lib
    from rajax.data import video
    from rajax.errors import RajaxError
    from rajax.pictures import draw_regions

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
    draw_regions(frame, regions, boxes, crops, title, output)
    print(f"rajax regions: wrote {output}")
    return 0
