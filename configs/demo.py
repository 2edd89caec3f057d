"""The demo's experiment (``rajax demo``): the paper's recipe at the size of a laptop CPU.

Everything the stages need, over configs/base.py: the generated dataset's classes and splits,
fewer timesteps and smaller crops (the network is the real Kinetics-400 I3D, and 2 CPU cores must
run it twice over every region of every video in minutes), stage-1 Multi-Regional fine-tuning with
Actor Focus as the paper does it, and the paper's head training. ``rajax demo`` sets the paths
(``data.csv``, ``data.actors_file``, ``data.features_dir``) and, per result row, the head and its
regions. A rajax experiment like any other: ``rajax train demo --config.data.csv=... --stage
finetune`` runs its stage 1 on the generated videos.
"""

from configs import base

DEMO_CLASSES = ("juggle_spin", "pour_flash", "juggle_flash", "pour_spin")  # rajax.demo.generate


def get_config():
    config = base.get_config()
    config.classes = DEMO_CLASSES
    config.data.csv = "VIDEOS/dataset.csv"  # set by rajax demo: the generated dataset
    config.data.num_timesteps = 3           # every sub-action lasts a quarter of its video or more
    config.data.crop_size = 80              # 7.8x fewer pixels than 224: I3D's cost on a CPU
    config.backbone.feature_dtype = "float32"
    # Stage 1: the paper's Multi-Regional fine-tuning (last three blocks + a new classifier, one
    # random region per video per epoch, batch 4); epochs and learning rate sized for 24 videos.
    config.finetune.num_epochs = 6
    config.finetune.optimizer.learning_rate = 1e-4
    # Its classifier is validated on the full frame ("I3D alone"), where the props are a few pixels
    # wide: 8 validation videos at chance whatever the backbone learnt, so their "best" is noise.
    # The last state is the fine-tuned backbone.
    config.finetune.select = "last"
    # Stage 3: the paper's head training (Adam 1e-3, 100 epochs, best validation checkpoint).
    config.train_head.batch_size = 8
    config.train_head.eval_every_epochs = 5  # the best of 20 validations over the 100 epochs
    config.eval_batch_size = 8
    config.log_every_steps = 5
    config.checkpoint.every_steps = 1_000_000
    config.checkpoint.every_epochs = 0      # a head's epoch is a few milliseconds: save at the end
    # `rajax run` (what `rajax demo` runs after generating the videos): YOLO on every 50th frame
    # (the actor moves slowly), the Kinetics features 3-fold cross-validated over all 48 videos.
    config.run.detect_every = 50
    config.run.cv_folds = 3
    return config
