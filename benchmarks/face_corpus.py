"""Images with and without faces, generated or packaged, for measuring the face detector.

Negatives (no human face): noise of several kinds (uniform, gaussian, float in [0, 1] quantised the
way a PNG stores it, low-frequency blobs), gradients, textures (gratings, checkerboards, bricks, wood
rings), cartoon animal faces drawn here with Pillow (cat, dog, bear, owl, frog, mouse: two eyes, a
nose and a mouth, the hard case), and scikit-image's packaged pictures without people (cat, coffee,
rocket, coins, brick, grass, gravel...).

Positives (one human-like face): photo-style proxy faces of the built-in engines
(:func:`toolchain.proxy.render_photo`), the engines' own renders, and the packaged portraits
(scikit-image's astronaut, matplotlib's grace_hopper), each also pasted at a random place and size
into a larger background so small, off-centre faces are covered.

Everything is deterministic in ``seed``; nothing is downloaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass
class Sample:
    name: str          # unique, e.g. "noise_uniform/3"
    kind: str          # the family ("noise_uniform", "proxy_alter", ...)
    image: np.ndarray  # uint8 [H, W, 3]
    faces: int         # human faces in it (0 or 1 here)


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.choice([256, 384, 480, 640])), int(rng.choice([256, 384, 480, 640]))


# ----- noise -----------------------------------------------------------------------------------------
def noise_uniform(rng):
    h, w = _size(rng)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def noise_gaussian(rng):
    h, w = _size(rng)
    return np.clip(rng.normal(128, rng.uniform(20, 80), (h, w, 3)), 0, 255).astype(np.uint8)


def noise_float_png(rng):
    """``np.random.rand(h, w, 3)`` saved as a PNG: the float in [0, 1] scaled to 0..255 and rounded."""
    h, w = _size(rng)
    return np.round(rng.random((h, w, 3)) * 255).astype(np.uint8)


def noise_blobs(rng):
    h, w = _size(rng)
    small = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def noise_gray(rng):
    h, w = _size(rng)
    return _rgb(rng.integers(0, 256, (h, w), dtype=np.uint8))


# ----- gradients and textures ------------------------------------------------------------------------
def gradient(rng):
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = (np.cos(a) * xx + np.sin(a) * yy)
    if rng.random() < 0.4:  # radial
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.uint8)


def texture(rng):
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    k = int(rng.integers(0, 5))
    period = rng.uniform(6, 60)
    if k == 0:    # grating
        a = rng.uniform(0, math.pi)
        v = 0.5 + 0.5 * np.sin(2 * math.pi * (np.cos(a) * xx + np.sin(a) * yy) / period)
    elif k == 1:  # checkerboard
        v = ((xx // period + yy // period) % 2).astype(np.float32)
    elif k == 2:  # bricks
        row = (yy // period).astype(int)
        off = (row % 2) * period
        v = (((xx + off) % (2 * period) > 2) & (yy % period > 2)).astype(np.float32)
    elif k == 3:  # wood rings
        cx, cy = rng.uniform(0, w), rng.uniform(-h, 2 * h)
        v = 0.5 + 0.5 * np.sin(np.hypot(xx - cx, yy - cy) / period * 2 * math.pi)
    else:         # dots
        v = ((np.hypot(xx % period - period / 2, yy % period - period / 2) < period / 4)).astype(np.float32)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = c0 * (1 - v[..., None]) + c1 * v[..., None]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----- cartoon animals -------------------------------------------------------------------------------
def cartoon_animal(rng):
    """A flat cartoon animal head: ears, two eyes, a nose, a mouth, often whiskers or a beak."""
    S = int(rng.choice([256, 384, 512]))
    bg = tuple(int(c) for c in rng.integers(120, 256, 3))
    im = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(im)
    species = ["cat", "dog", "bear", "owl", "frog", "mouse"][int(rng.integers(0, 6))]
    fur = tuple(int(c) for c in rng.integers(30, 230, 3))
    cx, cy = S / 2 + rng.uniform(-0.08, 0.08) * S, S / 2 + rng.uniform(-0.05, 0.1) * S
    r = S * rng.uniform(0.25, 0.36)
    dark = (20, 20, 20)
    if species in ("cat", "mouse", "bear", "dog"):
        er = r * (0.35 if species != "mouse" else 0.55)
        for sx in (-1, 1):
            ex, ey = cx + sx * r * 0.75, cy - r * 0.8
            if species == "cat":
                d.polygon([(ex - er, ey + er * 0.6), (ex + sx * er * 0.3, ey - er * 1.4), (ex + er, ey + er * 0.6)], fill=fur)
            elif species == "dog":
                d.ellipse([ex - er * 0.7, ey - er * 0.2, ex + er * 0.7, ey + er * 2.4], fill=tuple(max(0, c - 50) for c in fur))
            else:
                d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=fur)
    ry = r * (0.85 if species == "frog" else 1.0)
    d.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=fur)
    eye_dx, eye_y = r * rng.uniform(0.3, 0.5), cy - r * rng.uniform(0.05, 0.35)
    eyer = r * rng.uniform(0.1, 0.22)
    for sx in (-1, 1):
        ex = cx + sx * eye_dx
        if species in ("owl", "frog"):
            d.ellipse([ex - eyer * 1.6, eye_y - eyer * 1.6 - (r * 0.3 if species == "frog" else 0),
                       ex + eyer * 1.6, eye_y + eyer * 1.6 - (r * 0.3 if species == "frog" else 0)], fill=(245, 245, 235))
            eyy = eye_y - (r * 0.3 if species == "frog" else 0)
        else:
            d.ellipse([ex - eyer * 1.2, eye_y - eyer * 1.2, ex + eyer * 1.2, eye_y + eyer * 1.2], fill=(245, 245, 235))
            eyy = eye_y
        d.ellipse([ex - eyer * 0.7, eyy - eyer * 0.7, ex + eyer * 0.7, eyy + eyer * 0.7], fill=dark)
    ny = cy + r * rng.uniform(0.1, 0.3)
    if species == "owl":
        d.polygon([(cx - r * 0.1, ny - r * 0.1), (cx + r * 0.1, ny - r * 0.1), (cx, ny + r * 0.2)], fill=(230, 160, 40))
    elif species != "frog":
        nr = r * rng.uniform(0.06, 0.14)
        d.ellipse([cx - nr * 1.3, ny - nr, cx + nr * 1.3, ny + nr], fill=(200, 90, 110) if species in ("cat", "mouse") else dark)
    my = ny + r * rng.uniform(0.15, 0.3)
    d.arc([cx - r * 0.3, my - r * 0.2, cx + r * 0.3, my + r * 0.1], 20, 160, fill=dark, width=max(2, S // 100))
    if species in ("cat", "mouse"):
        for sx in (-1, 1):
            for k in (-1, 0, 1):
                d.line([(cx + sx * r * 0.2, ny + k * r * 0.05), (cx + sx * r * 0.9, ny + k * r * 0.15 - r * 0.05)],
                       fill=dark, width=max(1, S // 200))
    im = im.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, fillcolor=bg)
    if rng.random() < 0.5:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return np.asarray(im)


_SKIMAGE_NO_PEOPLE = ("cat", "coffee", "rocket", "coins", "brick", "grass", "gravel", "moon", "hubble_deep_field",
                      "immunohistochemistry", "colorwheel", "logo", "horse", "page", "text", "clock", "cell", "retina")


def packaged_negatives() -> Iterator[Sample]:
    """scikit-image's bundled pictures that show no person (skipped if scikit-image is missing)."""
    try:
        from skimage import data
    except ImportError:
        return
    for name in _SKIMAGE_NO_PEOPLE:
        try:
            img = getattr(data, name)()
        except Exception:  # some need an optional download: skip, never fetch
            continue
        yield Sample(f"skimage_{name}", "skimage", _rgb(img), 0)


