"""Experiment configs: loading ``configs/*.py``, ``--config.x=y`` overrides, saving config.json.

A config file defines ``get_config()`` returning a locked ``ml_collections.ConfigDict``; every
experiment imports ``configs/base.py`` and changes values (and may replace ``config.head`` with
another head and its own options, through ``base.head(...)``). The command line offers one
``--config.KEY VALUE`` option per field of the config it names (``add_override_arguments``),
checked by argparse like any other option, and converted to the type of the field it replaces
(``apply_overrides``); ``validate_config`` then names every invalid value at once.

This module imports only ml_collections: the CLI builds its parser from it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from rajax.errors import RajaxError
from rajax.files import atomic_write_text

OVERRIDE_PREFIX = "config."
# The experiment configs: rajax/configs in an installed wheel (pyproject.toml maps the checkout's
# top-level configs/ there), else configs/ beside the package (the checkout, editable installs).
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIGS_DIR = (_PACKAGE_DIR / "configs" if (_PACKAGE_DIR / "configs" / "base.py").is_file()
               else _PACKAGE_DIR.parent / "configs")


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """``configs/x.py``, any path to a config file, or just the experiment name ``x``."""
    path = Path(name_or_path)
    if path.is_file():
        return path.resolve()
    candidate = CONFIGS_DIR / f"{path.name.removesuffix('.py')}.py"
    if path.suffix != ".py" and path.parent == Path(".") and candidate.is_file():
        return candidate
    raise RajaxError(f"{name_or_path}: no such config file (give a path, or a name from {CONFIGS_DIR})")


def load_config(name_or_path: str | os.PathLike):
    """Runs ``get_config()`` of a config file; configs import each other as ``configs.<name>``."""
    path = resolve_config_path(name_or_path)
    _use_configs_package(path.parent.parent / "configs")
    module_name = f"_rajax_config_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise RajaxError(f"{path}: a config file must define get_config()")
        config = module.get_config()
    except RajaxError:
        raise
    except Exception as error:
        raise RajaxError(f"{path}: cannot load the config ({type(error).__name__}: {error})") from error
    if not getattr(config, "is_locked", False):
        raise RajaxError(f"{path}: get_config() must return a locked ConfigDict (call config.lock())")
    config.lock()  # again: parts an experiment replaced (its head's options) are locked too
    return config


def _use_configs_package(folder: Path) -> None:
    """Makes ``configs`` (config files say ``from configs import base``) the package of ``folder``
    (the configs/ folder of the file being loaded, if there is one) with rajax's own configs behind
    it, without touching sys.path: installed, the folder holding rajax's configs is the rajax
    package itself, whose modules (data, models, ...) must not become top-level ones."""
    locations = list(dict.fromkeys(str(f) for f in (folder, CONFIGS_DIR) if f.is_dir()))
    current = sys.modules.get("configs")
    if not locations or (current is not None and list(getattr(current, "__path__", ())) == locations):
        return
    for name in [n for n in sys.modules if n == "configs" or n.startswith("configs.")]:
        del sys.modules[name]  # another configs/ folder's modules
    init = Path(locations[0]) / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location("configs", init, submodule_search_locations=locations)
    else:
        spec = importlib.util.spec_from_loader("configs", None, is_package=True)
        spec.submodule_search_locations = locations
    module = importlib.util.module_from_spec(spec)
    sys.modules["configs"] = module
    if init.is_file():
        spec.loader.exec_module(module)


def flatten_config(config, prefix: str = "") -> dict[str, Any]:
    """{'a.b': value} for every leaf of a (nested) ConfigDict."""
    import ml_collections

    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_differences(config, reference) -> dict[str, tuple[Any, Any]]:
    """{'a.b': (reference value, config value)} wherever the two differ."""
    mine, theirs = flatten_config(config), flatten_config(reference)
    keys = sorted(set(mine) | set(theirs))
    return {k: (theirs.get(k), mine.get(k)) for k in keys if mine.get(k) != theirs.get(k)}


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(text: str, current: Any, key: str = "?") -> Any:
    """``text`` from the command line as a value of the type of ``current``.

    bool: true/false/1/0/yes/no; int, float, str as such; tuple: comma-separated items of the type
    of the current items (``full,actor``; an empty string is the empty tuple) or a Python literal;
    None (an optional field): a Python literal, else the string.
    """
    try:
        if isinstance(current, bool):
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError(f"expected true or false, got {text!r}")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, (tuple, list)):
            stripped = text.strip()
            if stripped.startswith(("(", "[")):
                return tuple(ast.literal_eval(stripped))
            if not stripped:
                return ()
            item_type = type(current[0]) if current else str
            return tuple(parse_value(item.strip(), item_type(), key) for item in stripped.split(","))
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    except (ValueError, SyntaxError) as error:
        raise RajaxError(f"--config.{key}={text}: cannot read as {type(current).__name__} ({error})") from error


def set_config_value(config, key: str, value) -> None:
    """Sets the dotted ``key`` (``"data.frame_side"``) of ``config``; its parents must exist."""
    parent, _, leaf = key.rpartition(".")
    node = _get(config, parent) if parent else config
    node[leaf] = value


HEAD_OPTIONS = "head.options."


def apply_overrides(config, overrides: dict[str, str]):
    """Sets each dotted ``key`` of ``overrides`` (string values) in ``config``, converted to its type.

    A head option the config leaves at its default (``head.options.num_heads`` for a config that
    does not name it) is added with the type of the head's default; one the head does not take is
    an error naming the head (after ``head.name`` is overridden, if it is)."""
    flat = flatten_config(config)
    later = {key: text for key, text in overrides.items() if key.startswith(HEAD_OPTIONS) and key not in flat}
    for key, text in overrides.items():
        if key in later:
            continue
        if key not in flat:
            raise RajaxError(f"--config.{key}: no such config field")
        value = parse_value(text, flat[key], key)
        try:
            set_config_value(config, key, value)  # a locked config accepts new values of existing fields
        except (TypeError, ValueError) as error:
            raise RajaxError(f"--config.{key}={text}: {error}") from error
    if later:
        defaults = head_option_defaults(config.head.name)
        with config.head.options.unlocked():
            for key, text in later.items():
                option = key[len(HEAD_OPTIONS):]
                if option not in defaults:
                    raise RajaxError(f"--config.{key}: head {config.head.name!r} takes no option {option!r} "
                                     f"(its options: {', '.join(defaults) or 'none'})")
                default = defaults[option]
                config.head.options[option] = parse_value(text, None if default is _MISSING else default, key)
    return config


_MISSING = object()


def head_option_defaults(name: str) -> dict[str, object]:
    """The options of the head ``name`` and their defaults (``_MISSING`` where none); importing the
    heads costs Flax's import, so only a command line naming an option the config does not pays."""
    import dataclasses

    from rajax.models.heads import head_class, head_options

    try:
        options = head_options(head_class(name))
    except RajaxError:
        return {}
    return {key: _MISSING if value is dataclasses.MISSING else value for key, value in options.items()}


