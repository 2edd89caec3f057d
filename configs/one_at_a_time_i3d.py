"""Fine-tuned I3D alone, features extracted one timestep (8 frames) at a time.

Paper: 77.62 % (Table 2). `rajax evaluate one_at_a_time_i3d --stage finetune`.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.backbone.extraction = "one_at_a_time"
    config.stage = "finetune"
    return config
