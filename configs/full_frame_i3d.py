"""I3D fine-tuned on the full frame only (R = 1), alone.

Paper: 80.05 % (Table 3). `rajax evaluate full_frame_i3d --stage finetune`.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.finetune.regions = ("full",)
    config.stage = "finetune"
    return config