def add_experiment_arguments(parser: argparse.ArgumentParser, workdir_help: str) -> None:
    """The CONFIG and --workdir arguments every experiment command (train, extract, evaluate) takes."""
    parser.usage = f"rajax {parser.prog.split()[-1]} CONFIG --workdir DIR [options] [--config.KEY VALUE ...]"
    parser.add_argument("config", help="config file (configs/NAME.py) or experiment name")
    parser.add_argument("--workdir", required=True, help=workdir_help)


def add_override_arguments(parser: argparse.ArgumentParser, config_name: str | None = None,
                           argv: list[str] | tuple = ()) -> None:
    """One ``--config.KEY VALUE`` option per field of the config ``config_name`` (values stay
    strings), or of the base config when it is not given or cannot be loaded (the command then
    reports the problem itself when it loads the config). A ``--config.head.options.X`` in
    ``argv`` (the command line) that the config does not name is offered too when the head (the
    config's, or ``--config.head.name``'s) takes option X; a misspelt one is still refused."""
    config = None
    if config_name:
        try:
            config = load_config(config_name)
        except RajaxError:
            config = None
    if config is None:
        base_file = CONFIGS_DIR / "base.py"
        if not base_file.is_file():
            return
        config, config_name = load_config(base_file), "base"
    group = parser.add_argument_group(
        "config overrides", "any field of the config, e.g. --config.train_head.num_epochs=50 "
        f"--config.data.regions=full,actor (defaults shown are those of {config_name})")
    fields = flatten_config(config)
    fields.update(_head_options_asked_for(config, fields, argv))
    for key, value in fields.items():
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        group.add_argument(f"--{OVERRIDE_PREFIX}{key}", dest=f"{OVERRIDE_PREFIX}{key}",
                           default=argparse.SUPPRESS, metavar="VALUE", help=f"(default: {shown})")


