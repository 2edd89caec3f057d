"""The ``rajax`` command: one subcommand per module in ``rajax.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``, and imports heavy libraries (JAX, TensorFlow, PyTorch) only inside
``run``: building the parser must stay cheap, and detection must be able to import
PyTorch before anything imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rajax.errors import RajaxError

# Subcommand name -> module under rajax.commands, in the order `rajax --help` lists them.
COMMANDS = {
    "classify": "classify",
    "convert-weights": "convert_weights",
    "export-weights": "export_weights",
    "regions": "regions",
    "detect-actors": "detect_actors",
    "train": "train",
    "extract": "extract",
    "evaluate": "evaluate",
    "predict": "predict",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rajax",
        description="Actor-focused Region Attention for long-term activity recognition (JAX/Flax).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"rajax.commands.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def describe_os_error(error: OSError) -> str:
    """``PATH: what went wrong`` for an operating-system error (file named when the OS says which)."""
    where = error.filename if error.filename is not None else ""
    reason = error.strerror or str(error)
    return f"{where}: {reason}" if where else reason


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter is noise for a command-line user; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except RajaxError as error:
        print(f"rajax {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A full or read-only disk, a missing permission: the user's environment, not a bug.
        print(f"rajax {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rajax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
