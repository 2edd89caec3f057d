"""``rajax extract CONFIG --workdir DIR``: stage 2, the features of every region of every video.

Reads the fine-tuned backbone from ``DIR/finetune/backbone`` (or the Kinetics-400 I3D with
``--config.backbone.finetuned=false``) and writes the feature store ``DIR/features`` (or
``config.data.features_dir``). Rerunning resumes: videos already stored are skipped.

Exit status: 0 when every video was stored, 1 when some were unreadable and skipped (counted in
the summary line), 2 when a split has no readable video at all or the input is wrong.
"""

from __future__ import annotations

from rajax.train.config import add_experiment_arguments

HELP = "extract per-region I3D features of every video into the feature store (stage 2)"

# rajax.cli adds one --config.KEY option per field of the config named on the command line.
TAKES_CONFIG = True


def add_arguments(parser) -> None:
    add_experiment_arguments(parser, workdir_help="experiment directory")
    parser.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                        help="split to extract (repeatable; default: train, validation and test)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from rajax.train.config import config_from_args

    config = config_from_args(args)
    from rajax.train import distributed

    distributed.initialize(config)
    import jax

    from rajax.errors import RajaxError
    from rajax.train import extraction

    summary = extraction.extract(config, args.workdir, args.splits, progress=not args.no_progress)
    if jax.process_index() != 0:
        return 0
    print(f"{summary['written']} video(s) written to {summary['store']} "
          f"({summary['already_done']} already there, {summary['skipped_videos']} unreadable, skipped)")
    if summary["empty_splits"]:
        raise RajaxError(f"no usable videos in split(s) {', '.join(summary['empty_splits'])}: "
                         "every video was unreadable")
    # Skipped videos do not stop the extraction, but a script must notice them (as detect-actors).
    return 1 if summary["skipped_videos"] else 0
