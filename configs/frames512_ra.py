"""512 equally spaced single frames + Region Attention.

Paper: 86.86 % (Table 2).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.sampling = "equally_spaced"
    return config
