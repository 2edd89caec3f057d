"""Kinetics-400 I3D not fine-tuned + Region Attention over the 11 regions.

Paper: 69.59 % (Table 2) and 72.02 % (Table 3, same setting, reported twice).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.backbone.finetuned = False
    return config
