"""Differentiable augmentation of what the discriminator sees (Zhao et al., "Differentiable Augmentation for
Data-Efficient GAN Training", NeurIPS 2020), for GANs trained on a few thousand images.

Every discriminator input, real and generated, in the D step and in the G step, goes through the same
random policy; the ops are plain tensor arithmetic and indexing, so the generator's gradient flows
through them. Colour ops touch the image only; geometric ops (translation, cutout) move the image and its
part mask together, so the dual-branch discriminator still sees a mask that matches its image. R1 is taken
on the un-augmented real images (the trainer's business, not this module's).

Policies are comma lists of ``color``, ``translation``, ``cutout`` (the paper's recommendation for
100-5k images is all three); an empty policy is the identity.
"""
from __future__ import annotations

import torch

from .layers import batch_noise


def _uniform(b: int, *tail: int, device) -> torch.Tensor:
    """U[0, 1) per sample; under data parallelism this rank's rows of the global batch's draw (layers.noise_rows),
    so a rank augments its share exactly as one process augments the whole batch."""
    return batch_noise(b, tail, device, torch.float32, draw=torch.rand)


def _integers(b: int, low: int, high: int, device) -> torch.Tensor:
    """Integers in [low, high) per sample, from :func:`_uniform`."""
    return (low + (_uniform(b, device=device) * (high - low)).floor().clamp(max=high - low - 1)).long()

OPS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    ops = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in ops if p not in OPS]
    if bad:
        raise ValueError(f"unknown augmentation {bad}: choose from {', '.join(OPS)}")
    return ops


def _color(img: torch.Tensor) -> torch.Tensor:
    b = img.shape[0]
    r = lambda: _uniform(b, 1, 1, 1, device=img.device).to(img.dtype)  # noqa: E731
    img = img + (r() - 0.5)                                        # brightness
    mean = img.mean(1, keepdim=True)
    img = (img - mean) * (r() * 2) + mean                          # saturation
    mean = img.mean((1, 2, 3), keepdim=True)
    return (img - mean) * (r() + 0.5) + mean                       # contrast


def _translate(x: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
    """Shift each sample by (ty, tx) whole pixels; uncovered pixels take ``fill`` ([C] values, default 0)."""
    b, c, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1) - ty.view(b, 1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w) - tx.view(b, 1, 1)
    inside = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)            # [B, 1, H, W]
    flat = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(b, 1, h * w).expand(-1, c, -1)
    moved = x.flatten(2).gather(2, flat).view(b, c, h, w)
    background = x.new_zeros(1, c, 1, 1) if fill is None else fill.to(x.dtype).view(1, c, 1, 1)
    return torch.where(inside, moved, background)


def _cutout_keep(b: int, h: int, w: int, device, ratio: float = 0.5) -> torch.Tensor:
    """[B, 1, H, W] 1 outside one random square of ``ratio`` x the side per sample, 0 inside."""
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = _integers(b, 0, h + (1 - ch % 2), device).view(b, 1, 1)
    cx = _integers(b, 0, w + (1 - cw % 2), device).view(b, 1, 1)
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return (~inside).unsqueeze(1)


def diff_augment(img: torch.Tensor, seg: torch.Tensor | None, ops: tuple[str, ...],
                 translation_ratio: float = 0.125) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``ops`` with fresh random parameters per sample (from torch's global generator; under data
    parallelism inside ``layers.noise_rows``, the global batch's draws).

    Args:
        img: ``[B, 3, H, W]`` in [-1, 1].
        seg: ``[B, parts, H, W]`` one-hot-like in [-1, 1] (part 0 the background), or None.
        ops: from :func:`parse_policy`.
        translation_ratio: the largest shift as a share of the side (DiffAugment: 1/8).
    Returns:
        The augmented image and mask (the mask moved and cut like the image; its colours untouched).
    """
    if "color" in ops:
        img = _color(img)
    if "translation" in ops:
        b, _, h, w = img.shape
        sy, sx = int(h * translation_ratio + 0.5), int(w * translation_ratio + 0.5)
        ty = _integers(b, -sy, sy + 1, img.device)
        tx = _integers(b, -sx, sx + 1, img.device)
        img = _translate(img, ty, tx, None)
        if seg is not None:
            # what moves in from outside is background, as in a wider photo
            bg = torch.full((seg.shape[1],), -1.0, device=seg.device)
            bg[0] = 1.0
            seg = _translate(seg, ty, tx, bg)
    if "cutout" in ops:
        keep = _cutout_keep(img.shape[0], img.shape[2], img.shape[3], img.device).to(img.dtype)
        img = img * keep
        if seg is not None:
            seg = seg * keep.to(seg.dtype)
    return img, seg

