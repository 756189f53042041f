"""A photo-like restyling of the built-in engines' faces: the proxy domain for real photos.

Real face photos with ground-truth avatar vectors cannot be had, so this module draws the *same
attributes* as an engine render (hair style and colour, skin tone, glasses, beard, face shape...) in a
clearly different style: no cartoon touches, slightly jittered geometry and colours, soft directional
shading with a specular highlight, skin and hair texture, a cluttered out-of-focus background, a small
head pose change, a colour cast, blur, sensor noise and JPEG artefacts. The part mask follows the pose
exactly (same transform, nearest-neighbour), so it stays a correct label map.

Everything is numpy + PIL + skia and deterministic per ``(vector, seed)``: all randomness comes from
``np.random.default_rng([seed, STYLE_TAG])``.
"""
from __future__ import annotations

import io
import math
from dataclasses import replace
from functools import lru_cache
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..engines.face_art import PARTS, FaceSpec, paint_face
from ..engines.painted import PaintedEngine
from ..errors import AvatarToolError

STYLE_TAG = 0x5048_4F54  # "PHOT": separates the style stream from every other use of the same seed

_SKIN = PARTS.index("skin")
_HAIR = PARTS.index("hair")
_BEARD = PARTS.index("beard")
_CLOTHES = PARTS.index("clothes")
_FACE_PARTS = [PARTS.index(p) for p in ("skin", "eyes", "brows", "nose", "mouth", "beard", "glasses")]

_GEOMETRY_JITTER = {  # FaceSpec field -> std of the multiplicative jitter (a small fraction of each range)
    "face_width": 0.02, "jaw_width": 0.03, "chin_length": 0.03, "eye_size": 0.04, "eye_spacing": 0.025,
    "nose_length": 0.04, "nose_width": 0.04, "mouth_width": 0.04,
}


def render_photo(engine: PaintedEngine, vector: Mapping, seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``vector`` photo-style: ``(rgb uint8 [size, size, 3], mask uint8 [size, size])``.

    The mask uses the engine's part labels (value ``k`` = ``schema.parts[k]``). Same vector and seed,
    same pixels.
    """
    _, rgb, mask = render_photo_jpeg(engine, vector, seed, size)
    return rgb, mask


def render_photo_jpeg(engine: PaintedEngine, vector: Mapping, seed: int,
                      size: int = 256) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Like :func:`render_photo`, also returning the JPEG bytes whose decoding *is* the rgb image
    (so a writer can store them without compressing a second time)."""
    if not isinstance(engine, PaintedEngine):
        raise AvatarToolError(f"engine '{getattr(engine, 'name', engine)}' does not draw with face_art; the photo "
                              "proxy works only for the built-in painted engines (alter, morph)")
    if not isinstance(size, int) or not 32 <= size <= 2048:
        raise ValueError(f"size must be an integer between 32 and 2048, got {size!r}")
    rng = np.random.default_rng([int(seed), STYLE_TAG])
    spec = _jitter_spec(engine.face_spec(engine.schema.validate(vector)), rng)
    S = size
    premult, alpha, mask = _draw_foreground(spec, S)
    premult, alpha, mask = _pose(premult, alpha, mask, rng, S)
    fg = _texture(premult, alpha, mask, rng, S)
    out = _light_and_composite(fg, alpha, mask, _background(rng, S), rng, S)
    out = _camera(out, rng, S)
    jpeg = _encode_jpeg(out, int(rng.integers(25, 76)))
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    return jpeg, rgb, mask


# ----- attributes kept, style changed ------------------------------------------------------------
def _jitter_color(c, rng: np.random.Generator, bright: float, chan: float) -> tuple[int, int, int]:
    gain = math.exp(rng.normal(0, bright)) * np.exp(rng.normal(0, chan, 3))
    return tuple(int(np.clip(round(v * g), 0, 255)) for v, g in zip(c, gain))  # type: ignore[return-value]


def _random_shirt(rng: np.random.Generator) -> tuple[int, int, int]:
    import colorsys
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, 0.7), rng.uniform(0.15, 0.85))
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter_spec(spec: FaceSpec, rng: np.random.Generator) -> FaceSpec:
    changes: dict = {name: float(getattr(spec, name) * np.clip(rng.normal(1, sd), 1 - 3 * sd, 1 + 3 * sd))
                     for name, sd in _GEOMETRY_JITTER.items()}
    changes["brow_height"] = float(spec.brow_height + np.clip(rng.normal(0, 0.12), -0.3, 0.3))
    changes["skin"] = _jitter_color(spec.skin, rng, 0.04, 0.02)
    changes["hair_color"] = _jitter_color(spec.hair_color, rng, 0.05, 0.025)
    changes["eye_color"] = _jitter_color(spec.eye_color, rng, 0.05, 0.03)
    changes["shirt"] = _random_shirt(rng)  # clothing is not an attribute: any colour will do
    changes["background"] = (128, 128, 128)
    return replace(spec, photo=True, **changes)


