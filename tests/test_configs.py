"""Every experiment config loads, is locked, and differs from base.py exactly where its paper row says.

EXPECTED is written from the tables of docs/method.md independently of the config files: a config that
changes one more field, or forgets one, fails here.
"""

import re

import pytest

from rajax.cli import build_parser
from rajax.data.regions import REGION_NAMES, REGIONS_WITHOUT_ACTOR, resolve_regions
from rajax.data.sampling import SAMPLING_MODES
from rajax.errors import RajaxError
from rajax.train.config import (CONFIGS_DIR, apply_overrides, config_differences, load_config,
                                overrides_from_args, parse_value, validate_config)

FINETUNE = {"stage": "finetune"}
NOT_FINETUNED = {"backbone.finetuned": False}
DEMO = {"classes": ("juggle_spin", "pour_flash", "juggle_flash", "pour_spin"), "data.csv": "VIDEOS/dataset.csv",
        "backbone.feature_dtype": "float32", "train_head.batch_size": 8, "eval_batch_size": 8,
        "log_every_steps": 5, "checkpoint.every_steps": 1_000_000,
        "checkpoint.every_epochs": 0, "finetune.select": "last"}
UCF101 = None  # filled below from the config's own module: its classes and folder are data, not paper values
EXPECTED = {
    # Table 1: timesteps (full model)
    "t4_ra": {"data.num_timesteps": 4},
    "t16_ra": {"data.num_timesteps": 16},
    "af_mr_ra": {},
    "t128_ra": {"data.num_timesteps": 128},
    # Table 2: I3D settings x heads
    "not_finetuned_i3d": {**NOT_FINETUNED, "head.name": "single_region"},
    "not_finetuned_ta": {**NOT_FINETUNED, "head.name": "temporal_attention"},
    "not_finetuned_ra": NOT_FINETUNED,
    "not_finetuned_tra": {**NOT_FINETUNED, "head.name": "temporal_region_attention"},
    "af_mr_i3d": FINETUNE,
    "af_mr_ta": {"head.name": "temporal_attention"},
    "af_mr_tra": {"head.name": "temporal_region_attention"},
    "shuffled_i3d": {**FINETUNE, "data.shuffle_timesteps": True},
    "shuffled_ra": {"data.shuffle_timesteps": True},
    "one_at_a_time_i3d": {**FINETUNE, "backbone.extraction": "one_at_a_time"},
    "one_at_a_time_ra": {"backbone.extraction": "one_at_a_time"},
    "frames512_i3d": {**FINETUNE, "data.sampling": "equally_spaced"},
    "frames512_ra": {"data.sampling": "equally_spaced"},
    # Table 3: fine-tuning regions, Region Mean
    "full_frame_i3d": {**FINETUNE, "finetune.regions": ("full",)},
    "full_frame_ra": {"finetune.regions": ("full",)},
    "full_frame_full_finetune_i3d": {**FINETUNE, "finetune.regions": ("full",), "finetune.trainable": ".*",
                                     "finetune.frozen": ""},
    "mr_i3d": {**FINETUNE, "data.regions": REGIONS_WITHOUT_ACTOR, "finetune.regions": REGIONS_WITHOUT_ACTOR},
    "mr_ra": {"data.regions": REGIONS_WITHOUT_ACTOR, "finetune.regions": REGIONS_WITHOUT_ACTOR},
    "actor_only_i3d": {**FINETUNE, "finetune.regions": ("actor",), "finetune.eval_region": "actor"},
    "actor_only_ra": {"finetune.regions": ("actor",), "finetune.eval_region": "actor"},
    "af_mr_region_mean": {"head.name": "region_mean"},
    # Beyond the paper (a head's options have defaults: a config names only those it changes)
    "af_mr_softmax": {"head.name": "softmax_attention"},
    "af_mr_gated": {"head.name": "attention", "head.options.scorer": "mlp", "head.options.hidden": 256},
    "af_mr_context": {"head.name": "rajax.models.context_attention:ContextRegionAttention"},
    "end_to_end": {"stage": "end_to_end"},
    "tiny": {"data.num_timesteps": 2, "data.crop_size": 32, "backbone.weights": "random",
             "backbone.width_multiplier": 0.125, "backbone.feature_dtype": "float32",
             "finetune.num_epochs": 2, "train_head.num_epochs": 3, "train_head.batch_size": 8,
             "end_to_end.batch_size": 4, "end_to_end.num_epochs": 1, "end_to_end.dtype": "float32",
             "eval_batch_size": 8, "log_every_steps": 1, "checkpoint.every_steps": 2},
    # rajax demo (docs/demo.md): the generated dataset's 4 classes, CPU-sized clips, saves at the end
    "demo": {**DEMO, "data.num_timesteps": 3, "data.crop_size": 80, "finetune.num_epochs": 6,
             "train_head.eval_every_epochs": 5, "run.detect_every": 50, "run.cv_folds": 3},
    "demo_quick": {**DEMO, "data.num_timesteps": 2, "data.crop_size": 64, "finetune.num_epochs": 2,
                   "train_head.num_epochs": 30, "train_head.eval_every_epochs": 10, "run.detect_every": 30},
    # Real footage (docs/real-footage.md): UCF101's split 1 on the shared 197-clip subset
    "ucf101_subset": UCF101,
}


