"""Face photos with part masks for training G_real: our image+mask folder as it is, or CelebAMask-HQ's
own layout converted to it (its label names mapped to our parts).

CelebAMask-HQ (Lee et al., CVPR 2020) ships ``CelebA-HQ-img/<i>.jpg`` and, per image, one binary PNG per
label in ``CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<label>.png``. Labels are painted in the
dataset's own order, later ones over earlier ones, as its published preprocessing does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..atomic_io import save_png_atomic
from ..errors import AvatarToolError
from .config import ENGINE_LABELS
from .mask_folder import IMAGE_EXT

CELEBA_IMAGES = "CelebA-HQ-img"
CELEBA_MASKS = "CelebAMask-HQ-mask-anno"
# The dataset's painting order, and where each label goes among our parts (ENGINE_LABELS).
CELEBA_TO_PART = {
    "skin": "skin", "nose": "nose", "eye_g": "glasses", "l_eye": "eyes", "r_eye": "eyes", "l_brow": "brows",
    "r_brow": "brows", "l_ear": "skin", "r_ear": "skin", "mouth": "mouth", "u_lip": "mouth", "l_lip": "mouth",
    "hair": "hair", "hat": "hair", "ear_r": "skin", "neck_l": "clothes", "neck": "skin", "cloth": "clothes",
}


def is_celebamask(root: Path) -> bool:
    return (root / CELEBA_IMAGES).is_dir() and (root / CELEBA_MASKS).is_dir()


def celeba_label_map(mask_dir: Path, index: int, size: int) -> np.ndarray:
    """Our part label map ``[size, size]`` (uint8, values index ENGINE_LABELS) for CelebAMask-HQ image ``index``."""
    out = np.zeros((size, size), np.uint8)
    folder = mask_dir / str(index // 2000)
    found = False
    for label, part in CELEBA_TO_PART.items():
        p = folder / f"{index:05d}_{label}.png"
        if not p.is_file():
            continue
        found = True
        with Image.open(p) as im:
            m = np.asarray(im.convert("L").resize((size, size), Image.NEAREST)) > 127
        out[m] = ENGINE_LABELS.index(part)
    if not found:
        raise AvatarToolError(f"{folder} has no masks for image {index} ({index:05d}_<label>.png)")
    return out


def prepare_photo_folder(source: Path, out: Path, size: int,
                         progress: Callable[[int, int], None] | None = None) -> Path:
    """A folder ``gan-train`` can read: ``source`` itself when it is our image+mask layout, else the
    CelebAMask-HQ layout converted into ``out`` (resumable: finished pairs are skipped).

    Raises:
        AvatarToolError: ``source`` is neither layout, or has images without masks.
    """
    source = Path(source)
    if not source.is_dir():
        raise AvatarToolError(f"--real-images {source}: no such folder")
    if is_celebamask(source):
        imgs = sorted((p for p in (source / CELEBA_IMAGES).iterdir() if p.suffix.lower() in IMAGE_EXT),
                      key=lambda p: (len(p.stem), p.stem))
        if not imgs:
            raise AvatarToolError(f"{source / CELEBA_IMAGES} holds no images")
        for k, p in enumerate(imgs):
            if not p.stem.isdigit():
                raise AvatarToolError(f"{p}: CelebAMask-HQ image names are numbers (0.jpg, 1.jpg, ...)")
            img_out, mask_out = out / "images" / f"{p.stem}.png", out / "masks" / f"{p.stem}.png"
            if not (img_out.is_file() and mask_out.is_file()):
                save_png_atomic(mask_out, celeba_label_map(source / CELEBA_MASKS, int(p.stem), size))
                with Image.open(p) as im:
                    save_png_atomic(img_out, np.asarray(im.convert("RGB").resize((size, size), Image.BOX)))
            if progress:
                progress(k + 1, len(imgs))
        return out
    images, masks = source / "images", source / "masks"
    if images.is_dir() and masks.is_dir():
        files = [p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXT]
        missing = [p.name for p in files if not (masks / f"{p.stem}.png").is_file()]
        if not files:
            raise AvatarToolError(f"{images} holds no images")
        if missing:
            raise AvatarToolError(f"{source}: {len(missing)} image(s) have no masks/<name>.png, e.g. {missing[0]}")
        return source
    raise AvatarToolError(f"--real-images {source}: expected images/ + masks/ (part label maps, values "
                          f"{', '.join(f'{i}={n}' for i, n in enumerate(ENGINE_LABELS))}) or CelebAMask-HQ's "
                          f"{CELEBA_IMAGES}/ + {CELEBA_MASKS}/")
