"""``rajax demo --quick``: the demo's experiment made smaller, a check of the machinery for tests."""

from configs import demo


def get_config():
    config = demo.get_config()
    config.data.num_timesteps = 2
    config.data.crop_size = 64
    config.finetune.num_epochs = 2
    config.train_head.num_epochs = 30
    config.train_head.eval_every_epochs = 10
    config.run.detect_every = 30
    config.run.cv_folds = 0
    return config
