"""(image, mask) folders for GAN training: ``images/*.{png,jpg}`` + ``masks/*.png`` label maps (our render
folders and unlabelled photo-proxy sets; users' own data in the same layout). Loaded once into memory at
the generator's size; mask labels mapped to generator parts with the config's ``label_to_part``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AvatarToolError
from .config import GeneratorConfig

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp")


def load_mask_folder(root: str | Path, cfg: GeneratorConfig, need_masks: bool = True, limit: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """-> (uint8 images [N, S, S, 3], int64 part maps [N, S, S] or None when the folder has no masks)."""
    from ..proxy.eval_set import assert_not_eval_set
    root = Path(root)
    assert_not_eval_set(root)
    files = sorted(p for p in (root / "images").glob("*") if p.suffix.lower() in IMAGE_EXT)[:limit]
    if not files:
        raise AvatarToolError(f"{root}/images holds no images (expected a render folder or an unlabelled proxy set)")
    has_masks = (root / "masks").is_dir() and all((root / "masks" / f"{p.stem}.png").exists() for p in files)
    if need_masks and not has_masks:
        raise AvatarToolError(f"{root}: every image needs masks/<name>.png (part label maps) for this training")
    lut = np.array(cfg.label_to_part(), np.int64) if has_masks else None
    s = cfg.size
    images = np.empty((len(files), s, s, 3), np.uint8)
    masks = np.empty((len(files), s, s), np.int64) if has_masks else None
    for i, p in enumerate(files):
        images[i] = np.asarray(Image.open(p).convert("RGB").resize((s, s), Image.BOX))
        if has_masks:
            m = np.asarray(Image.open(root / "masks" / f"{p.stem}.png"))
            if m.max() >= len(lut):
                raise AvatarToolError(f"{root}/masks/{p.stem}.png has label {m.max()}, the config knows {len(lut)} labels")
            masks[i] = lut[np.asarray(Image.fromarray(m.astype(np.uint8)).resize((s, s), Image.NEAREST))]
    return images, masks
