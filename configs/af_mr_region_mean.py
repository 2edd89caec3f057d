"""AF MR I3D features + Region Mean (plain average over regions, no attention).

Paper: 88.08 % (Table 3).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head.name = "region_mean"
    return config
