"""The region names, in the fixed order the features are stored in (``rajax.data.regions`` has
their geometry and crops).

Nothing is imported here: ``configs/base.py`` reads these names, and the command line loads the
config it names while it builds its parser.
"""

GRID_NAMES = tuple(f"grid_{row}_{col}" for row in range(3) for col in range(3))
REGION_NAMES = ("full", *GRID_NAMES, "actor")
REGIONS_WITHOUT_ACTOR = REGION_NAMES[:-1]
