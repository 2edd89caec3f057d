"""A tiny variant of the base config for tests and smoke runs on a CPU (not an experiment).

A thin I3D (width 1/8) with random weights, 2 timesteps of 8 frames at 32x32, a few epochs,
batches that split over 4 host devices, metrics and checkpoints every couple of steps.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.num_timesteps = 2
    config.data.crop_size = 32
    config.backbone.weights = "random"
    config.backbone.width_multiplier = 0.125
    config.backbone.feature_dtype = "float32"
    config.finetune.num_epochs = 2
    config.train_head.num_epochs = 3
    config.train_head.batch_size = 8
    config.end_to_end.batch_size = 4
    config.end_to_end.num_epochs = 1
    config.end_to_end.dtype = "float32"
    config.eval_batch_size = 8
    config.log_every_steps = 1
    config.checkpoint.every_steps = 2
    return config
