"""The work directory of one experiment, and the config each stage keeps in it::

    WORKDIR/finetune/          stage 1: config.json (the config it was trained with), checkpoints/,
                               best/, eval/, metrics.jsonl, tensorboard/, backbone/ (best
                               fine-tuned I3D, a converted checkpoint)
    WORKDIR/features/          stage 2: the feature store (rajax.data.features) and its config.json
    WORKDIR/train_head/        stage 3: as stage 1, without backbone/, with features.json (the
                               settings of the features it was trained on, backbone digest included)
    WORKDIR/end_to_end/        stage 4

Each stage's ``config.json`` is written once the stage has validated its inputs, so a command that
fails leaves the earlier records as they were; ``rajax evaluate`` and ``rajax predict`` read the
config of the stage they use, never one that a later command wrote. A stage resumes
(:func:`check_resumable`) and is evaluated (:func:`trained_config`) only under that config, less
what :data:`EVALUATION_OVERRIDES` lets change.
"""

from __future__ import annotations

import os
from pathlib import Path

from rajax.errors import RajaxError

STAGES = ("finetune", "train_head", "end_to_end")
FEATURES_DIR = "features"
CONFIG_FILE = "config.json"
FEATURES_RECORD = "features.json"  # in WORKDIR/train_head: the settings of the features it learnt from

# What evaluating a trained stage may change in its config: where the videos or features come from
# and how they are batched, never the model, its inputs or the classes.
EVALUATION_OVERRIDES = ("data.dataset", "data.data_dir", "data.csv", "data.train_split", "data.validation_split",
                        "data.test_split", "data.actors_file", "data.features_dir", "data.decode_processes",
                        "eval_batch_size", "extract_batch_size", "distributed.", "stage", "log_every_steps",
                        "run.")


def stage_config(config, stage: str):
    if stage not in STAGES:
        raise RajaxError(f"unknown stage {stage!r} (config.stage): choose one of {', '.join(STAGES)}")
    return config[stage]


def features_dir(config, workdir: str | os.PathLike) -> Path:
    return Path(config.data.features_dir or Path(workdir) / FEATURES_DIR)


def check_resumable(config, run_dir: Path, stage: str) -> None:
    """A stage that has checkpoints resumes only under the config it was trained with.

    Where the data lives, how long to train, how often to log and save may change; anything else
    (the model, its inputs, the optimizer, the seed) would silently continue another experiment
    and overwrite the record of the one that made the checkpoints.
    """
    from rajax.train import checkpoints
    from rajax.train.config import config_differences, read_config_json

    saved_file = run_dir / CONFIG_FILE
    if not saved_file.is_file() or not checkpoints.saved_steps(run_dir / checkpoints.LATEST_DIR):
        return
    others = tuple(f"{name}." for name in STAGES if name != stage)  # other stages' settings
    allowed = (*EVALUATION_OVERRIDES, f"{stage}.num_epochs", f"{stage}.eval_every_epochs", "checkpoint.")
    differences = [f"{key}: {saved!r} (trained) vs {given!r}"
                   for key, (saved, given) in config_differences(config, read_config_json(saved_file)).items()
                   if not key.startswith(allowed + others)]
    if differences:
        raise RajaxError(f"{run_dir}: its checkpoints were trained with another config ("
                         + "; ".join(differences) + "); resume with that config or use another --workdir")


# Fields added to the config after work directories existed, whose base value is the behaviour
# rajax had before them: an older config.json lacking one gets that value (and keeps its meaning).
# Any other missing field is an error: it may have decided what was trained.
FIELDS_ADDED_LATER = ("data.folder", "data.group_pattern", "data.test_groups", "data.test_fraction",
                      "data.validation_fraction", "finetune.classifier_init", "finetune.probe_features",
                      "finetune.sampling", "finetune.flip", "finetune.validation_regions", "run.")


def with_run_settings(saved):
    """``saved`` with the fields it lacks that may be filled in, at the base config's values: the run
    settings (``EVALUATION_OVERRIDES``, such as ``data.decode_processes``: they do not change what a
    stage computes) and ``FIELDS_ADDED_LATER``. An older work directory stays usable."""
    from rajax.train.config import CONFIGS_DIR, flatten_config, load_config, set_config_value

    present = flatten_config(saved)
    missing = {key: value for key, value in flatten_config(load_config(CONFIGS_DIR / "base.py")).items()
               if key.startswith(EVALUATION_OVERRIDES + FIELDS_ADDED_LATER) and key not in present}
    with saved.unlocked():
        for key, value in missing.items():
            parent = key.rpartition(".")[0]
            if parent and not _has_section(saved, parent):
                import ml_collections

                _make_sections(saved, parent, ml_collections.ConfigDict)
            set_config_value(saved, key, value)
    return saved


def _has_section(config, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if part not in node:
            return False
        node = node[part]
    return True


def _make_sections(config, dotted: str, make) -> None:
    node = config
    for part in dotted.split("."):
        if part not in node:
            node[part] = make()
        node = node[part]


def trained_config(workdir: str | os.PathLike, stage: str, config=None):
    """The config ``stage`` was trained with (``WORKDIR/<stage>/config.json``).

    With ``config`` (the command line's), that config, after checking it differs from the trained
    one only where ``EVALUATION_OVERRIDES`` allows: a model is never evaluated under another config.
    """
    from rajax.train.config import config_differences, read_config_json, validate_config

    path = Path(workdir) / stage / CONFIG_FILE
    if not path.is_file():
        raise RajaxError(f"{path}: no config of a trained {stage} stage in this work directory "
                         f"(train it first: rajax train CONFIG --workdir {workdir} --stage {stage})")
    try:
        saved = validate_config(with_run_settings(read_config_json(path)))
    except (KeyError, AttributeError) as error:  # a field validation reads is not there
        field = str(error).strip("'\"")
        raise RajaxError(f"{path}: no field '{field}' (written by another version of rajax, or edited); "
                         "train the stage again in a new work directory") from None
    if config is None:
        return saved
    differences = [f"{key}: {trained!r} (trained) vs {given!r}"
                   for key, (trained, given) in config_differences(config, saved).items()
                   if not key.startswith(EVALUATION_OVERRIDES)]
    if differences:
        raise RajaxError(f"{path}: the {stage} stage was trained with another config ("
                         + "; ".join(differences) + "); evaluate with the config it was trained with")
    return config