NEGATIVE_KINDS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "noise_uniform": noise_uniform, "noise_gaussian": noise_gaussian, "noise_float_png": noise_float_png,
    "noise_blobs": noise_blobs, "noise_gray": noise_gray, "gradient": gradient, "texture": texture,
    "cartoon_animal": cartoon_animal,
}


def negatives(per_kind: int = 20, seed: int = 0) -> Iterator[Sample]:
    for k, (kind, fn) in enumerate(NEGATIVE_KINDS.items()):
        for i in range(per_kind):
            yield Sample(f"{kind}/{i}", kind, fn(np.random.default_rng([seed, k, i])), 0)
    yield from packaged_negatives()


# ----- positives -------------------------------------------------------------------------------------
def portraits() -> dict[str, np.ndarray]:
    """The packaged portraits that are available here: scikit-image's astronaut, matplotlib's grace_hopper."""
    out = {}
    try:
        from skimage import data
        out["astronaut"] = data.astronaut()
    except Exception:
        pass
    try:
        import matplotlib.cbook as cbook
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            out["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    except Exception:
        pass
    return out


def proxy_faces(engine_name: str, n: int, seed: int = 0, size: int = 256) -> list[np.ndarray]:
    """``n`` photo-style proxy faces of a built-in painted engine (alter, morph)."""
    from toolchain.engines.registry import create_engine
    from toolchain.proxy import render_photo
    engine = create_engine(engine_name)
    vectors = engine.sample(n, seed)
    return [render_photo(engine, v, seed * 100_003 + i, size)[0] for i, v in enumerate(vectors)]


def engine_renders(engine_name: str, n: int, seed: int = 0, size: int = 256) -> list[np.ndarray]:
    from toolchain.engines.registry import create_engine
    engine = create_engine(engine_name)
    return list(engine.render(engine.sample(n, seed + 7), size=size).images)


def paste(face: np.ndarray, background: np.ndarray, width: int, xy: tuple[int, int]) -> np.ndarray:
    """``background`` with ``face`` resized to ``width`` pixels wide pasted at ``xy`` (top-left)."""
    f = Image.fromarray(face).resize((width, max(1, round(width * face.shape[0] / face.shape[1]))), Image.LANCZOS)
    bg = Image.fromarray(background).copy()
    bg.paste(f, xy)
    return np.asarray(bg)


def scene_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A soft, non-face background: a gradient with low-frequency blotches."""
    g = gradient(rng)
    g = np.asarray(Image.fromarray(g).resize((w, h), Image.BILINEAR)).astype(np.float32)
    b = noise_blobs(rng)
    b = np.asarray(Image.fromarray(b).resize((w, h), Image.BILINEAR)).astype(np.float32)
    return np.clip(0.7 * g + 0.3 * b, 0, 255).astype(np.uint8)


def positives(per_engine: int = 20, seed: int = 0, engines: tuple[str, ...] = ("alter", "morph")) -> Iterator[Sample]:
    rng = np.random.default_rng([seed, 99])
    for name, img in portraits().items():
        yield Sample(name, "portrait", _rgb(img), 1)
    for eng in engines:
        for i, img in enumerate(proxy_faces(eng, per_engine, seed)):
            yield Sample(f"proxy_{eng}/{i}", f"proxy_{eng}", img, 1)
            if i % 2 == 0:  # the same face smaller, somewhere in a bigger picture
                h, w = int(rng.choice([480, 640])), int(rng.choice([640, 800]))
                width = int(rng.integers(110, 220))
                xy = (int(rng.integers(0, w - width)), int(rng.integers(0, h - width)))
                yield Sample(f"proxy_{eng}_pasted/{i}", f"proxy_{eng}_pasted", paste(img, scene_background(rng, h, w), width, xy), 1)
        for i, img in enumerate(engine_renders(eng, max(2, per_engine // 2), seed)):
            yield Sample(f"render_{eng}/{i}", f"render_{eng}", _rgb(img), 1)


# The head on the engines' 256 px design canvas (toolchain/engines/face_art.py: top 62, chin 184,
# midline 128): this square around it is "the face" a group scene pastes at a given width.
HEAD_BOX = (56, 52, 200, 196)


def group_scene(seed: int = 0, n_faces: int = 8, size: tuple[int, int] = (900, 1280),
                widths: tuple[int, int] = (40, 160)) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Proxy heads (:data:`HEAD_BOX` of a proxy photo) pasted at ``widths`` px, evenly spread, into a
    ``size`` (h, w) background, without overlaps.

    Returns:
        The image and ``(x, y, width)`` of every pasted head.
    """
    rng = np.random.default_rng([seed, 1234])
    h, w = size
    img = scene_background(rng, h, w)
    faces = proxy_faces("alter", n_faces, seed + 5)
    placed: list[tuple[int, int, int]] = []
    ws = np.linspace(widths[0], widths[1], n_faces).round().astype(int)
    for face, width in zip(faces, ws):
        face = face[HEAD_BOX[1]:HEAD_BOX[3], HEAD_BOX[0]:HEAD_BOX[2]]
        for _ in range(200):
            x, y = int(rng.integers(0, w - width)), int(rng.integers(0, h - width))
            if all(x + width <= px or px + pw <= x or y + width <= py or py + pw <= y for px, py, pw in placed):
                break
        img = paste(face, img, int(width), (x, y))
        placed.append((x, y, int(width)))
    return img, placed
