"""Reading a render's image and mask at a generator's size, as the inversion and the colour transfer both need them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AvatarToolError


def load_target(path: Path, size: int) -> np.ndarray:
    """A render's RGB image as uint8 [size, size, 3], box-filtered to the generator's size."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB").resize((size, size), Image.BOX))  # a writable copy for torch


def part_map(path: Path, size: int, lut: np.ndarray) -> np.ndarray:
    """A render's mask label map at ``size`` px as generator part indices (``lut``: label -> part, from
    ``GeneratorConfig.label_to_part``), the way the generators' training reads masks."""
    with Image.open(path) as im:
        labels = np.asarray(im)
    if labels.max() >= len(lut):
        raise AvatarToolError(f"{path} has label {labels.max()}; the generator knows {len(lut)} mask labels")
    return lut[np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((size, size), Image.NEAREST))]
