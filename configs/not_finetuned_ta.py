"""Kinetics-400 I3D not fine-tuned + Temporal Attention.

Paper: 65.94 % (Table 2).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.backbone.finetuned = False
    config.head.name = "temporal_attention"
    return config
