"""Multi-Regional I3D without Actor Focus (R = 10) + Region Attention over those 10 regions.

Paper: 86.62 % (Table 3).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.data.regions = base.ALL_REGIONS[:-1]
    config.finetune.regions = base.ALL_REGIONS[:-1]
    return config
