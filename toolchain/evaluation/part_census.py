"""Which semantic parts a generator draws, and how varied their colours are, next to the photos it learned
from. Face-likeness says *whether* samples pass for faces; the census says which parts are missing or drawn
on every sample (e.g. no eyes and mouths, glasses on every head) and whether colour varies per sample."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

MIN_SHARE = 0.002   # a part counts as drawn when it holds at least this share of the pixels (8 px at 64 px)


def census(images: np.ndarray, parts: np.ndarray, names: Sequence[str], min_share: float = MIN_SHARE) -> dict[str, Any]:
    """Per part: ``present`` (share of images where it holds >= ``min_share`` of the pixels) and
    ``colour_spread`` (over the images where present, the standard deviation of the part's mean colour, averaged
    over R, G, B, in 0-255 units; None when drawn in fewer than 2 images).

    images: uint8 [N, H, W, 3]; parts: int [N, H, W] part indices into ``names``.
    """
    n, h, w = parts.shape
    out: dict[str, Any] = {"n": int(n), "min_share": min_share, "parts": {}}
    flat_img = images.reshape(n, h * w, 3).astype(np.float64)
    flat_parts = parts.reshape(n, h * w)
    for k, name in enumerate(names):
        mask = flat_parts == k
        count = mask.sum(1)
        drawn = count >= max(1, min_share * h * w)
        means = (flat_img * mask[..., None]).sum(1)[drawn] / count[drawn, None]
        spread = float(means.std(0).mean()) if len(means) >= 2 else None
        out["parts"][name] = {"present": float(drawn.mean()), "colour_spread": spread}
    return out


@torch.no_grad()
def generator_parts(generator_path: str | Path, n: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``n`` samples of a generator (truncation 1, fixed noise): uint8 images, the argmax of its final
    segmentation (what the discriminator and the sample grids see) and the part names."""
    from ..generators.io import load_generator
    from ..torch_utils import signed_to_uint8
    g, _ = load_generator(generator_path)
    z = torch.randn(n, g.cfg.style_dim, generator=torch.Generator().manual_seed(seed))
    images, parts = [], []
    for chunk in z.split(50):
        o = g.sample(chunk, noise_mode="const")
        images += list(signed_to_uint8(o.image))
        parts.append(o.seg.argmax(1).numpy())
    return np.stack(images), np.concatenate(parts), g.cfg.parts