def _ucf101_expected() -> dict:
    import importlib

    module = importlib.import_module("configs.ucf101_subset")  # load_config made `configs` importable
    return {"classes": module.UCF101_SUBSET_CLASSES, "data.folder": str(module.DEFAULT_FOLDER),
            "data.group_pattern": r"(v_.+_g\d+)_c\d+$", "data.test_groups": r"_g0[1-7]$",
            "data.validation_fraction": 0.2, "data.num_timesteps": 4, "data.crop_size": 112,
            "backbone.feature_dtype": "float32", "finetune.num_epochs": 10,
            "finetune.classifier_init": "probe", "finetune.update_batch_stats": False, "finetune.flip": True,
            "finetune.sampling": "random", "finetune.validation_regions": ("full", "grid_1_1", "actor"),
            "finetune.eval_every_epochs": 2, "finetune.optimizer.schedule": "cosine",
            "finetune.optimizer.warmup_steps": 25,
            "train_head.batch_size": 8, "train_head.eval_every_epochs": 5, "eval_batch_size": 8,
            "checkpoint.every_steps": 1_000_000, "checkpoint.every_epochs": 0, "run.cv_folds": 5,
            "run.detect_every": 25}


def config_names():
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.py") if p.stem not in ("__init__", "base"))


def test_every_config_file_has_an_expected_row():
    assert config_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_differs_from_base_exactly_as_intended(name):
    base = load_config(CONFIGS_DIR / "base.py")
    config = load_config(name)
    assert config.is_locked
    with pytest.raises(AttributeError):
        config.not_a_field = 1  # locked: a typo cannot add a field
    differences = {key: new for key, (_, new) in config_differences(config, base).items()}
    assert differences == (_ucf101_expected() if name == "ucf101_subset" else EXPECTED[name])


@pytest.mark.parametrize("name", ["base"] + sorted(EXPECTED))
def test_config_values_are_valid(name):
    config = load_config(CONFIGS_DIR / f"{name}.py" if name == "base" else name)
    assert validate_config(config) is config
    assert config.stage in ("finetune", "train_head", "end_to_end")
    assert resolve_regions(tuple(config.data.regions)) == tuple(config.data.regions)
    assert set(config.finetune.regions) <= set(REGION_NAMES)
    assert config.finetune.eval_region in config.finetune.regions
    assert config.data.sampling in SAMPLING_MODES
    assert config.backbone.extraction in ("one_shot", "one_at_a_time")
    assert len(config.classes) == {"demo": 4, "ucf101": 20}.get(name.split("_")[0], 10)  # Breakfast has 10
    for stage in ("finetune", "train_head", "end_to_end"):
        for pattern in (config[stage].trainable, config[stage].frozen):
            re.compile(pattern)


def test_base_holds_the_papers_numbers():
    config = load_config(CONFIGS_DIR / "base.py")
    assert (config.data.num_timesteps, config.data.frames_per_timestep, config.data.crop_size) == (64, 8, 224)
    assert tuple(config.data.regions) == REGION_NAMES and len(REGION_NAMES) == 11
    assert config.finetune.batch_size == 4
    head = config.train_head
    assert (head.num_epochs, head.optimizer.name, head.optimizer.learning_rate, head.optimizer.eps,
            head.optimizer.weight_decay) == (100, "adam", 1e-3, 1e-8, 1e-5)
    assert config.backbone.extraction == "one_shot" and config.head.name == "region_attention"


def test_override_values_take_the_type_of_the_field():
    assert parse_value("true", False) is True and parse_value("No", True) is False
    assert parse_value("3", 1) == 3 and isinstance(parse_value("3", 1.0), float)
    assert parse_value("full,actor", ("x",)) == ("full", "actor")
    assert parse_value("", ("x",)) == ()
    assert parse_value("(1, 2)", (0,)) == (1, 2)
    assert parse_value("4,8", (1,)) == (4, 8)
    with pytest.raises(RajaxError, match="--config.k=maybe: cannot read as bool"):
        parse_value("maybe", True, "k")
    with pytest.raises(RajaxError, match="cannot read as int"):
        parse_value("1.5", 1, "k")


def test_overrides_apply_to_a_locked_config_and_unknown_keys_fail():
    config = apply_overrides(load_config("af_mr_ra"), {"head.name": "temporal_attention",
                                                       "train_head.optimizer.learning_rate": "0.01",
                                                       "data.regions": "full,actor"})
    assert config.head.name == "temporal_attention" and config.train_head.optimizer.learning_rate == 0.01
    assert config.data.regions == ("full", "actor") and config.is_locked
    with pytest.raises(RajaxError, match="--config.head.nmae: no such config field"):
        apply_overrides(load_config("af_mr_ra"), {"head.nmae": "x"})


