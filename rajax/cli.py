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
    "run": "run",
    "demo": "demo",
    "info": "info",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; ``argv`` (the command line to parse) lets an experiment
    command offer the ``--config.*`` options of the config it names (its head's options too)."""
    from rajax.train.config import add_override_arguments, config_argument

    argv = list(argv or [])
    command = next((token for token in argv if not token.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="rajax", allow_abbrev=False,
        description="Actor-focused Region Attention for long-term activity recognition (JAX/Flax).",
    )
    parser.add_argument(
        "--no-compile-cache", dest="compile_cache", action="store_false",
        help="do not use JAX's persistent compilation cache for this run (see rajax.compile_cache;"
        " RAJAX_COMPILE_CACHE=0 turns it off for good)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"rajax.commands.{module_name}")
        # No abbreviations: --config.head.options.hid must not silently mean ...hidden.
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP, allow_abbrev=False)
        module.add_arguments(sub)
        if getattr(module, "TAKES_CONFIG", False):
            add_override_arguments(sub, config_argument(argv[argv.index(name):]) if name == command else None,
                                   argv if name == command else ())
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.compile_cache:
        from rajax import compile_cache

        compile_cache.enable()  # before any compilation: later runs load the executables
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
