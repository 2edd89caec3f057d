"""Kinetics-400 I3D not fine-tuned + Temporal-Region Attention.

Paper: 71.53 % (Table 2).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.backbone.finetuned = False
    config.head.name = "temporal_region_attention"
    return config
