"""Tiny engines that tests load through ``module:Class`` specs and fake entry points.

Importable as ``tests.plugin_engines`` from the repository root (``tests`` is a package), also in
the spawn worker processes that ``render.job`` starts.
"""
from __future__ import annotations

import numpy as np

from toolchain.engines.base import Engine, RenderBatch
from toolchain.schema import AvatarSchema, AvatarVector, ContinuousParam, DiscreteParam

TINT_OPTIONS = ("red", "green", "blue")


class TinyEngine(Engine):
    """A flat colour square on black: channel ``tint`` at brightness ``level``; mask 1 = the square."""

    name = "tiny"
    supports_masks = True
    _schema = AvatarSchema(
        engine="tiny",
        params=(ContinuousParam("level", 0.2, 1.0, 0.6), DiscreteParam("tint", TINT_OPTIONS, part="square")),
        parts=("background", "square"),
    )

    @property
    def schema(self) -> AvatarSchema:
        return self._schema

    def render_valid(self, vectors: list[AvatarVector], size: int, masks: bool) -> RenderBatch:
        images = np.zeros((len(vectors), size, size, 3), np.uint8)
        labels = np.zeros((len(vectors), size, size), np.uint8)
        lo, hi = size // 4, size - size // 4
        for k, v in enumerate(vectors):
            images[k, lo:hi, lo:hi, int(v["tint"])] = round(255 * float(v["level"]))
            labels[k, lo:hi, lo:hi] = 1
        return RenderBatch(images, labels if masks else None)


class NotAnEngine:
    """Importable, but not an Engine subclass."""
