"""Fitting probe: can a generator configuration draw a handful of its own training photos at all?

A GAN that makes no faces may lack signal (the discriminator's gradient) or capacity and fitting speed (the
architecture cannot draw the photos within the steps it gets). The probe takes the second question alone:
it fits the generator *and one free W+ code per photo* to ``n`` photos and their masks by direct regression
(image L1 + a part-weighted mask cross-entropy; a generative latent optimisation, no discriminator, no prior to
match). What it cannot
reconstruct of photos it has seen at every step, a GAN of the same size and step count will not sample.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..torch_utils import signed_to_uint8, uint8_to_signed
from .config import GeneratorConfig
from .generator import SemanticGenerator
from .losses import SEG_LOGIT_SCALE, inverse_share_weights


@dataclass
class FitCheckpoint:
    step: int
    image_l1: float                      # mean |fit - photo| over pixels, images in [-1, 1]
    part_iou: dict[str, float]           # per generator part: IoU of the fit's segmentation with the photos' masks
    images: np.ndarray                   # uint8 [n, size, size, 3], the fits (noise fixed)
    seconds: float


def _part_iou(pred: torch.Tensor, true: torch.Tensor, parts: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for k, name in enumerate(parts):
        p, t = pred == k, true == k
        union = int((p | t).sum())
        out[name] = float((p & t).sum()) / union if union else float("nan")
    return out


def fit_photos(cfg: GeneratorConfig, images: np.ndarray, masks: np.ndarray, steps: int, *, at: tuple[int, ...] = (),
               lr: float = 0.005, code_lr: float = 0.05, batch: int = 16, seed: int = 0, seg_weight: float = 0.1
               ) -> list[FitCheckpoint]:
    """Fit a fresh ``cfg`` generator and per-photo W+ codes to ``images`` (uint8 [n,s,s,3] at ``cfg.size``) and
    ``masks`` (part indices [n,s,s]); record the fit after each step in ``at`` (and the last)."""
    torch.manual_seed(seed)
    x = uint8_to_signed(torch.from_numpy(images))
    m = torch.from_numpy(masks).long()
    # small parts (eyes and mouth are a few pixels) would be free to drop under a plain mask loss: weigh each part by
    # its inverse pixel share, so a part the generator cannot draw shows as a low IoU, not as a rounding error
    class_weight = inverse_share_weights(m, cfg.n_parts)
    G = SemanticGenerator(cfg)
    with torch.no_grad():
        w0 = G.mapping(torch.randn(len(x), cfg.style_dim))
    codes = torch.nn.Parameter(w0[:, None].repeat(1, cfg.n_latent, 1).clone())
    opt = torch.optim.Adam([{"params": G.parameters()}, {"params": [codes], "lr": code_lr}], lr=lr, betas=(0.5, 0.99))
    marks = sorted(set(at) | {steps})
    checkpoints, t0 = [], time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen)
        out = G.synthesize(codes[idx])
        loss = (out.image - x[idx]).abs().mean() + seg_weight * torch.nn.functional.cross_entropy(
            out.seg * SEG_LOGIT_SCALE, m[idx], weight=class_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in marks:
            with torch.no_grad():
                outs = [G.synthesize(c, noise_mode="const") for c in codes.split(64)]
                fit = torch.cat([o.image for o in outs])
                seg = torch.cat([o.seg for o in outs]).argmax(1)
            checkpoints.append(FitCheckpoint(step=step, image_l1=float((fit - x).abs().mean()),
                                             part_iou=_part_iou(seg, m, cfg.parts), images=signed_to_uint8(fit),
                                             seconds=time.perf_counter() - t0))
    return checkpoints
