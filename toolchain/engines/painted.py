"""Shared base for the built-in engines that draw with ``face_art``: vector -> FaceSpec -> scene."""
from __future__ import annotations

from abc import abstractmethod

import numpy as np

from ..schema import AvatarVector
from .base import Engine, RenderBatch
from .face_art import FaceSpec, paint_face


class PaintedEngine(Engine):
    supports_masks = True

    @abstractmethod
    def face_spec(self, vector: AvatarVector) -> FaceSpec:
        """Map a validated vector to the painter's description."""

    def render_valid(self, vectors: list[AvatarVector], size: int, masks: bool) -> RenderBatch:
        images = np.empty((len(vectors), size, size, 3), np.uint8)
        mask_arr = np.empty((len(vectors), size, size), np.uint8) if masks else None
        for i, v in enumerate(vectors):
            rgb, mask = paint_face(self.face_spec(v)).rasterize(size, with_mask=masks)
            images[i] = rgb
            if mask_arr is not None:
                mask_arr[i] = mask
        return RenderBatch(images, mask_arr)
