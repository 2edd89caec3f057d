"""AF MR I3D alone: the fine-tuned I3D's own classifier (no head).

Paper: 82.97 %. Run stages 1 and 2, then `rajax evaluate af_mr_i3d --stage finetune`.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.stage = "finetune"
    return config
