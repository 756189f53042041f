"""Pictures: sample grids (image over segmentation) and the dual-domain grid (paper Fig. 4): the same
latents through G_real and G_avatar, with both segmentations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..torch_utils import signed_to_uint8
from .generator import SemanticGenerator

PALETTE = np.array([[0, 0, 0], [230, 180, 150], [120, 70, 30], [220, 40, 60], [60, 160, 220], [250, 220, 60],
                    [40, 180, 90], [170, 90, 200], [255, 140, 0], [90, 90, 160], [0, 200, 200], [200, 200, 200],
                    [255, 100, 180]], np.uint8)


def _img(x: torch.Tensor) -> np.ndarray:
    return signed_to_uint8(x)


def _seg(probs: torch.Tensor) -> np.ndarray:
    lab = probs.argmax(1).cpu().numpy()
    return PALETTE[lab % len(PALETTE)]


def _tile(rows: list[np.ndarray], cols: int, scale: int, pad: int = 2) -> np.ndarray:
    """rows: each [N, H, W, 3]; lays out N items in ``cols`` columns, each item a vertical stack of rows."""
    n, h, w = rows[0].shape[:3]
    cells = np.concatenate(rows, axis=1)  # [N, H*len(rows), W, 3]
    cells = cells.repeat(scale, 1).repeat(scale, 2)
    ch, cw = cells.shape[1] + pad, cells.shape[2] + pad
    nrows = -(-n // cols)
    out = np.full((nrows * ch + pad, cols * cw + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[pad + r * ch: pad + r * ch + cells.shape[1], pad + c * cw: pad + c * cw + cells.shape[2]] = cells[i]
    return out


def _scale(size: int) -> int:
    return max(1, 128 // size)


@torch.no_grad()
def sample_grid(g: SemanticGenerator, z: torch.Tensor, truncation: float = 1.0, mean_w: torch.Tensor | None = None,
                cols: int = 8) -> np.ndarray:
    """Images with their segmentation (final, argmax) under them."""
    was = g.training
    g.eval()
    o = g.sample(z, truncation=truncation, mean_w=mean_w, noise_mode="const")
    g.train(was)
    seg = F.interpolate(o.seg.float(), size=o.image.shape[-2:], mode="nearest")
    return _tile([_img(o.image), _seg(seg)], cols, _scale(g.cfg.size))


def sample_grid_images(grid: np.ndarray, size: int, pad: int = 2) -> list[np.ndarray]:
    """The samples of a :func:`sample_grid` picture at their own ``size`` (uint8 [size, size, 3] each), read back
    from its cells: training keeps a grid per sample step but the weights of the last step only."""
    scale = _scale(size)
    cell_h, cell_w = 2 * size * scale + pad, size * scale + pad
    rows, cols = (grid.shape[0] - pad) // cell_h, (grid.shape[1] - pad) // cell_w
    if rows < 1 or cols < 1 or (grid.shape[0] - pad) % cell_h or (grid.shape[1] - pad) % cell_w:
        raise ValueError(f"a {grid.shape[1]}x{grid.shape[0]} picture is not a sample grid of {size} px images")
    out = []
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * cell_h, pad + c * cell_w
            img = grid[top:top + size * scale:scale, left:left + size * scale:scale, :3]
            if not (img == 255).all():      # an unused cell of the last row
                out.append(np.ascontiguousarray(img))
    return out


@torch.no_grad()
def dual_domain_grid(g_real: SemanticGenerator, g_avatar: SemanticGenerator, z: torch.Tensor, truncation: float = 0.7,
                     cols: int = 8) -> np.ndarray:
    """Per latent, top to bottom: G_real image, its segmentation, G_avatar image, its segmentation."""
    rows = []
    for g in (g_real, g_avatar):
        g.eval()
        mw = g.mean_latent(10_000) if truncation != 1.0 else None
        o = g.sample(z, truncation=truncation, mean_w=mw, noise_mode="const")
        rows += [_img(o.image), _seg(F.interpolate(o.seg.float(), size=o.image.shape[-2:], mode="nearest"))]
    return _tile(rows, cols, _scale(g_real.cfg.size))
