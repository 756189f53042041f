"""A tiny retained-mode 2D scene on top of skia, rasterised twice: once as an anti-aliased RGB image
and once as an aliased label map, so every drawn shape is its own part mask without extra work.

Coordinates are in a fixed 256x256 design space; rasterisation scales to the requested size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import skia

DESIGN_SIZE = 256.0
RGB = tuple[int, int, int]


def shade(color: RGB, factor: float) -> RGB:
    """Darken (<1) or lighten (>1) a colour, lightening towards white so it never clips to hue shifts."""
    if factor <= 1.0:
        return tuple(int(round(c * factor)) for c in color)  # type: ignore[return-value]
    t = factor - 1.0
    return tuple(int(round(c + (255 - c) * t)) for c in color)  # type: ignore[return-value]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


@dataclass(frozen=True)
class Gradient:
    """Linear (two points) or radial (centre + radius) gradient in design space."""

    kind: str
    points: tuple[float, ...]
    colors: tuple[RGB, ...]
    stops: tuple[float, ...] | None = None

    def shader(self, alpha: float) -> skia.Shader:
        cols = [skia.Color(*c, int(255 * alpha)) for c in self.colors]
        if self.kind == "linear":
            x0, y0, x1, y1 = self.points
            return skia.GradientShader.MakeLinear([skia.Point(x0, y0), skia.Point(x1, y1)], cols,
                                                  list(self.stops) if self.stops else None)
        cx, cy, r = self.points
        return skia.GradientShader.MakeRadial(skia.Point(cx, cy), r, cols, list(self.stops) if self.stops else None)


@dataclass
class _Op:
    part: str
    path: skia.Path
    color: RGB
    alpha: float
    stroke_width: float | None
    gradient: Gradient | None
    clip: skia.Path | None
    in_mask: bool


@dataclass
class Scene:
    """Shapes in painter's order, each tagged with the semantic part it belongs to."""

    parts: Sequence[str]
    background: RGB
    background_gradient: Gradient | None = None
    ops: list[_Op] = field(default_factory=list)

    def fill(self, part: str, path: skia.Path, color: RGB, *, alpha: float = 1.0, gradient: Gradient | None = None,
             clip: skia.Path | None = None, in_mask: bool = True) -> None:
        self._add(part, path, color, alpha, None, gradient, clip, in_mask)

    def stroke(self, part: str, path: skia.Path, color: RGB, width: float, *, alpha: float = 1.0,
               clip: skia.Path | None = None, in_mask: bool = True) -> None:
        self._add(part, path, color, alpha, width, None, clip, in_mask)

    def _add(self, part, path, color, alpha, width, gradient, clip, in_mask) -> None:
        if part not in self.parts:
            raise ValueError(f"scene part {part!r} is not one of {list(self.parts)}")
        self.ops.append(_Op(part, path, color, alpha, width, gradient, clip, in_mask))

    # ------------------------------------------------------------------------------------------
    def rasterize(self, size: int, with_mask: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Return ``(rgb uint8 [size, size, 3], mask uint8 [size, size] or None)``."""
        rgb = self._draw(size, label_mode=False)[..., :3].copy()
        mask = self._draw(size, label_mode=True)[..., 0].copy() if with_mask else None
        return rgb, mask

    def _draw(self, size: int, label_mode: bool) -> np.ndarray:
        info = skia.ImageInfo.Make(size, size, skia.kRGBA_8888_ColorType, skia.kPremul_AlphaType)
        surface = skia.Surface.MakeRaster(info)
        canvas = surface.getCanvas()
        canvas.clear(skia.Color(0, 0, 0, 255) if label_mode else skia.Color(*self.background, 255))
        canvas.scale(size / DESIGN_SIZE, size / DESIGN_SIZE)
        if not label_mode and self.background_gradient is not None:
            canvas.drawPaint(skia.Paint(Shader=self.background_gradient.shader(1.0), AntiAlias=True))
        for op in self.ops:
            if label_mode and not op.in_mask:
                continue
            paint = skia.Paint(AntiAlias=not label_mode)
            if label_mode:
                k = self.parts.index(op.part)
                paint.setColor(skia.Color(k, k, k, 255))
            elif op.gradient is not None:
                paint.setShader(op.gradient.shader(op.alpha))
            else:
                paint.setColor(skia.Color(*op.color, int(round(255 * op.alpha))))
            if op.stroke_width is not None:
                paint.setStyle(skia.Paint.kStroke_Style)
                paint.setStrokeWidth(op.stroke_width)
                paint.setStrokeCap(skia.Paint.kRound_Cap)
                paint.setStrokeJoin(skia.Paint.kRound_Join)
            if op.clip is not None:
                canvas.save()
                canvas.clipPath(op.clip, doAntiAlias=not label_mode)
            canvas.drawPath(op.path, paint)
            if op.clip is not None:
                canvas.restore()
        return surface.makeImageSnapshot().toarray(colorType=skia.kRGBA_8888_ColorType)


# ----- path helpers ----------------------------------------------------------------------------
def oval(cx: float, cy: float, rx: float, ry: float) -> skia.Path:
    p = skia.Path()
    p.addOval(skia.Rect(cx - rx, cy - ry, cx + rx, cy + ry))
    return p


def circle(cx: float, cy: float, r: float) -> skia.Path:
    return oval(cx, cy, r, r)


def rrect(x0: float, y0: float, x1: float, y1: float, r: float) -> skia.Path:
    p = skia.Path()
    p.addRRect(skia.RRect.MakeRectXY(skia.Rect(x0, y0, x1, y1), r, r))
    return p


def poly(points: Sequence[tuple[float, float]], close: bool = True) -> skia.Path:
    p = skia.Path()
    p.moveTo(*points[0])
    for pt in points[1:]:
        p.lineTo(*pt)
    if close:
        p.close()
    return p


def union(*paths: skia.Path) -> skia.Path:
    out = paths[0]
    for p in paths[1:]:
        out = skia.Op(out, p, skia.kUnion_PathOp)
    return out


def intersect(a: skia.Path, b: skia.Path) -> skia.Path:
    return skia.Op(a, b, skia.kIntersect_PathOp)


def subtract(a: skia.Path, b: skia.Path) -> skia.Path:
    return skia.Op(a, b, skia.kDifference_PathOp)


def mirrored(path: skia.Path, cx: float) -> skia.Path:
    """Reflect ``path`` about the vertical line x = cx."""
    m = skia.Matrix()
    m.setScale(-1, 1, cx, 0)
    out = skia.Path(path)
    out.transform(m)
    return out
