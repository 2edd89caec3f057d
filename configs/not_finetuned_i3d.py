"""Kinetics-400 I3D not fine-tuned, alone: a linear classifier on its full-frame features.

Paper: 58.88 % (Tables 2 and 3). Stages 2 and 3 only.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.backbone.finetuned = False
    config.head.name = "single_region"  # region_index 0 by default: the full frame
    return config
