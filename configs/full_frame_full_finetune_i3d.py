"""I3D fine-tuned on the full frame with EVERY layer trainable, alone.

Paper: 80.64 % (text; vs 80.05 % for the last three blocks).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.finetune.regions = ("full",)
    config.stage = "finetune"
    config.finetune.trainable = r".*"
    config.finetune.frozen = ""
    return config
