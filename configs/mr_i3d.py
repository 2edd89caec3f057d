"""Multi-Regional I3D without Actor Focus (R = 10: full frame and 3x3 grid), alone.

Paper: 81.02 % (Table 3). `rajax evaluate mr_i3d --stage finetune`.
"""

from configs import base
from rajax.data.region_names import REGIONS_WITHOUT_ACTOR


def get_config():
    config = base.get_config()
    config.data.regions = REGIONS_WITHOUT_ACTOR
    config.finetune.regions = REGIONS_WITHOUT_ACTOR
    config.stage = "finetune"
    return config
