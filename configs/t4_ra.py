"""The full model with T = 4 timesteps (32 frames).

Paper: 68.13 % (Table 1).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.num_timesteps = 4
    return config
