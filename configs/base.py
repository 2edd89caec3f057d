"""The paper's full model: Actor Focus + Multi-Regional I3D, one-shot features, Region Attention.

Every value given by the paper (docs/method.md) is marked "paper"; the others are rajax's choices, said
so in a comment. The three stages (``rajax train --config.stage=finetune``, ``rajax extract``,
``rajax train``) and the end-to-end mode all read this one config; every experiment in configs/
imports it and changes only what differs (tests/test_configs.py checks exactly what).

Breakfast test accuracy of this config in the paper: 89.84 % (fine-tuned I3D alone: 82.97 %).
"""

import ml_collections

from rajax.data.region_names import REGION_NAMES

# The 10 Breakfast activities, in label order (alphabetical, as the dataset's file names).
BREAKFAST_CLASSES = (
    "cereals", "coffee", "friedegg", "juice", "milk",
    "pancake", "salat", "sandwich", "scrambledegg", "tea",
)
# Parameter paths are '/'-joined (e.g. Mixed_5b/Branch_1/Conv3d_0b_3x3/kernel); a rule set must
# cover every parameter exactly once (rajax.train.steps.parameter_labels checks it).
I3D_TOP_BLOCKS = r"^(Mixed_4f|Mixed_5b|Mixed_5c|Logits)/"
I3D_LOWER_BLOCKS = r"^(Conv3d_1a_7x7|Conv3d_2b_1x1|Conv3d_2c_3x3|Mixed_3[bc]|Mixed_4[b-e])/"


def optimizer(learning_rate, weight_decay=0.0, name="adam"):
    return ml_collections.ConfigDict(dict(
        name=name,                  # 'adam' (torch.optim.Adam semantics) or 'sgd'
        learning_rate=learning_rate,
        b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=weight_decay,  # L2 added to the gradient, as torch.optim.Adam(weight_decay=)
        momentum=0.9,               # sgd only
        schedule="constant",        # 'constant' or 'cosine'
        warmup_steps=0,
    ))


def training_stage(batch_size, num_epochs, learning_rate, weight_decay, trainable, frozen):
    """The settings every training stage has (fine-tuning, head training, end-to-end)."""
    return ml_collections.ConfigDict(dict(
        batch_size=batch_size,          # global batch (all devices of all hosts)
        num_epochs=num_epochs,
        optimizer=optimizer(learning_rate, weight_decay),
        trainable=trainable,            # regex over parameter paths ('' matches nothing)
        frozen=frozen,
        update_batch_stats=True,        # trainable blocks' BatchNorm: batch statistics in training
        eval_every_epochs=1,
        select="best_validation",       # the state tested and exported: the best validation
                                        # accuracy (paper; ties: lower loss) or "last" validated
    ))


