"""``rajax train CONFIG --workdir DIR``: one training stage (fine-tuning, head, end-to-end).

Examples::

    rajax train af_mr_ra --workdir runs/af_mr --config.stage=finetune   # stage 1
    rajax extract af_mr_ra --workdir runs/af_mr                         # stage 2
    rajax train af_mr_ra --workdir runs/af_mr                           # stage 3 (config.stage)
    rajax train af_mr_ra --workdir runs/af_mr --stage end_to_end        # stage 4

Rerunning the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

from rajax.train.config import add_experiment_arguments

HELP = "train a stage: I3D fine-tuning, a head on stored features, or end-to-end"
STAGES = ("finetune", "train_head", "end_to_end")

# rajax.cli adds one --config.KEY option per field of the config named on the command line.
TAKES_CONFIG = True


def add_arguments(parser) -> None:
    add_experiment_arguments(parser, workdir_help="experiment directory (created; resumed if it exists)")
    parser.add_argument("--stage", choices=STAGES, help="stage to run (default: config.stage)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from rajax.train.config import config_from_args

    config = config_from_args(args)
    from rajax.train import distributed

    distributed.initialize(config)
    from rajax.train import stages

    stages.train(config, args.workdir, args.stage, progress=not args.no_progress)
    return 0
