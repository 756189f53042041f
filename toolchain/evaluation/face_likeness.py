"""Face-likeness: does a generator make faces? The share of images in which the SDK's own face finder
(BlazeFace + the human-face checks: keypoint layout, skin, face-mesh presence) finds a face.

Generated images are small (32-64 px) and BlazeFace wants faces of ~100 px, so every image is upscaled
to :data:`UPSCALE_PX` first, the same way for generated images and for the references they are compared
with. The share means little alone; it is read between two references measured the same way:

* the **ceiling**: held-out photos of the domain the generator learned (the proxy photos), resized to
  the generator's own size first, so resolution costs both sides the same;
* the **floor**: noise images of that size (smoothed random colour fields), where a face is a false
  positive of the finder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from PIL import Image

UPSCALE_PX = 256


@dataclass
class FaceShare:
    found: int
    n: int

    @property
    def rate(self) -> float:
        return self.found / self.n if self.n else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "rate": self.rate}


class FaceCounter:
    """Counts images with a face, with one face finder reused for every call (MediaPipe models load once).

    Args:
        model_for: ``kind -> path`` of the face models (``short``, ``mesh``); default: the machine's cache
            (:func:`sdk_python.detector_models.resolve_model`), which raises ``DetectorModelUnavailableError``
            with instructions when a model is missing.
        upscale_px: side the images are resized to before detection.
    """

    def __init__(self, model_for: Optional[Callable[[str], Path]] = None, upscale_px: int = UPSCALE_PX):
        from sdk_python.detector_models import resolve_model
        from sdk_python.face_finder import FaceFinder
        from sdk_python.native_logs import silence_native_logs
        silence_native_logs()
        self.upscale_px = upscale_px
        self.finder = FaceFinder("short", model_for or resolve_model, checks=True)

    def has_face(self, image: np.ndarray) -> bool:
        big = Image.fromarray(np.ascontiguousarray(image)).convert("RGB").resize((self.upscale_px,) * 2, Image.BICUBIC)
        return bool(self.finder.find(np.asarray(big)).faces)

    def count(self, images: Iterable[np.ndarray]) -> FaceShare:
        found = n = 0
        for img in images:
            found += self.has_face(img)
            n += 1
        return FaceShare(found, n)

    def close(self) -> None:
        self.finder.close()

    def __enter__(self) -> "FaceCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def face_model_paths(fetch: bool = True) -> Callable[[str], Path]:
    """The face finder's models (short-range detector, face mesh): cached, else fetched from the pinned
    mediapipe wheel as the export stage does (unless ``fetch`` is off, then missing ones raise
    ``DetectorModelUnavailableError`` with instructions)."""
    from sdk_python.detector_models import fetch_model, find_model, resolve_model
    paths = {k: find_model(k) or (fetch_model(k) if fetch else resolve_model(k)) for k in ("short", "mesh")}
    return paths.__getitem__


def at_size(images: Iterable[np.ndarray], size: int) -> Iterable[np.ndarray]:
    """Each image box-filtered to ``size`` px (what a generator of that size could at best reproduce)."""
    for img in images:
        yield np.asarray(Image.fromarray(img).convert("RGB").resize((size, size), Image.BOX))


def noise_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour fields: blobs of colour at a few scales, no structure a face detector should accept."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        acc = np.zeros((size, size, 3), np.float32)
        for cells in (2, 4, 8):
            coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
            acc += np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
        out.append(np.clip(acc / 3, 0, 255).astype(np.uint8))
    return out


def folder_images(root: str | Path, limit: Optional[int] = None) -> list[np.ndarray]:
    files = sorted(p for p in (Path(root) / "images").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    out = []
    for p in files[:limit]:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out
