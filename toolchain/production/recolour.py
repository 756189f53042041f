"""Part colour transfer (ours, not the paper's): each realistic face of a pair takes the mean colour of named parts
(hair, skin) from its source render.

Why: G_real can only draw the colours its photos taught it, and G_avatar's inversion loses unusual ones on the way
(pink or grey hair came back blond or brown), so the realistic half of a pair showed another hair colour than the
vector it is labelled with. The paper's colour-matching loss ties the two generators' colours together in training;
this moves each part's colour where the label says, after synthesis, inside G_real's own soft part map: every pixel
``x`` becomes ``x + p(x) * (c_render - c_face)``, with ``p`` the part's probability and ``c`` the mean colours, so
shading and texture stay and pixels outside the part do not move.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import AvatarToolError
from ..render.folder import RenderFolder
from .render_pixels import load_target, part_map

# a part with fewer pixels than this (in the render, or of probability in the face) is left as it is: its mean
# colour would be a few anti-aliased edge pixels
MIN_PIXELS = 4.0


class RenderColours:
    """The mean RGB of chosen generator parts in each source render, at the generator's size: ``colours(i)`` is a
    ``[len(parts), 3]`` float array with NaN rows for parts the render (nearly) lacks."""

    def __init__(self, folder: RenderFolder, gen_cfg, part_indices: Sequence[int]):
        if not folder.has_masks:
            raise AvatarToolError(f"the renders in {folder.root} have no masks, which the colour transfer needs to find "
                                  "their parts; set pairs.recolour=none for an engine that draws no masks")
        self.folder, self.size, self.parts = folder, gen_cfg.size, list(part_indices)
        self.lut = np.array(gen_cfg.label_to_part(), np.int64)

    def __call__(self, i: int) -> np.ndarray:
        mask = self.folder.mask_path(i)
        if mask is None:
            raise AvatarToolError(f"render {i} of {self.folder.root} has lost its mask: render the folder again")
        image = load_target(self.folder.image_path(i), self.size).astype(np.float64)
        pm = part_map(mask, self.size, self.lut)
        out = np.full((len(self.parts), 3), np.nan)
        for row, k in enumerate(self.parts):
            hit = pm == k
            if hit.sum() >= MIN_PIXELS:
                out[row] = image[hit].mean(0)
        return out


def transfer_colours(images: np.ndarray, probs: np.ndarray, part_indices: Sequence[int],
                     targets: np.ndarray) -> np.ndarray:
    """uint8 images [B,H,W,3] with part probabilities [B,parts,H,W] -> uint8 images whose named parts have moved to
    ``targets`` [B,len(part_indices),3] (NaN: leave that part). Parts are moved one after the other, in order."""
    out = images.astype(np.float64)
    for b in range(len(out)):
        for row, k in enumerate(part_indices):
            target = targets[b, row]
            weight = probs[b, k].astype(np.float64)
            if np.isnan(target).any() or weight.sum() < MIN_PIXELS:
                continue
            current = (out[b] * weight[..., None]).sum((0, 1)) / weight.sum()
            out[b] += weight[..., None] * (target - current)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
