"""The models: the I3D (``i3d``), the heads on its region features (``heads``), their losses
(``losses``) and the I3D with a head in one module for end-to-end training
(``region_model.RegionModel``).

``check_head(head, options=None)`` runs the head contract (docs/new-head.md) on any head, a
registry name or ``package.module:ClassName``: see ``rajax.models.contract``.
"""

from rajax.models.contract import HeadContractError, check_head

__all__ = ["HeadContractError", "check_head"]
