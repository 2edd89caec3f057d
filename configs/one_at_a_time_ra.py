"""Features extracted one timestep at a time + Region Attention.

Paper: 83.70 % (Table 2).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.backbone.extraction = "one_at_a_time"
    return config