# ----- drawing --------------------------------------------------------------------------------------
def _draw_foreground(spec: FaceSpec, S: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Premultiplied rgb in [0, 1], alpha in [0, 1] and the label mask, with no background: the scene
    is drawn over black and over white, and the difference gives the exact anti-aliased coverage."""
    scene = paint_face(spec)
    scene.background_gradient = None
    scene.background = (0, 0, 0)
    on_black, mask = scene.rasterize(S)
    scene.background = (255, 255, 255)
    on_white, _ = scene.rasterize(S, with_mask=False)
    b = on_black.astype(np.float32) / 255
    alpha = np.clip(1 - (on_white.astype(np.float32) / 255 - b).mean(-1), 0, 1)
    return np.minimum(b, alpha[..., None]), alpha, mask


def _pose(premult: np.ndarray, alpha: np.ndarray, mask: np.ndarray, rng: np.random.Generator, S: int):
    """Rotate (±10°), scale (0.9–1.1) and shift (±6 %) the head and shoulders; the mask gets the same
    transform with nearest-neighbour sampling. The bottom rows are extended first so the shoulders
    still reach the frame's lower edge after a shift up or a shrink."""
    theta = math.radians(rng.uniform(-10, 10))
    s = rng.uniform(0.9, 1.1)
    tx, ty = rng.uniform(-0.06, 0.06, 2) * S
    pad = S // 3
    ext = lambda a: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)], axis=0)  # noqa: E731
    c = S / 2
    cos, sin = math.cos(theta), math.sin(theta)
    # output (x, y) -> input: c + R(-theta) (out - c - t) / s
    a_, b_ = cos / s, sin / s
    d_, e_ = -sin / s, cos / s
    ox, oy = -c - tx, -c - ty
    coeffs = (a_, b_, a_ * ox + b_ * oy + c, d_, e_, d_ * ox + e_ * oy + c)
    rgb8 = Image.fromarray(ext(np.round(premult * 255).astype(np.uint8)))
    a8 = Image.fromarray(ext(np.round(alpha * 255).astype(np.uint8)))
    m8 = Image.fromarray(ext(mask))
    rgb8 = rgb8.transform((S, S), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    a8 = a8.transform((S, S), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=0)
    m8 = m8.transform((S, S), Image.AFFINE, coeffs, resample=Image.NEAREST, fillcolor=0)
    return (np.asarray(rgb8, np.float32) / 255, np.asarray(a8, np.float32) / 255, np.asarray(m8).copy())


@lru_cache(maxsize=8)
def _grid(S: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S - 0.5
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _taps(img: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    r = len(weights) // 2
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    p = np.pad(img, pad, mode="edge")
    n = img.shape[axis]
    out = np.zeros_like(img)
    for k, w in enumerate(weights):
        out += w * (p[k:k + n] if axis == 0 else p[:, k:k + n])
    return out


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D float32 array, in plain numpy (no BLAS: matrix products stall when the
    render workers fill every core). Wide blurs run on a downscaled copy and are scaled back up."""
    h, w = img.shape
    f = max(1, int(sigma / 1.5))
    small = img if f == 1 else np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize(
        (max(2, w // f), max(2, h // f)), Image.BOX))
    s = sigma / f
    r = max(1, int(math.ceil(3 * s)))
    x = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / s) ** 2)
    k /= k.sum()
    out = _taps(_taps(small.astype(np.float32), k, 0), k, 1)
    if f > 1:
        out = np.asarray(Image.fromarray(out, mode="F").resize((w, h), Image.BILINEAR))
    return out


def _noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    n = _blur(rng.standard_normal(shape, dtype=np.float32), sigma)
    return n / (n.std() + 1e-6)


def _streaks(rng: np.random.Generator, S: int) -> np.ndarray:
    """Anisotropic hair texture: noise that varies fast across and slowly along a mostly vertical flow
    direction, sampled straight into the frame with one affine transform."""
    rows = max(4, S // 14)
    base = Image.fromarray(rng.standard_normal((rows, S), dtype=np.float32), mode="F")
    a = math.radians(rng.uniform(-25, 25))
    cos, sin, c, k = math.cos(a), math.sin(a), S / 2, rows / (2 * S)
    # base column = (u + S) / 2 and row = (v + S) * k, with (u, v) the pixel rotated about the centre
    coeffs = (cos / 2, sin / 2, (S - cos * c - sin * c) / 2, -sin * k, cos * k, (sin * c - cos * c + S) * k)
    st = np.asarray(base.transform((S, S), Image.AFFINE, coeffs, resample=Image.BILINEAR), np.float32)
    return st / (st.std() + 1e-6)


def _texture(premult: np.ndarray, alpha: np.ndarray, mask: np.ndarray, rng: np.random.Generator, S: int) -> np.ndarray:
    scale = S / 256
    skin = (mask == _SKIN).astype(np.float32)
    hair = (mask == _HAIR).astype(np.float32)
    beard = (mask == _BEARD).astype(np.float32)
    cloth = (mask == _CLOTHES).astype(np.float32)
    fine = _noise(rng, (S, S), 0.6 * scale)
    blotch = _noise(rng, (S, S), 7 * scale)
    streak = _streaks(rng, S)
    gain = (1
            + skin * (rng.uniform(0.03, 0.07) * fine + rng.uniform(0.02, 0.05) * blotch)
            + hair * (rng.uniform(0.1, 0.2) * streak + 0.05 * fine)
            + beard * (0.12 * streak + 0.08 * fine)
            + cloth * (0.05 * fine + rng.uniform(0.04, 0.1) * blotch))
    return premult * np.clip(gain, 0.55, 1.45)[..., None]


def _room_color(rng: np.random.Generator) -> np.ndarray:
    import colorsys
    return np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.03, 0.35), rng.uniform(0.25, 0.95)),
                    np.float32)


def _background(rng: np.random.Generator, S: int) -> np.ndarray:
    """A cluttered, out-of-focus room: a gradient wall, frames and edges, blurred blobs and bokeh lights.

    Drawn at a quarter of the size (it is blurred anyway) and scaled up."""
    s = max(16, S // 4)
    c0, c1 = _room_color(rng), _room_color(rng)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = _grid(s)
    t = np.clip((xx * math.cos(ang) + yy * math.sin(ang)) * rng.uniform(0.6, 1.6) + 0.5, 0, 1)[..., None]
    wall = c0 * (1 - t) + c1 * t
    img = Image.fromarray(np.round(wall * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 4))):  # door frames, windows, shelves
        x0, y0 = rng.uniform(-0.2, 0.9, 2) * s
        w, h = rng.uniform(0.1, 0.8, 2) * s
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=tuple(int(v * 255) for v in _room_color(rng)))
    for _ in range(int(rng.integers(2, 10))):  # furniture, plants, people far away
        x, y = rng.uniform(0, 1, 2) * s
        r = rng.uniform(0.05, 0.3) * s
        col = _room_color(rng) if rng.random() < 0.7 else np.array(_random_shirt(rng), np.float32) / 255
        draw.ellipse([x - r, y - r * rng.uniform(0.5, 1.5), x + r, y + r], fill=tuple(int(v * 255) for v in col))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.02, 0.07) * s))
    bg = np.asarray(img.resize((S, S), Image.BILINEAR), np.float32) / 255
    if rng.random() < 0.5:  # bokeh: small bright discs, less blurred
        h = max(16, S // 2)
        lights = Image.new("RGB", (h, h))
        ld = ImageDraw.Draw(lights)
        for _ in range(int(rng.integers(4, 20))):
            x, y = rng.uniform(0, 1, 2) * h
            r = rng.uniform(0.01, 0.04) * h
            warm = rng.uniform(0.5, 1.0)
            ld.ellipse([x - r, y - r, x + r, y + r], fill=(int(255 * warm), int(230 * warm), int(190 * warm)))
        lights = lights.filter(ImageFilter.GaussianBlur(rng.uniform(0.005, 0.015) * h)).resize((S, S), Image.BILINEAR)
        bg = bg + rng.uniform(0.3, 0.7) * np.asarray(lights, np.float32) / 255
    mottle = np.asarray(Image.fromarray(_noise(rng, (s, s), 2.5), mode="F").resize((S, S), Image.BILINEAR))
    return np.clip(bg * (1 + 0.03 * mottle)[..., None], 0, 1)


def _light_and_composite(fg: np.ndarray, alpha: np.ndarray, mask: np.ndarray, bg: np.ndarray,
                         rng: np.random.Generator, S: int) -> np.ndarray:
    """Soft directional light: a pseudo-normal map from the blurred silhouette and face region gives
    Lambertian falloff and a specular highlight; a broad gradient along the light lights the room too."""
    phi = rng.uniform(0, 2 * math.pi)
    elev = math.radians(rng.uniform(25, 60))
    L = np.array([math.cos(phi) * math.sin(elev), math.sin(phi) * math.sin(elev), math.cos(elev)], np.float32)
    sigma = 0.05 * S
    face = np.isin(mask, _FACE_PARTS).astype(np.float32)
    h = 0.6 * _blur(alpha, sigma) + 0.4 * _blur(face, sigma * 0.8)
    gy, gx = np.gradient(h)
    k = 3.5 * sigma
    n = np.stack([-gx * k, -gy * k, np.ones_like(h)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    ndl = np.clip(n[..., 0] * L[0] + n[..., 1] * L[1] + n[..., 2] * L[2], 0, None)
    ambient = rng.uniform(0.35, 0.6)
    shade_fg = np.clip(ambient + (1 - ambient) * ndl / L[2], 0.3, 1.3)
    half = L + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = np.clip(n[..., 0] * half[0] + n[..., 1] * half[1] + n[..., 2] * half[2], 0, None) ** rng.uniform(12, 40)
    shiny = (mask == _SKIN) * rng.uniform(0.06, 0.2) + (mask == _HAIR) * rng.uniform(0.03, 0.1)
    spec = _blur((spec * shiny).astype(np.float32), 1.0 * S / 256)
    yy, xx = _grid(S)
    broad = 1 + rng.uniform(0.1, 0.35) * (xx * math.cos(phi) + yy * math.sin(phi)) * 2 * -1
    key = rng.uniform(0.85, 1.15)
    light_col = np.exp(rng.normal(0, 0.04, 3)).astype(np.float32)
    fg_lit = fg * (shade_fg * broad * key)[..., None] * light_col + (spec * alpha)[..., None]
    bg_lit = bg * (broad * rng.uniform(0.8, 1.1))[..., None]
    return fg_lit + (1 - alpha)[..., None] * bg_lit


def _camera(img: np.ndarray, rng: np.random.Generator, S: int) -> np.ndarray:
    """White balance / colour cast, exposure curve, vignette, lens blur and sensor noise."""
    img = img * np.exp(rng.normal(0, 0.05, 3)).astype(np.float32)
    img = img + rng.normal(0, 0.012, 3).astype(np.float32)
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    yy, xx = _grid(S)
    img = img * (1 - rng.uniform(0, 0.5) * (xx ** 2 + yy ** 2))[..., None]
    pil = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1) * S / 256))
    img = np.asarray(pil, np.float32) / 255
    sd = rng.uniform(0.008, 0.035)
    lum_noise = rng.standard_normal((S, S, 1), dtype=np.float32)
    half = (S + 1) // 2
    chroma = rng.standard_normal((half, half, 3), dtype=np.float32).repeat(2, 0).repeat(2, 1)[:S, :S] * 0.4
    img = img + sd * (lum_noise + chroma) * np.sqrt(np.clip(img, 0.02, 1))
    return np.clip(img, 0, 1)


def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
