"""I3D fine-tuned (and applied) on timesteps in shuffled order + Region Attention.

Paper: 79.81 % (Table 2).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.shuffle_timesteps = True
    return config
