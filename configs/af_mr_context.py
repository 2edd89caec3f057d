"""Beyond the paper: AF MR I3D features + Context Region Attention (rajax/models/context_attention.py).

The worked example of docs/new-head.md: a head class outside the built-in list, named by its import
path; its one option, ``hidden``, keeps the class's value (128). No paper number.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head = base.head("rajax.models.context_attention:ContextRegionAttention")
    return config
