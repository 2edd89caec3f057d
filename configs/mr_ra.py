"""Multi-Regional I3D without Actor Focus (R = 10) + Region Attention over those 10 regions.

Paper: 86.62 % (Table 3).
"""

from configs import base
from rajax.data.region_names import REGIONS_WITHOUT_ACTOR


def get_config():
    config = base.get_config()
    config.data.regions = REGIONS_WITHOUT_ACTOR
    config.finetune.regions = REGIONS_WITHOUT_ACTOR
    return config
