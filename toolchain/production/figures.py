"""The paired-data picture (paper Fig. 5): per source, render | reconstruction (G_avatar) | realistic
(G_real) | augmented copies. Rebuilt from the dataset alone (latents) plus G_avatar and the renders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..atomic_io import save_png_atomic
from ..data.paired_dataset import PairedDataset
from ..generators.generator import SemanticGenerator
from ..render.folder import image_path
from ..torch_utils import signed_to_uint8


def pairs_grid(dataset_dir: str | Path, g_avatar: SemanticGenerator, render_dir: str | Path, n_sources: int = 8,
               n_aug: int = 3, scale: int = 3, out: str | Path | None = None) -> Path:
    ds = PairedDataset.open(dataset_dir, verify=False)
    if ds.latents is None:
        raise ValueError(f"{dataset_dir} stores no latents")
    by_source: dict[int, dict[int, int]] = {}
    for row, p in enumerate(ds.provenance):
        by_source.setdefault(p["source"], {})[p["aug"]] = row
    sources = sorted(by_source)[:n_sources]
    n_aug = min(n_aug, max(len(by_source[i]) for i in sources) - 1)   # no empty columns when k < n_aug
    s = g_avatar.cfg.size
    with torch.no_grad():
        codes = torch.from_numpy(ds.latents[[by_source[i][0] for i in sources]])
        recon = signed_to_uint8(g_avatar.synthesize(codes, "const").image)
    cols = 3 + n_aug
    cell, pad, head = s * scale, 4, 14
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, len(sources) * (cell + pad) + pad + head), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(["render", "reconstruction", "realistic"] + [f"augmented {j}" for j in range(1, n_aug + 1)]):
        draw.text((pad + c * (cell + pad), 2), name, fill="black")
    for r, i in enumerate(sources):
        render = np.asarray(Image.open(image_path(Path(render_dir), i)).convert("RGB").resize((s, s), Image.BOX))
        tiles = [render, recon[r], ds.images[by_source[i][0]]] + \
                [ds.images[by_source[i][j]] for j in range(1, n_aug + 1) if j in by_source[i]]
        for c, t in enumerate(tiles):
            sheet.paste(Image.fromarray(t).resize((cell, cell), Image.NEAREST),
                        (pad + c * (cell + pad), head + pad + r * (cell + pad)))
    path = Path(out) if out else Path(dataset_dir) / "pairs_grid.png"
    save_png_atomic(path, np.asarray(sheet))
    return path
