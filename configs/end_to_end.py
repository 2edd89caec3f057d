"""Beyond the paper (its future work): backbone top blocks and RA head trained together on all
11 regions, starting from stages 1 and 3, with rematerialisation and bfloat16.

No paper number. `rajax train end_to_end --workdir DIR` after stages 1 to 3 in DIR.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.stage = "end_to_end"
    return config
