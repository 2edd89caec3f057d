"""``rajax detect-actors``: find the actor of each video with YOLO, for the Actor Focus region."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Detect the person in each video with YOLO and store one actor square per video (Actor Focus)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR",
                        help="video files, or folders searched recursively for videos")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="actor-record file (JSON lines, one record per video); an existing file is "
                             "extended and the videos it already has are skipped")
    parser.add_argument("--detector-weights", metavar="PATH", default=None,
                        help="a local Ultralytics YOLO checkpoint with a 'person' class "
                             "(default: yolo11n.pt, downloaded on first use)")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="run the detector on every N-th frame (default: 1, every frame)")
    parser.add_argument("--device", default=None, metavar="DEV",
                        help="'cpu', or a CUDA device number such as '0' (default: a GPU when there is one)")
    parser.add_argument("--json", action="store_true",
                        help="also print the records and the summary to stdout as one JSON object")


def describe(summary: dict[str, int], output: str) -> str:
    """The one-paragraph run summary printed at the end."""
    return (
        f"rajax detect-actors: {summary['videos']} videos: {summary['done']} detected, "
        f"{summary['skipped']} already in {output}, {summary['failed']} failed; "
        f"{summary['fallbacks']} without a person (actor region = full frame)"
    )


def run(args: argparse.Namespace) -> int:
    from rajax.detection import detect_actors, summarize

    records = detect_actors(
        args.videos,
        args.output,
        detector_weights=args.detector_weights,
        every=args.every,
        device=args.device,
        progress=True,
    )
    summary = summarize(records)
    if args.json:
        print(json.dumps({"summary": summary, "records": records}, indent=2))
        print(describe(summary, args.output), file=sys.stderr)
    else:
        print(describe(summary, args.output))
    # Failed videos do not stop the run, but a script should notice them.
    return 1 if summary["failed"] else 0