def head(name, dropout_rate=0.0, aux_losses=(), **options):
    """``config.head``: a head of rajax.models.heads (or package.module:Class) and the options it changes.

    ``options`` are the head's own, only those that differ from its defaults (the values of its
    preset: ``base.head("attention", scorer="mlp", hidden=256)`` is Region Attention with a gated
    scorer); one the head does not take is an error naming the head and the option.
    ``aux_losses``: ``"name=weight"`` terms of rajax.models.losses added to the cross-entropy (e.g.
    ``"region_weight_entropy=0.01"``).
    """
    return ml_collections.ConfigDict(dict(
        name=name,
        dropout_rate=dropout_rate,
        aux_losses=tuple(aux_losses),
        options=ml_collections.ConfigDict(options),
    ))


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.stage = "train_head"  # what `rajax train` runs: finetune | train_head | end_to_end
    config.classes = BREAKFAST_CLASSES

    config.data = ml_collections.ConfigDict(dict(
        dataset="breakfast/both",   # TFDS builder (rajax.datasets): breakfast/both (paper: both stereo
                                    # channels, 1989 videos), breakfast/ch0, or video_folder
        data_dir="",                # TFDS data_dir ('' = TFDS default)
        csv="",                     # instead of TFDS: a CSV of path,label[,split[,group]] rows
        folder="",                  # or a folder of class folders (<class>/<video>), splits drawn
        group_pattern="",           # rajax: regex giving each video's group from its id (the
                                    # person, recording or source video; '' = the CSV's group
                                    # column, else none); groups are never split across splits
        test_groups="",             # draws the test split of videos without one: the groups this
                                    # regex matches (e.g. UCF101's split 1) ...
        test_fraction=0.0,          # ... or this fraction of each class's groups
        validation_fraction=0.0,    # draws validation: this fraction of each class's other groups
        train_split="train",        # paper: first 44 actors minus 5 held out (1322 videos)
        validation_split="validation",  # paper: those 5 actors (256 videos)
        test_split="test",          # paper: the last 8 actors (411 videos)
        num_timesteps=64,           # paper: T = 64 timesteps ...
        frames_per_timestep=8,      # ... of 8 consecutive frames (512 frames)
        sampling="uniform",         # paper: timesteps spread uniformly; or equally_spaced (ablation)
        shuffle_timesteps=False,    # ablation: timestep order shuffled (fine-tuning and features)
        regions=REGION_NAMES,       # paper: R = 11 (full frame, 3x3 grid, actor)
        crop_size=224,              # paper: every region resized to 224 x 224
        frame_side=256,             # rajax: the host hands the device squares of at most this side
                                    # (larger ones shrunk while decoding, smaller ones padded);
                                    # Breakfast's 240 and Kinetics' 240-256 squares stay as they are
        decode_processes=0,         # rajax: processes decoding video files (0 = one per usable core);
                                    # TFDS frames decode in TensorFlow's threads instead
        actors_file="",             # output of `rajax detect-actors` ('' = the dataset's own)
        features_dir="",            # stage-2 output ('' = WORKDIR/features)
    ))

    config.backbone = ml_collections.ConfigDict(dict(
        weights="",                 # converted I3D checkpoint ('' = Kinetics-400, paper)
        finetuned=True,             # stage 2 and 4 start from stage 1 (False: Kinetics I3D as is)
        finetuned_dir="",           # stage-1 run to take it from ('' = WORKDIR/finetune)
        extraction="one_shot",      # paper: one_shot (all frames at once) or one_at_a_time
        temporal_pool="valid",      # Mixed_5c 2x7x7 average pool, VALID in time (T - 1 features)
        width_multiplier=1.0,       # < 1 only for tests
        dtype="float32",            # compute dtype: float32 or bfloat16
        feature_dtype="float16",    # rajax: stored features (halves the disk; heads compute float32)
    ))

    # Stage 1: Multi-Regional fine-tuning of I3D (paper: last three blocks + a new 10-way layer,
    # batch 4, one random region per video per epoch). Optimizer and epochs are rajax's choices.
    config.finetune = training_stage(
        batch_size=4, num_epochs=30, learning_rate=1e-4, weight_decay=1e-5,
        trainable=I3D_TOP_BLOCKS, frozen=I3D_LOWER_BLOCKS)
    config.finetune.regions = REGION_NAMES  # regions drawn from while fine-tuning (paper: 11)
    config.finetune.eval_region = "full"    # validation and "I3D alone" accuracy on this region
    config.finetune.dropout_rate = 0.5      # before the new logits (DeepMind I3D's keep prob. 0.5)
    # rajax's fine-tuning options beyond the paper (docs/training.md, "Fine-tuning choices"); the
    # values here are the paper's recipe as written.
    config.finetune.classifier_init = "random"  # the new classifier: random, or "probe": a linear
                                                # classifier fitted first on the Kinetics features
                                                # of the training videos' regions (linear probing
                                                # then fine-tuning)
    config.finetune.probe_features = ""     # the feature store of "probe" ('' = rajax run's
                                            # Kinetics features)
    config.finetune.sampling = ""           # timesteps of the training clips ('' = data.sampling;
                                            # "random": temporal jitter)
    config.finetune.flip = False            # mirror a random half of the training clips
    config.finetune.validation_regions = ()  # validate on the mean of the classifier's logits over
                                             # these regions (() = finetune.eval_region alone)

    # Stage 3: the head on the stored features (paper: Adam 1e-3, eps 1e-8, weight decay 1e-5,
    # cross-entropy, 100 epochs, best validation checkpoint). Batch size is rajax's choice.
    config.train_head = training_stage(
        batch_size=16, num_epochs=100, learning_rate=1e-3, weight_decay=1e-5,
        trainable=r".*", frozen="")

    config.head = head("region_attention")  # paper: Region Attention

    # Stage 4 (beyond the paper): backbone top blocks and head trained together on all regions.
    config.end_to_end = training_stage(
        batch_size=1, num_epochs=10, learning_rate=1e-5, weight_decay=1e-5,
        trainable=r"^backbone/(Mixed_4f|Mixed_5b|Mixed_5c)/|^head/",
        frozen=r"^backbone/(Conv3d_1a_7x7|Conv3d_2b_1x1|Conv3d_2c_3x3|Mixed_3[bc]|Mixed_4[b-e])/")
    config.end_to_end.remat = True          # recompute the trainable blocks in the backward pass
    config.end_to_end.dtype = "bfloat16"    # compute dtype of the backbone
    config.end_to_end.init_head = True      # start the head from stage 3's best checkpoint

    # `rajax run`: the stages of the recipe in one work directory (rajax.recipe).
    config.run = ml_collections.ConfigDict(dict(
        backbones=("kinetics", "finetuned"),  # stage 2 with the Kinetics-400 I3D as it is, and after
                                              # stage 1 (fine-tuned)
        rows=("i3d", "region_mean", "region_attention", "region_attention_no_actor", "full_frame",
              "actor_only"),                  # Table 3's rows, each a head on some regions
                                              # (rajax.recipe.rows)
        cv_folds=0,                 # k-fold cross-validation of the Kinetics features over all the
                                    # videos, whole groups per fold (0: none)
        bootstrap_samples=2000,     # 95% interval of each test accuracy (bootstrap over test videos)
        detect_every=1,             # YOLO on every n-th frame when the recipe detects the actors
        pictures=True,
    ))

    config.checkpoint = ml_collections.ConfigDict(dict(
        every_steps=1000,
        every_epochs=1,             # also at the end of every n-th epoch (0: no epoch-end saves;
                                    # the last step is always saved)
        keep=2,
    ))
    config.log_every_steps = 10
    config.eval_batch_size = 16     # global; padded with a mask so every video counts once
    config.extract_batch_size = 1   # videos per host per extraction step (x R region clips)
    config.extract_regions_per_call = 1  # region clips through I3D at once on a device (memory:
                                         # one 512-frame clip at 224 needs a few GB of activations)
    config.distributed = ml_collections.ConfigDict(dict(
        auto=False,                 # let JAX find the coordinator (SLURM, TPU pods ...)
        coordinator_address="",     # host:port of process 0; '' = single process
        num_processes=1,
        process_id=0,
    ))
    config.lock()
    return config
