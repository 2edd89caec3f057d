"""The full model with T = 128 timesteps (1024 frames).

Paper: 86.13 % (Table 1).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.num_timesteps = 128
    return config
