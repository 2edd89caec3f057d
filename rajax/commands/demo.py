"""``rajax demo``: the whole method end to end on a generated dataset, on a CPU, in minutes."""

from __future__ import annotations

import argparse

HELP = "the whole method end to end on a generated dataset, on a CPU, in minutes (start here)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="demo_workdir", metavar="DIR",
                        help="where the videos, detections, features, pictures and summary.json go "
                             "(default: demo_workdir); a rerun reuses what is already there")
    parser.add_argument("--detector-weights", metavar="PATH", default=None,
                        help="a local Ultralytics YOLO checkpoint with a 'person' class (default: yolo11n.pt, "
                             "downloaded on first use; without any detector the generator's own boxes are used, "
                             "and the output says so)")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller version (16 videos of 4 s, 2 timesteps at 64x64): a test of the machinery, "
                             "not of the method")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of the heads (default 0)")


def run(args: argparse.Namespace) -> int:
    from rajax.demo.run import run_demo

    run_demo(args.workdir, detector_weights=args.detector_weights, quick=args.quick, seed=args.seed)
    return 0