def _head_options_asked_for(config, fields: dict, argv) -> dict[str, object]:
    """``{"head.options.X": default}`` for each head option on the command line that the config
    leaves at the head's default (only such a command line imports the heads)."""
    prefix = f"--{OVERRIDE_PREFIX}{HEAD_OPTIONS}"
    asked = {token[2 + len(OVERRIDE_PREFIX):].split("=", 1)[0] for token in argv if token.startswith(prefix)}
    asked = {key for key in asked if key not in fields}
    if not asked:
        return {}
    head_name = config.head.name
    for index, token in enumerate(argv):  # the head the command line names, if it does
        if token.startswith(f"--{OVERRIDE_PREFIX}head.name="):
            head_name = token.split("=", 1)[1]
        elif token == f"--{OVERRIDE_PREFIX}head.name" and index + 1 < len(argv):
            head_name = argv[index + 1]
    defaults = head_option_defaults(head_name)
    return {key: ("no default" if defaults[key[len(HEAD_OPTIONS):]] is _MISSING else defaults[key[len(HEAD_OPTIONS):]])
            for key in sorted(asked) if key[len(HEAD_OPTIONS):] in defaults}


# Options of the experiment commands that take no value: the token after any other option is its
# value, never the CONFIG argument.
_FLAGS = {"-h", "--help", "--no-progress", "--json"}


def config_argument(argv: list[str]) -> str | None:
    """The CONFIG argument of an experiment command line (``train tiny --workdir w ...``), found
    before parsing so that the parser can offer that config's own ``--config.*`` options."""
    tokens = iter(argv[1:])  # after the command name
    for token in tokens:
        if token.startswith("-"):
            if "=" not in token and token not in _FLAGS:
                next(tokens, None)  # the option's value
            continue
        return token
    return None


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    return {name[len(OVERRIDE_PREFIX):]: value for name, value in vars(args).items()
            if name.startswith(OVERRIDE_PREFIX)}


def config_from_args(args: argparse.Namespace):
    """The config named by ``args.config`` with the ``--config.x=y`` overrides applied, validated."""
    return validate_config(apply_overrides(load_config(args.config), overrides_from_args(args)))


# --------------------------------------------------------------------------------------------
# Validation: every problem of a config at once, before anything is read, computed or written.

EXTRACTION_MODES = ("one_shot", "one_at_a_time")
TEMPORAL_POOLS = ("valid", "none")
COMPUTE_DTYPES = ("float32", "bfloat16")
FEATURE_DTYPES = ("float16", "float32")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
CLASSIFIER_INITS = ("random", "probe")  # finetune.classifier_init
SELECTIONS = ("best_validation", "last")  # which validated state a stage tests and exports
TRAINING_STAGES = ("finetune", "train_head", "end_to_end")
# The smallest square crop the I3D trunk takes: five stride-2 reductions leave one pixel at 32.
MIN_CROP_SIZE = 32


