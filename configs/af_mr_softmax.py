"""Beyond the paper: AF MR I3D features + multi-head softmax attention pooling.

No paper number.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head.name = "softmax_attention"  # 4 heads, temperature 1
    return config
