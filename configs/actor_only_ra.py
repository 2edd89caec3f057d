"""I3D fine-tuned on the actor crop only (AF, R = 1); Region Attention over all 11 regions.

Paper: 86.62 % (Table 3).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.finetune.regions = ("actor",)
    config.finetune.eval_region = "actor"
    return config
