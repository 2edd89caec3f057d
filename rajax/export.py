"""The export of I3D checkpoints lives in :mod:`rajax.weights.export`; this module is that one
under its old name, for ``rajax.commands.export_weights`` until it imports it from there."""

import sys

from rajax.weights import export

sys.modules[__name__] = export
