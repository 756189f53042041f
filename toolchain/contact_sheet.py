"""Contact sheets: a grid of thumbnails with their indices, for people to look at."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str] | None = None, columns: int = 8,
                  thumb: int = 128, pad: int = 4, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Lay ``images`` (uint8 HxWx3) out in a grid, each scaled to ``thumb`` px with an optional caption."""
    if not len(images):
        raise ValueError("contact_sheet needs at least one image")
    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    caption_h = 14 if labels else 0
    cell_w, cell_h = thumb + pad, thumb + pad + caption_h
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), background)
    draw = ImageDraw.Draw(sheet)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        x, y = pad + c * cell_w, pad + r * cell_h
        sheet.paste(Image.fromarray(img).resize((thumb, thumb), Image.LANCZOS), (x, y))
        if labels:
            draw.text((x + 2, y + thumb + 1), labels[i][: thumb // 6], fill=(60, 60, 60))
    return sheet


def write_contact_sheet(out_path: Path, indexed_paths: Sequence[tuple[int, Path]]) -> None:
    """Sheet of the image files that exist among ``indexed_paths``, captioned ``#index``; written atomically."""
    from .atomic_io import save_png_atomic
    picks = [(i, p) for i, p in indexed_paths if p.exists()]
    if not picks:
        return
    images = []
    for _, p in picks:
        with Image.open(p) as im:
            images.append(np.asarray(im.convert("RGB")))
    save_png_atomic(out_path, np.asarray(contact_sheet(images, labels=[f"#{i}" for i, _ in picks])))
