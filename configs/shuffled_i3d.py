"""I3D fine-tuned (and applied) on timesteps in shuffled order, alone.

Paper: 73.97 % (Table 2). `rajax evaluate shuffled_i3d --stage finetune` after stages 1, 2.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.shuffle_timesteps = True
    config.stage = "finetune"
    return config
