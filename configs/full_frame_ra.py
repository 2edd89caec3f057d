"""I3D fine-tuned on the full frame only (R = 1); Region Attention over all 11 regions.

Paper: 83.45 % (Table 3).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.finetune.regions = ("full",)
    return config
