"""The paper's full model, unchanged from base.py: AF MR I3D, one-shot, T=64, Region Attention.

Paper: 89.84 % (Tables 1 to 3).
"""

from configs import base


def get_config():
    config = base.get_config()
    return config  # base.py is this experiment
