"""Beyond the paper: AF MR I3D features + multi-head softmax attention pooling.

No paper number.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head = base.head("softmax_attention", num_heads=4, temperature=1.0)
    return config
