"""Beyond the paper: AF MR I3D features + Context Region Attention (rajax/models/context_attention.py).

The worked example of docs/new-head.md: a head class outside the built-in list, named by its import
path, with its one option. No paper number.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head = base.head("rajax.models.context_attention:ContextRegionAttention", hidden=128)
    return config
