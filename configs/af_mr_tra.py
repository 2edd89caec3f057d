"""AF MR I3D features + Temporal-Region Attention (RA and TA vectors concatenated).

Paper: 86.62 % (Table 2).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head.name = "temporal_region_attention"
    return config
