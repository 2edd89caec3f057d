"""512 equally spaced single frames instead of 64 timesteps of 8 frames; I3D alone.

Paper: 80.05 % (Table 2). `rajax evaluate frames512_i3d --stage finetune`.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.sampling = "equally_spaced"
    config.stage = "finetune"
    return config
