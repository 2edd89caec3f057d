"""``rajax evaluate CONFIG --workdir DIR``: accuracy, per-class accuracy, confusion matrix, attention.

Evaluates a stage's best checkpoint (or ``--checkpoint latest`` / a step) on a split and writes
``DIR/<stage>/eval/<split>.json`` and ``<split>_confusion.png``. ``--stage finetune`` evaluates the
fine-tuned I3D alone (its own classifier on the stored features of ``finetune.eval_region``).
"""

from __future__ import annotations

from rajax.train.config import add_experiment_arguments

HELP = "evaluate a trained stage on a split (accuracy, per-class, confusion matrix, attention)"
STAGES = ("finetune", "train_head", "end_to_end")

# rajax.cli adds one --config.KEY option per field of the config named on the command line.
TAKES_CONFIG = True


def add_arguments(parser) -> None:
    add_experiment_arguments(parser, workdir_help="experiment directory")
    parser.add_argument("--stage", choices=STAGES, help="stage to evaluate (default: config.stage)")
    parser.add_argument("--split", default=None, help="split (default: config.data.test_split)")
    parser.add_argument("--checkpoint", default="best", help="best (default), latest, or a step number")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from rajax.errors import RajaxError
    from rajax.train.config import config_from_args

    config = config_from_args(args)
    if args.checkpoint not in ("best", "latest") and not args.checkpoint.isdigit():
        raise RajaxError(f"--checkpoint {args.checkpoint}: expected best, latest or a step number")
    from rajax.train import distributed

    distributed.initialize(config)
    import json

    import jax

    from rajax.train import stages

    report = stages.evaluate(config, args.workdir, args.stage or config.stage,
                             args.split or config.data.test_split, args.checkpoint)
    if args.json and jax.process_index() == 0:
        print(json.dumps(report, indent=2))
    return 0
