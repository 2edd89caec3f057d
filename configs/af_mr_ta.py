"""AF MR I3D features + Temporal Attention.

Paper: 84.67 % (Table 2).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head.name = "temporal_attention"
    return config
