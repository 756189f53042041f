"""Semantic augmentation (paper Eq. 7): ``w_k ← (1 − λ)·w_k + λ·n`` on the W+ rows of chosen parts.

``n`` is a random code in W space (a mapped z), drawn independently per augmented copy and per part and
written to both the part's rows (shape and texture). Strengths are given per part, by generator part or
by schema / mask label (``beard`` means the generator part that draws beards). The paper: 10 copies,
λ = 1 background, 0.3 hair, 0.06 glasses. Noise is seeded per source index, so a rerun reproduces
the same copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..generators.generator import SemanticGenerator
from .strengths import PAPER_STRENGTHS, resolve_part_names


@dataclass(frozen=True)
class AugmentConfig:
    k: int = 10
    strengths: dict[str, float] = field(default_factory=lambda: dict(PAPER_STRENGTHS))
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "strengths": dict(self.strengths), "seed": self.seed}


def resolve_parts(g: SemanticGenerator, strengths: dict[str, float]) -> dict[str, float]:
    """Names (generator parts or mask labels) -> {generator part: λ}."""
    return resolve_part_names(g.cfg, strengths)


@torch.no_grad()
def augment(g_noise: SemanticGenerator, wplus: torch.Tensor, strengths: dict[str, float], k: int,
            generator: torch.Generator) -> torch.Tensor:
    """``wplus`` [n_latent, D] -> ``k`` augmented copies [k, n_latent, D]; rows of parts not named are untouched
    (bit for bit). ``g_noise`` maps the noise codes (G_real: the copies are synthesised by it)."""
    cfg = g_noise.cfg
    parts = resolve_parts(g_noise, strengths)
    slices = cfg.latent_slices()
    dev = wplus.device
    out = wplus[None].repeat(k, 1, 1)
    for part, lam in parts.items():  # dict order is fixed, so the noise stream is too
        z = torch.randn(k, cfg.style_dim, generator=generator).to(dev)
        n = g_noise.mapping(z)[:, None]
        rows = slices[part]
        out[:, rows] = (1 - lam) * out[:, rows] + lam * n
    return out
