"""Beyond the paper: AF MR I3D features + gated Region Attention (a tanh MLP scorer, then sigmoid).

A variant made of parts, with no new code: the generic ``attention`` head of rajax.models.heads
(whose defaults are the paper's Region Attention) with an MLP scorer of 256 tanh units in place of
the paper's linear one. No paper number.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head = base.head("attention", scorer="mlp", hidden=256)
    return config
