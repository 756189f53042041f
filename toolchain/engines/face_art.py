"""Vector art for the built-in engines: a front-facing head and shoulders described by a ``FaceSpec``.

Both built-in engines map their avatar vectors to a ``FaceSpec``; this module turns one into a
``Scene`` (see ``scene.py``). Every shape is tagged with its semantic part, so part masks come for free.
Palettes and style names live here so engines and tests share one list.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import skia

from .scene import (RGB, Gradient, Scene, circle, intersect, mirrored, mix, oval, poly, rrect, shade, subtract,
                    union)

PARTS = ("background", "skin", "hair", "eyes", "brows", "nose", "mouth", "beard", "glasses", "clothes")

HAIR_STYLES = ("bald", "buzz", "short", "side_part", "quiff", "bob", "long", "curly", "afro", "bun", "mohawk", "ponytail")
HAIR_COLORS: dict[str, RGB] = {
    "black": (38, 32, 34), "dark_brown": (74, 50, 38), "brown": (122, 82, 52), "auburn": (140, 62, 40),
    "ginger": (200, 112, 50), "blonde": (226, 190, 120), "platinum": (232, 226, 210), "gray": (150, 150, 156),
    "blue": (60, 110, 200), "pink": (230, 120, 170),
}
SKIN_TONES: dict[str, RGB] = {
    "porcelain": (255, 228, 214), "fair": (246, 212, 186), "light": (236, 192, 160), "medium": (214, 164, 124),
    "tan": (190, 136, 96), "olive": (166, 146, 92), "brown": (138, 94, 64), "deep": (92, 60, 44),
}
EYE_STYLES = ("round", "almond", "wide", "sleepy", "smiling", "lashes")
EYE_COLORS: dict[str, RGB] = {
    "brown": (110, 70, 40), "hazel": (140, 110, 50), "green": (70, 140, 80), "blue": (60, 120, 200),
    "gray": (120, 130, 140), "amber": (200, 140, 40),
}
BROW_STYLES = ("natural", "arched", "straight", "thin", "angled", "bushy")
MOUTH_STYLES = ("smile", "grin", "neutral", "open", "smirk")
GLASSES = ("none", "round", "rectangle", "cat_eye", "aviator", "sunglasses")
FACIAL_HAIR = ("none", "stubble", "mustache", "goatee", "full_beard")

CX = 128.0
HEAD_TOP = 62.0
EYE_Y = 124.0


@dataclass(frozen=True)
class FaceSpec:
    """Everything the painter needs. Geometry factors are multiplicative around 1.0."""

    skin: RGB = SKIN_TONES["light"]
    hair_style: str = "short"
    hair_color: RGB = HAIR_COLORS["brown"]
    eye_style: str = "round"
    eye_color: RGB = EYE_COLORS["brown"]
    brow_style: str = "natural"
    mouth_style: str = "smile"
    glasses: str = "none"
    facial_hair: str = "none"
    shirt: RGB = (86, 120, 200)
    background: RGB = (222, 234, 244)
    face_width: float = 1.0
    jaw_width: float = 1.0
    chin_length: float = 1.0
    eye_size: float = 1.0
    eye_spacing: float = 1.0
    nose_length: float = 1.0
    nose_width: float = 1.0
    mouth_width: float = 1.0
    brow_height: float = 0.0
    # Photo-like drawing (the proxy domain, ``toolchain.proxy``): skip the purely decorative cartoon
    # touches that carry no attribute (blush, hair outline). Default drawing is unchanged.
    photo: bool = False


@dataclass(frozen=True)
class _Geometry:
    w: float          # face half-width at the cheeks
    jw: float         # jaw half-width
    jaw_y: float
    chin_y: float
    eye_dx: float     # eye centre offset from the midline
    nose_top: float
    nose_bottom: float
    mouth_y: float
    brow_y: float

    @staticmethod
    def of(spec: FaceSpec) -> "_Geometry":
        chin_y = 150 + 34 * spec.chin_length
        nose_bottom = 128 + 18 * spec.nose_length
        return _Geometry(
            w=48 * spec.face_width, jw=34 * spec.jaw_width * spec.face_width, jaw_y=158, chin_y=chin_y,
            eye_dx=20 * spec.eye_spacing, nose_top=128, nose_bottom=nose_bottom,
            mouth_y=(nose_bottom + chin_y) / 2 + 1, brow_y=108 - 6 * spec.brow_height,
        )


def paint_face(spec: FaceSpec) -> Scene:
    """Build the scene for one avatar."""
    g = _Geometry.of(spec)
    scene = Scene(parts=PARTS, background=spec.background,
                  background_gradient=Gradient("radial", (CX, 110, 190), (shade(spec.background, 1.25), spec.background)))
    face = _face_path(g)
    back, front = _hair_paths(spec.hair_style, g)
    hair_grad = Gradient("linear", (0, HEAD_TOP - 40, 0, 230), (shade(spec.hair_color, 1.18), spec.hair_color,
                                                                  shade(spec.hair_color, 0.8)), (0, 0.45, 1))
    if back is not None:
        scene.fill("hair", back, spec.hair_color, gradient=hair_grad)
    _neck_and_clothes(scene, spec, g)
    for side in (-1, 1):
        ear = oval(CX + side * (g.w - 1), 130, 8, 14)
        scene.fill("skin", ear, shade(spec.skin, 0.95))
        scene.fill("skin", oval(CX + side * (g.w + 1), 131, 3.5, 8), shade(spec.skin, 0.82), in_mask=False)
    scene.fill("skin", face, spec.skin,
               gradient=Gradient("radial", (CX - 8, 112, 96), (shade(spec.skin, 1.07), spec.skin, shade(spec.skin, 0.88)),
                                 (0, 0.62, 1)))
    if not spec.photo:
        for side in (-1, 1):
            scene.fill("skin", oval(CX + side * (g.eye_dx + 9), 148, 10, 6.5), (236, 120, 120), alpha=0.16, in_mask=False)
    _facial_hair(scene, spec, g, face)
    _nose(scene, spec, g)
    _mouth(scene, spec, g)
    _eyes(scene, spec, g)
    _brows(scene, spec, g)
    if front is not None:
        scene.fill("hair", front, spec.hair_color, gradient=hair_grad)
        if not spec.photo:
            scene.stroke("hair", front, shade(spec.hair_color, 0.72), 1.2, alpha=0.7, in_mask=False)
    _glasses(scene, spec, g)
    return scene


# ----- head ------------------------------------------------------------------------------------
def _face_path(g: _Geometry) -> skia.Path:
    p = skia.Path()
    p.moveTo(CX, HEAD_TOP)
    p.cubicTo(CX + g.w * 0.62, HEAD_TOP, CX + g.w, HEAD_TOP + 20, CX + g.w, 104)
    p.cubicTo(CX + g.w, 134, CX + g.jw + 8, g.jaw_y - 10, CX + g.jw, g.jaw_y)
    p.cubicTo(CX + g.jw - 8, g.jaw_y + 14, CX + 14, g.chin_y, CX, g.chin_y)
    p.cubicTo(CX - 14, g.chin_y, CX - g.jw + 8, g.jaw_y + 14, CX - g.jw, g.jaw_y)
    p.cubicTo(CX - g.jw - 8, g.jaw_y - 10, CX - g.w, 134, CX - g.w, 104)
    p.cubicTo(CX - g.w, HEAD_TOP + 20, CX - g.w * 0.62, HEAD_TOP, CX, HEAD_TOP)
    p.close()
    return p


def _neck_and_clothes(scene: Scene, spec: FaceSpec, g: _Geometry) -> None:
    neck = poly([(CX - 17, g.jaw_y - 6), (CX + 17, g.jaw_y - 6), (CX + 19, 226), (CX - 19, 226)])
    scene.fill("skin", neck, shade(spec.skin, 0.9))
    scene.fill("skin", oval(CX, g.chin_y + 4, 20, 9), shade(spec.skin, 0.78), alpha=0.55, clip=neck, in_mask=False)
    body = skia.Path()
    body.moveTo(6, 256)
    body.cubicTo(10, 226, 30, 208, CX - 30, 202)
    body.lineTo(CX - 14, 200)
    body.quadTo(CX, 226, CX + 14, 200)
    body.lineTo(CX + 30, 202)
    body.cubicTo(256 - 30, 208, 256 - 10, 226, 250, 256)
    body.close()
    scene.fill("clothes", body, spec.shirt,
               gradient=Gradient("linear", (0, 196, 0, 256), (shade(spec.shirt, 1.12), shade(spec.shirt, 0.86))))
    collar = skia.Path()
    collar.moveTo(CX - 16, 199)
    collar.quadTo(CX, 230, CX + 16, 199)
    scene.stroke("clothes", collar, shade(spec.shirt, 0.7), 3)


# ----- eyes and brows --------------------------------------------------------------------------
def _almond(ex: float, ey: float, r: float) -> skia.Path:
    p = skia.Path()
    p.moveTo(ex - 11 * r, ey + 1)
    p.quadTo(ex, ey - 11 * r, ex + 11 * r, ey - 1)
    p.quadTo(ex, ey + 8 * r, ex - 11 * r, ey + 1)
    p.close()
    return p


def _eyes(scene: Scene, spec: FaceSpec, g: _Geometry) -> None:
    r = spec.eye_size
    line = (44, 34, 36)
    for side in (-1, 1):
        ex, ey = CX + side * g.eye_dx, EYE_Y
        style = spec.eye_style
        if style == "smiling":
            arc = skia.Path()
            arc.moveTo(ex - 9 * r, ey + 2)
            arc.quadTo(ex, ey - 9 * r, ex + 9 * r, ey + 2)
            scene.stroke("eyes", arc, line, 3.2)
            continue
        if style == "round":
            white = oval(ex, ey, 9.5 * r, 7.5 * r)
            iris_r = 5.2 * r
        elif style == "wide":
            white = oval(ex, ey, 11.5 * r, 10 * r)
            iris_r = 6.8 * r
        else:
            white = _almond(ex, ey, r)
            iris_r = 5.0 * r
        scene.fill("eyes", white, (250, 250, 248))
        scene.fill("eyes", circle(ex, ey + 0.5, iris_r), spec.eye_color, clip=white,
                   gradient=Gradient("radial", (ex, ey + 0.5, iris_r), (shade(spec.eye_color, 1.2), spec.eye_color,
                                                                       shade(spec.eye_color, 0.6)), (0, 0.6, 1)))
        scene.fill("eyes", circle(ex, ey + 0.5, iris_r * 0.45), (16, 14, 18), clip=white)
        scene.fill("eyes", circle(ex - iris_r * 0.35, ey - iris_r * 0.35, iris_r * 0.28), (255, 255, 255), clip=white)
        if style == "wide":
            scene.fill("eyes", circle(ex + iris_r * 0.35, ey + iris_r * 0.35, iris_r * 0.14), (255, 255, 255), clip=white)
        if style == "sleepy":
            lid = poly([(ex - 13 * r, ey - 12 * r), (ex + 13 * r, ey - 12 * r), (ex + 13 * r, ey - 0.5), (ex - 13 * r, ey - 0.5)])
            scene.fill("eyes", lid, shade(spec.skin, 0.86), clip=white)
            lidline = skia.Path()
            lidline.moveTo(ex - 11 * r, ey)
            lidline.lineTo(ex + 11 * r, ey - 1)
            scene.stroke("eyes", lidline, line, 2.4)
        top = skia.Path()
        if style in ("round", "wide"):
            ry = 7.5 * r if style == "round" else 10 * r
            rx = 9.5 * r if style == "round" else 11.5 * r
            top.addArc(skia.Rect(ex - rx, ey - ry, ex + rx, ey + ry), 190, 160)
        else:
            top.moveTo(ex - 11 * r, ey + 1)
            top.quadTo(ex, ey - 11 * r, ex + 11 * r, ey - 1)
        scene.stroke("eyes", top, line, 2.6 if style != "lashes" else 3.4)
        if style == "lashes":
            for k in range(3):
                lash = skia.Path()
                x0, y0 = ex + side * (6 + 2.5 * k) * r, ey - (6.5 - 1.8 * k) * r
                lash.moveTo(x0, y0)
                lash.lineTo(x0 + side * 4 * r, y0 - 3.5 * r)
                scene.stroke("eyes", lash, line, 1.8)


def _brows(scene: Scene, spec: FaceSpec, g: _Geometry) -> None:
    color = shade(spec.hair_color, 0.62) if spec.hair_style != "bald" else shade(spec.skin, 0.45)
    by = g.brow_y
    for side in (-1, 1):
        ex = CX + side * g.eye_dx
        inner, outer = ex - side * 11, ex + side * 12
        p = skia.Path()
        style = spec.brow_style
        width = {"natural": 3.6, "arched": 3.4, "straight": 4.6, "thin": 1.8, "angled": 3.8, "bushy": 6.8}[style]
        if style == "straight":
            p.moveTo(inner, by)
            p.lineTo(outer, by - 1)
        elif style == "arched":
            p.moveTo(inner, by + 2)
            p.quadTo(ex + side * 4, by - 9, outer, by + 2)
        elif style == "angled":
            p.moveTo(inner, by + 4)
            p.lineTo(outer, by - 4)
        else:
            p.moveTo(inner, by + 1)
            p.quadTo(ex, by - 5, outer, by + 1)
        scene.stroke("brows", p, color, width)


# ----- nose and mouth --------------------------------------------------------------------------
def _nose(scene: Scene, spec: FaceSpec, g: _Geometry) -> None:
    w = spec.nose_width
    dark = shade(spec.skin, 0.72)
    ridge = skia.Path()
    ridge.moveTo(CX + 2, g.nose_top)
    ridge.quadTo(CX + 6 * w, g.nose_bottom - 6, CX + 2, g.nose_bottom)
    scene.stroke("nose", ridge, dark, 2.0, alpha=0.8)
    base = skia.Path()
    base.moveTo(CX - 7 * w, g.nose_bottom - 3)
    base.quadTo(CX, g.nose_bottom + 5, CX + 7 * w, g.nose_bottom - 3)
    scene.stroke("nose", base, dark, 2.2, alpha=0.85)
    scene.fill("nose", circle(CX - 2, g.nose_bottom - 4, 2.6), shade(spec.skin, 1.25), alpha=0.6, in_mask=False)


def _mouth(scene: Scene, spec: FaceSpec, g: _Geometry) -> None:
    m = 15 * spec.mouth_width
    y = g.mouth_y
    lip = mix(shade(spec.skin, 0.62), (170, 60, 70), 0.45)
    style = spec.mouth_style
    if style in ("smile", "grin"):
        drop = 13 if style == "smile" else 16
        p = skia.Path()
        p.moveTo(CX - m, y - 3)
        p.quadTo(CX, y + 1, CX + m, y - 3)
        p.quadTo(CX, y + drop, CX - m, y - 3)
        p.close()
        scene.fill("mouth", p, (120, 36, 48))
        teeth_h = 4.5 if style == "smile" else 8
        scene.fill("mouth", poly([(CX - m, y - 6), (CX + m, y - 6), (CX + m, y + teeth_h - 4), (CX - m, y + teeth_h - 4)]),
                   (250, 248, 244), clip=p)
        scene.fill("mouth", oval(CX, y + drop - 3, m * 0.55, 5), (222, 110, 120), clip=p)
        scene.stroke("mouth", p, lip, 1.6)
    elif style == "open":
        scene.fill("mouth", oval(CX, y + 2, 6 * spec.mouth_width, 7), (110, 34, 44))
        scene.stroke("mouth", oval(CX, y + 2, 6 * spec.mouth_width, 7), lip, 2.2)
    else:
        p = skia.Path()
        if style == "neutral":
            p.moveTo(CX - m * 0.8, y)
            p.quadTo(CX, y + 2, CX + m * 0.8, y)
        else:  # smirk: one corner up
            p.moveTo(CX - m * 0.8, y + 1)
            p.quadTo(CX + m * 0.2, y + 4, CX + m * 0.9, y - 5)
        scene.stroke("mouth", p, lip, 3.0)
        lower = skia.Path()
        lower.moveTo(CX - m * 0.35, y + 6)
        lower.quadTo(CX, y + 8, CX + m * 0.35, y + 6)
        scene.stroke("mouth", lower, shade(spec.skin, 0.8), 1.6, alpha=0.7)


# ----- facial hair -----------------------------------------------------------------------------
def _mustache(g: _Geometry) -> skia.Path:
    y = g.mouth_y
    half = skia.Path()
    half.moveTo(CX, y - 10)
    half.cubicTo(CX + 8, y - 14, CX + 18, y - 11, CX + 21, y - 2)
    half.cubicTo(CX + 14, y - 6, CX + 7, y - 5, CX, y - 5)
    half.close()
    return union(half, mirrored(half, CX))


def _facial_hair(scene: Scene, spec: FaceSpec, g: _Geometry, face: skia.Path) -> None:
    style = spec.facial_hair
    if style == "none":
        return
    color = shade(spec.hair_color, 0.85)
    # The beard band: the face minus an oval over eyes, nose and upper cheeks, so it rises into sideburns.
    lower_face = subtract(poly([(0, 100), (256, 100), (256, 256), (0, 256)]), oval(CX, 118, g.w - 9, 34))
    mouth_hole = oval(CX, g.mouth_y + 1, 15 * spec.mouth_width + 3, 8)
    if style == "stubble":
        region = subtract(intersect(face, lower_face), mouth_hole)
        scene.fill("beard", region, color, alpha=0.3)
    elif style == "mustache":
        scene.fill("beard", _mustache(g), color)
    elif style == "goatee":
        chin = subtract(oval(CX, g.chin_y - 6, 12, 12), mouth_hole)
        scene.fill("beard", union(chin, _mustache(g)), color)
    elif style == "full_beard":
        bulge = oval(CX, g.chin_y - 4, g.jw + 6, 22)
        region = subtract(union(intersect(face, lower_face), bulge), mouth_hole)
        region = union(region, _mustache(g))
        scene.fill("beard", region, color, gradient=Gradient("linear", (0, 136, 0, g.chin_y + 20),
                                                             (shade(color, 1.1), shade(color, 0.8))))


# ----- glasses ---------------------------------------------------------------------------------
def _glasses(scene: Scene, spec: FaceSpec, g: _Geometry) -> None:
    style = spec.glasses
    if style == "none":
        return
    frame = {"round": (40, 36, 40), "rectangle": (30, 30, 36), "cat_eye": (150, 30, 70),
             "aviator": (196, 160, 80), "sunglasses": (20, 20, 24)}[style]
    width = {"round": 2.6, "rectangle": 3.2, "cat_eye": 3.2, "aviator": 2.0, "sunglasses": 3.6}[style]
    lens_color, lens_alpha = ((20, 24, 30), 0.92) if style == "sunglasses" else ((200, 225, 255), 0.18)
    lenses = []
    for side in (-1, 1):
        ex, ey = CX + side * g.eye_dx, EYE_Y
        if style == "round":
            lens = circle(ex, ey, 13)
        elif style == "rectangle":
            lens = rrect(ex - 15, ey - 10, ex + 15, ey + 10, 3.5)
        elif style == "sunglasses":
            lens = rrect(ex - 15, ey - 10, ex + 15, ey + 11, 7)
        elif style == "aviator":
            lens = skia.Path()
            lens.moveTo(ex - 14, ey - 9)
            lens.lineTo(ex + 14, ey - 9)
            lens.cubicTo(ex + 16, ey + 4, ex + 8, ey + 14, ex, ey + 13)
            lens.cubicTo(ex - 10, ey + 13, ex - 15, ey + 3, ex - 14, ey - 9)
            lens.close()
            if side < 0:
                lens = mirrored(lens, ex)
        else:  # cat_eye: outer top corner swept up
            o = side
            lens = skia.Path()
            lens.moveTo(ex - o * 13, ey - 6)
            lens.quadTo(ex, ey - 10, ex + o * 17, ey - 13)
            lens.quadTo(ex + o * 14, ey + 10, ex, ey + 10)
            lens.quadTo(ex - o * 14, ey + 9, ex - o * 13, ey - 6)
            lens.close()
        lenses.append(lens)
        scene.fill("glasses", lens, lens_color, alpha=lens_alpha)
        scene.stroke("glasses", lens, frame, width)
        temple = skia.Path()
        temple.moveTo(ex + side * 14, ey - 5)
        temple.lineTo(CX + side * (g.w + 2), ey - 6)
        scene.stroke("glasses", temple, frame, width)
    if style == "sunglasses":
        for lens in lenses:
            b = lens.getBounds()
            glint = poly([(b.left() + 5, b.top() + 4), (b.left() + 10, b.top() + 4), (b.left() + 5, b.bottom() - 6)])
            scene.fill("glasses", glint, (255, 255, 255), alpha=0.25, in_mask=False)
    bridge = skia.Path()
    bridge.moveTo(CX - g.eye_dx + 13, EYE_Y - 3)
    bridge.quadTo(CX, EYE_Y - 8, CX + g.eye_dx - 13, EYE_Y - 3)
    scene.stroke("glasses", bridge, frame, width)


# ----- hair ------------------------------------------------------------------------------------
def _cap(g: _Geometry, lift: float, side_y: float, hairline: float, spread: float = 4.0) -> skia.Path:
    """A hair cap hugging the skull: outer edge ``lift`` above the head, inner edge at ``hairline``."""
    w = g.w + spread
    p = skia.Path()
    p.moveTo(CX - w, side_y)
    p.cubicTo(CX - w - 2, HEAD_TOP - lift * 0.2, CX - w * 0.6, HEAD_TOP - lift, CX, HEAD_TOP - lift)
    p.cubicTo(CX + w * 0.6, HEAD_TOP - lift, CX + w + 2, HEAD_TOP - lift * 0.2, CX + w, side_y)
    p.lineTo(CX + g.w - 3, side_y)
    p.cubicTo(CX + g.w - 4, hairline, CX + g.w * 0.5, hairline - 4, CX, hairline)
    p.cubicTo(CX - g.w * 0.5, hairline - 4, CX - g.w + 4, hairline, CX - g.w + 3, side_y)
    p.close()
    return p


def _tufts(g: _Geometry, y: float, n: int, depth: float) -> skia.Path:
    """A jagged fringe band: ``n`` points hanging down to ``y + depth``."""
    left, right = CX - g.w + 4, CX + g.w - 4
    pts = [(left, y - 14)]
    for k in range(n):
        x0 = left + (right - left) * k / n
        x1 = left + (right - left) * (k + 1) / n
        pts += [(x0 + (x1 - x0) * 0.6, y + depth), (x1, y)]
    pts += [(right, y - 14)]
    return poly(pts)


def _hair_paths(style: str, g: _Geometry) -> tuple[skia.Path | None, skia.Path | None]:
    """Return (behind-the-head shape, in-front-of-the-face shape) for a hair style."""
    w = g.w
    if style == "bald":
        return None, None
    if style == "buzz":
        return None, _cap(g, 3, 108, 82, spread=2)
    if style == "short":
        return None, union(_cap(g, 14, 114, 84), _tufts(g, 84, 4, 8))
    if style == "side_part":
        sweep = skia.Path()
        sweep.moveTo(CX + 8, HEAD_TOP - 10)
        sweep.cubicTo(CX - 20, HEAD_TOP + 4, CX - w + 4, 90, CX - w + 2, 104)
        sweep.lineTo(CX - w - 4, 100)
        sweep.lineTo(CX - w, HEAD_TOP)
        sweep.close()
        return None, union(_cap(g, 15, 114, 80), sweep)
    if style == "quiff":
        crest = skia.Path()
        crest.moveTo(CX - w + 6, HEAD_TOP + 10)
        crest.cubicTo(CX - 30, HEAD_TOP - 44, CX + 30, HEAD_TOP - 46, CX + w - 2, HEAD_TOP - 6)
        crest.cubicTo(CX + 20, HEAD_TOP - 18, CX - 10, HEAD_TOP - 6, CX - w + 6, HEAD_TOP + 10)
        crest.close()
        return None, union(_cap(g, 18, 112, 80), crest)
    if style == "bob":
        back = rrect(CX - w - 14, HEAD_TOP - 14, CX + w + 14, 172, 42)
        front = union(_cap(g, 14, 168, 94, spread=12), poly([(CX - w + 2, 86), (CX + w - 2, 86), (CX + w - 2, 96), (CX - w + 2, 96)]))
        return back, front
    if style == "long":
        back = skia.Path()
        back.moveTo(CX - w - 18, 228)
        back.cubicTo(CX - w - 26, 150, CX - w - 16, HEAD_TOP - 14, CX, HEAD_TOP - 14)
        back.cubicTo(CX + w + 16, HEAD_TOP - 14, CX + w + 26, 150, CX + w + 18, 228)
        back.close()
        curtain = skia.Path()
        curtain.moveTo(CX + 2, HEAD_TOP - 10)
        curtain.cubicTo(CX - 30, HEAD_TOP - 8, CX - w - 10, HEAD_TOP + 10, CX - w - 12, 190)
        curtain.lineTo(CX - w + 2, 190)
        curtain.cubicTo(CX - w + 2, 130, CX - w + 8, 96, CX - 2, HEAD_TOP + 8)
        curtain.close()
        return back, union(curtain, mirrored(curtain, CX), _cap(g, 12, 100, 76, spread=8))
    if style == "curly":
        blobs = [circle(CX + (w + 4) * math.cos(a), HEAD_TOP + 40 - (w + 10) * math.sin(a), 14)
                 for a in [i * 3.14159 / 8 for i in range(9)]]
        fringe = [circle(CX + dx, 82, 9) for dx in (-30, -15, 0, 15, 30)]
        return union(*blobs[:1], *blobs[-1:], circle(CX - w - 4, 124, 13), circle(CX + w + 4, 124, 13)), union(
            _cap(g, 16, 112, 84, spread=6), *blobs, *fringe)
    if style == "afro":
        puffs = [circle(CX + (w + 30) * math.cos(a), HEAD_TOP + 44 - (w + 28) * math.sin(a), 20)
                 for a in [i * math.pi / 10 - 0.5 for i in range(13)]]
        back = union(circle(CX, HEAD_TOP + 40, w + 34), *puffs)
        return back, _cap(g, 10, 112, 80, spread=6)
    if style == "bun":
        return circle(CX, HEAD_TOP - 20, 20), _cap(g, 8, 110, 80)
    if style == "mohawk":
        spikes = [(CX - 10, 86)]
        for k, y in enumerate(range(0, 5)):
            spikes += [(CX - 9 + 2 * k, HEAD_TOP - 20 - 6 * k), (CX - 6 + 2 * k, HEAD_TOP - 4 - 3 * k)]
        spikes += [(CX + 12, HEAD_TOP - 44), (CX + 12, 86)]
        return None, union(poly(spikes), _cap(g, 2, 104, 86, spread=1))
    if style == "ponytail":
        tail = skia.Path()
        tail.moveTo(CX + w - 8, HEAD_TOP + 6)
        tail.cubicTo(CX + w + 40, HEAD_TOP + 10, CX + w + 30, 170, CX + w + 10, 200)
        tail.cubicTo(CX + w + 8, 160, CX + w + 16, 120, CX + w - 4, 100)
        tail.close()
        return tail, _cap(g, 10, 110, 80)
    raise ValueError(f"unknown hair style {style!r} (known: {', '.join(HAIR_STYLES)})")
