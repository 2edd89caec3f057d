"""The full model with T = 16 timesteps (128 frames).

Paper: 83.94 % (Table 1).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.num_timesteps = 16
    return config
