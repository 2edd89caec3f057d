"""``RegionModel``: the I3D backbone and a head in one module, for end-to-end training (stage 4)
and for predicting with an end-to-end run."""

from __future__ import annotations

import flax.linen as nn

from rajax.models.i3d import FEATURES, InceptionI3d


class RegionModel(nn.Module):
    """I3D features of every region, then the head; params ``backbone/`` and ``head/``.

    ``clips`` [B, R, N, H, W, 3] -> (logits [B, K], attention). The regions of all videos go
    through the backbone as one batch of B*R clips.
    """

    backbone: InceptionI3d
    head: nn.Module

    def __call__(self, clips, region_mask=None, *, train: bool = False):
        batch, regions = clips.shape[:2]
        features = self.backbone(clips.reshape((batch * regions,) + clips.shape[2:]), train=train,
                                 output=FEATURES)
        features = features.reshape((batch, regions) + features.shape[1:])
        return self.head(features, region_mask, train=train)
