"""Beyond the paper: AF MR I3D features + gated Region Attention (a tanh MLP scorer, then sigmoid).

A variant made of parts, with no new code: the generic ``attention`` head of rajax.models.heads
with an MLP scorer in place of the paper's linear one. No paper number.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.head = base.head("attention", over=("regions",), scorer="mlp", hidden=256,
                            normalisation="sigmoid", num_heads=1, temperature=1.0)
    return config