def test_command_line_parses_config_overrides():
    args = build_parser().parse_args(["train", "t4_ra", "--workdir", "w", "--config.head.name=region_mean",
                                      "--config.data.num_timesteps", "8"])
    assert overrides_from_args(args) == {"head.name": "region_mean", "data.num_timesteps": "8"}
    with pytest.raises(SystemExit):  # argparse rejects a field that does not exist
        build_parser().parse_args(["train", "t4_ra", "--workdir", "w", "--config.head.nmae=x"])


def test_a_misspelt_head_option_is_refused_on_the_command_line_and_in_a_config_file(tmp_path):
    # The parser offers --config.head.options.* for the options the config names: a misspelt one is
    # not a field, and argparse stops with status 2 before anything runs.
    good = ["train", "af_mr_gated", "--workdir", "w", "--config.head.options.hidden=64"]
    assert overrides_from_args(build_parser(good).parse_args(good)) == {"head.options.hidden": "64"}
    misspelt = ["train", "af_mr_gated", "--workdir", "w", "--config.head.options.temprature=1"]
    with pytest.raises(SystemExit) as stopped:
        build_parser(misspelt).parse_args(misspelt)
    assert stopped.value.code == 2
    # In a config file, validation names the head, the option and the options it takes.
    typo = tmp_path / "configs" / "typo.py"
    typo.parent.mkdir()
    typo.write_text("from configs import base\n\ndef get_config():\n    config = base.get_config()\n"
                    "    config.head = base.head('attention', scorer='mlp', hidden=8, temprature=0.5)\n"
                    "    return config\n")
    with pytest.raises(RajaxError, match=r"config.head.options.temprature: head 'attention' takes no option "
                                         r"'temprature' \(its options: over, scorer, normalisation, hidden, "
                                         r"num_heads, temperature\)"):
        validate_config(load_config(typo))
    # A value the head refuses: the head's own check, one line of the same error.
    with pytest.raises(RajaxError, match=r"config.head.options: head 'attention': hidden=0: an mlp scorer needs"):
        validate_config(apply_overrides(load_config("af_mr_gated"), {"head.options.hidden": "0"}))


def test_a_head_option_the_config_leaves_at_its_default_can_be_set_on_the_command_line():
    """af_mr_softmax names no option; its head's num_heads (default 4) is still an option of the
    command line, typed by the default; a misspelt one, or one of another head, is refused."""
    argv = ["train", "af_mr_softmax", "--workdir", "w", "--config.head.options.num_heads=8"]
    overrides = overrides_from_args(build_parser(argv).parse_args(argv))
    assert overrides == {"head.options.num_heads": "8"}
    config = validate_config(apply_overrides(load_config("af_mr_softmax"), overrides))
    assert config.head.options.num_heads == 8 and config.is_locked
    # The head named on the same command line decides which options exist.
    argv = ["train", "af_mr_ra", "--workdir", "w", "--config.head.name", "attention", "--config.head.options.hidden=32"]
    assert overrides_from_args(build_parser(argv).parse_args(argv))["head.options.hidden"] == "32"
    for wrong in (["train", "af_mr_softmax", "--workdir", "w", "--config.head.options.num_head=8"],
                  ["train", "af_mr_ra", "--workdir", "w", "--config.head.name=single_region",
                   "--config.head.options.num_heads=2"]):
        with pytest.raises(SystemExit):
            build_parser(wrong).parse_args(wrong)
    with pytest.raises(RajaxError, match=r"--config.head.options.temprature: head 'softmax_attention' takes no "
                                         r"option 'temprature' \(its options: "):
        apply_overrides(load_config("af_mr_softmax"), {"head.options.temprature": "2"})
    with pytest.raises(SystemExit):  # no abbreviations: 'hid' is not 'hidden'
        build_parser(["train", "af_mr_gated", "--workdir", "w", "--config.head.options.hid=3"]).parse_args(
            ["train", "af_mr_gated", "--workdir", "w", "--config.head.options.hid=3"])


def test_missing_and_broken_config_files_are_clear_errors(tmp_path):
    with pytest.raises(RajaxError, match="no such config file"):
        load_config("no_such_experiment")
    broken = tmp_path / "configs" / "broken.py"
    broken.parent.mkdir()
    broken.write_text("def get_config():\n    return 1 / 0\n")
    with pytest.raises(RajaxError, match=r"broken.py: cannot load the config \(ZeroDivisionError"):
        load_config(broken)
    unlocked = tmp_path / "configs" / "unlocked.py"
    unlocked.write_text("import ml_collections\ndef get_config():\n    return ml_collections.ConfigDict({'a': 1})\n")
    with pytest.raises(RajaxError, match="must return a locked ConfigDict"):
        load_config(unlocked)
