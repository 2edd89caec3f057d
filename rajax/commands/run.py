"""``rajax run CONFIG --workdir DIR``: the paper's whole recipe, every stage the config asks for.

Actor detection (when the actor file lacks videos), stage 2 with the Kinetics-400 I3D, stage 1
Multi-Regional fine-tuning, stage 2 with the fine-tuned I3D, then every row of Table 3 the config
lists (``config.run.rows``) on each backbone's features, tested on the held-out test videos, and
the Kinetics features cross-validated in folds of whole groups (``config.run.cv_folds``). Prints the
table; writes ``DIR/summary.json`` and pictures. Every stage is the one ``rajax train``, ``rajax
extract`` and ``rajax evaluate`` run (``rajax.recipe.run``); rerunning resumes.

Exit status: 0, 1 when some videos were unreadable and skipped (listed), 2 on a wrong input.
"""

from __future__ import annotations

from rajax.train.config import add_experiment_arguments

HELP = "run the whole recipe (detect, extract, fine-tune, extract, heads, report) in one work directory"

# rajax.cli adds one --config.KEY option per field of the config named on the command line.
TAKES_CONFIG = True


def add_arguments(parser) -> None:
    add_experiment_arguments(parser, workdir_help="work directory of the whole recipe (created; resumed if it exists)")
    parser.add_argument("--detector-weights", metavar="PATH", default=None,
                        help="a local Ultralytics YOLO checkpoint with a 'person' class for Actor Focus "
                             "(default: yolo11n.pt, downloaded on first use)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or lines")


def run(args) -> int:
    from rajax.train.config import config_from_args

    config = config_from_args(args)
    from rajax.recipe.run import run_recipe

    summary = run_recipe(config, args.workdir, detector_weights=args.detector_weights,
                         progress=not args.no_progress)
    return 1 if summary["skipped_videos"] else 0
