"""I3D fine-tuned on the actor crop only (AF, R = 1), alone.

Paper: 81.75 % (Table 3). `rajax evaluate actor_only_i3d --stage finetune` (on the actor crop).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.finetune.regions = ("actor",)
    config.finetune.eval_region = "actor"
    config.stage = "finetune"
    return config