def config_problems(config) -> list[str]:
    """One line per invalid field of an experiment config (empty: the config is valid)."""
    from rajax.data.regions import resolve_regions
    from rajax.data.sampling import SAMPLING_MODES

    problems: list[str] = []

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            problems.append(f"config.{key}={_shown(config, key)}: {message}")

    def one_of(key: str, choices) -> None:
        check(_get(config, key) in choices, key, f"choose one of {', '.join(choices)}")

    def at_least(key: str, minimum) -> None:
        value = _get(config, key)
        check(isinstance(value, (int, float)) and value >= minimum, key, f"must be at least {minimum}")

    def regions(key: str) -> tuple[str, ...]:
        try:
            return resolve_regions(tuple(_get(config, key)))
        except ValueError as error:
            check(False, key, str(error))
            return ()

    one_of("stage", TRAINING_STAGES)
    classes = tuple(config.classes)
    check(len(classes) >= 2 and len(set(classes)) == len(classes), "classes",
          "needs at least two distinct class names")
    check(bool(config.data.csv or config.data.folder or config.data.dataset), "data.dataset",
          "give a TFDS dataset, data.csv or data.folder")
    check(not (config.data.csv and config.data.folder), "data.folder", "give data.csv or data.folder, not both")
    for key in ("data.group_pattern", "data.test_groups"):
        try:
            re.compile(_get(config, key))
        except re.error as error:
            check(False, key, f"not a regular expression ({error})")
    for key in ("data.test_fraction", "data.validation_fraction"):
        check(0 <= _get(config, key) < 1, key, "must be in [0, 1)")
    one_of("data.sampling", SAMPLING_MODES)
    at_least("data.num_timesteps", 1)
    at_least("data.frames_per_timestep", 1)
    at_least("data.crop_size", MIN_CROP_SIZE)
    at_least("data.frame_side", MIN_CROP_SIZE)
    at_least("data.decode_processes", 0)
    regions("data.regions")
    finetune_regions = regions("finetune.regions")
    check(config.finetune.eval_region in finetune_regions or not finetune_regions, "finetune.eval_region",
          f"must be one of finetune.regions ({', '.join(finetune_regions)})")
    one_of("backbone.extraction", EXTRACTION_MODES)
    one_of("backbone.temporal_pool", TEMPORAL_POOLS)
    one_of("backbone.dtype", COMPUTE_DTYPES)
    one_of("backbone.feature_dtype", FEATURE_DTYPES)
    one_of("end_to_end.dtype", COMPUTE_DTYPES)
    check(config.backbone.width_multiplier > 0, "backbone.width_multiplier", "must be positive")
    for stage in TRAINING_STAGES:
        at_least(f"{stage}.batch_size", 1)
        at_least(f"{stage}.num_epochs", 1)
        at_least(f"{stage}.eval_every_epochs", 1)
        one_of(f"{stage}.select", SELECTIONS)
        one_of(f"{stage}.optimizer.name", OPTIMIZERS)
        one_of(f"{stage}.optimizer.schedule", SCHEDULES)
        check(config[stage].optimizer.learning_rate > 0, f"{stage}.optimizer.learning_rate", "must be positive")
        at_least(f"{stage}.optimizer.weight_decay", 0)
        at_least(f"{stage}.optimizer.warmup_steps", 0)
        for rule in ("trainable", "frozen"):
            try:
                re.compile(config[stage][rule])
            except re.error as error:
                check(False, f"{stage}.{rule}", f"not a regular expression ({error})")
    check(0 <= config.finetune.dropout_rate < 1, "finetune.dropout_rate", "must be in [0, 1)")
    one_of("finetune.classifier_init", CLASSIFIER_INITS)
    one_of("finetune.sampling", ("", *SAMPLING_MODES))
    validation_regions = regions("finetune.validation_regions") if config.finetune.validation_regions else ()
    check(set(validation_regions) <= set(finetune_regions) or not finetune_regions, "finetune.validation_regions",
          f"must be among finetune.regions ({', '.join(finetune_regions)})")
    problems.extend(_run_problems(config))
    for key in ("eval_batch_size", "extract_batch_size", "extract_regions_per_call", "log_every_steps",
                "checkpoint.every_steps", "checkpoint.keep"):
        at_least(key, 1)
    at_least("checkpoint.every_epochs", 0)
    problems.extend(_head_problems(config))
    return problems


def _run_problems(config) -> list[str]:
    """``config.run`` (``rajax run``): known rows and backbones, a usable number of folds."""
    from rajax.recipe.rows import BACKBONES, ROWS

    run, problems = config.run, []
    unknown = [key for key in run.rows if key not in ROWS]
    if unknown or not run.rows:
        problems.append(f"config.run.rows={_shown(config, 'run.rows')}: choose among {', '.join(ROWS)}")
    if not run.backbones or any(name not in BACKBONES for name in run.backbones):
        problems.append(f"config.run.backbones={_shown(config, 'run.backbones')}: choose one or both of "
                        f"{', '.join(BACKBONES)}")
    if run.cv_folds < 0 or run.cv_folds == 1:
        problems.append(f"config.run.cv_folds={run.cv_folds}: 0 (no cross-validation) or at least 2")
    elif run.cv_folds and "kinetics" not in run.backbones:
        problems.append(f"config.run.cv_folds={run.cv_folds}: cross-validation uses the Kinetics features; add "
                        "kinetics to run.backbones or set cv_folds=0")
    for key in ("run.bootstrap_samples", "run.detect_every"):
        if _get(config, key) < 1:
            problems.append(f"config.{key}={_shown(config, key)}: must be at least 1")
    return problems


def _head_problems(config) -> list[str]:
    from rajax.models.heads import head_config_problems

    return head_config_problems(config.head, len(config.classes))


def validate_config(config):
    """``config`` itself when valid; else a RajaxError listing every problem, one per line."""
    problems = config_problems(config)
    if problems:
        raise RajaxError("invalid config:\n  " + "\n  ".join(problems))
    return config


def _get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _shown(config, key: str) -> str:
    value = _get(config, key)
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def write_config_json(config, path: str | os.PathLike) -> None:
    """Writes the config as JSON, atomically (a killed run never leaves half a file)."""
    atomic_write_text(path, json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list) + "\n")


def read_config_json(path: str | os.PathLike):
    """A config saved by ``write_config_json``, as a locked ConfigDict (tuples restored)."""
    import ml_collections

    path = Path(path)
    if not path.is_file():
        raise RajaxError(f"{path}: no config.json (is this a rajax work directory?)")

    def tuples(value):
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        if isinstance(value, list):
            return tuple(tuples(v) for v in value)
        return value

    config = ml_collections.ConfigDict(tuples(json.loads(path.read_text())))
    config.lock()
    return config
