"""Photo encoder for reconstruction-aided GAN training (VAE-GAN, Larsen et al. 2016).

A GAN on 800 photos and 1000 CPU steps learns colours and head silhouettes, not eyes or mouths: the
discriminator's gradient is the generator's only signal about a face's inside. Encoding a real (photo,
mask) to a posterior over the generator's z and asking ``G.sample(z)`` to reconstruct it gives every
pixel its own supervision; the KL term keeps the posteriors near the prior, so what the generator learns
to draw from encoded photos it also draws from random z. The encoder is a training aid only: sampling,
inversion and the pairs use the generator as before.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import GeneratorConfig
from .discriminator import conv_branch
from .layers import EqualLinear


class PhotoEncoder(nn.Module):
    """(image [B,3,s,s], one-hot mask [B,parts,s,s] in [-1,1]) -> (mu, logvar) of z, each [B, style_dim]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.trunk = conv_branch(cfg, 3 + cfg.n_parts)
        c4 = cfg.channels(4)
        self.head = EqualLinear(c4 * 16, 2 * cfg.style_dim)

    def forward(self, img: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.trunk(torch.cat((img, seg), 1)).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-8.0, 4.0)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over z's dimensions, batch mean."""
    return 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(1).mean()
