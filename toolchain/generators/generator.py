"""SemanticStyleGAN generator (Shi et al., CVPR 2022), re-implemented from the paper and the public
architecture facts (docs/semantic-stylegan-spec.md).

    z --mapping--> w --mix/expand--> per-part layer codes
    coords --Fourier features--> local generator k --> (features_k, pseudo-depth_k)   for each part k
    softmax over depths (transparent parts handled apart) --> coarse segmentation + composited features
    render net --> RGB image [-1, 1] and segmentation (coarse segmentation + residual)

Use ``sample(z)`` for images from noise, ``synthesize(wplus)`` for W+ latents (inversion, editing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import GeneratorConfig
from .layers import EqualLinear, FourierFeatures
from .local_generator import LocalGenerator, run_local_generators
from .render_net import RenderNet


@dataclass
class GeneratorOutput:
    image: torch.Tensor        # [B, 3, size, size], about [-1, 1]
    seg: torch.Tensor          # [B, parts, size, size], about [-1, 1] (coarse + residual): the D input
    seg_coarse: torch.Tensor   # [B, parts, coarse, coarse], probabilities (sum to 1 over parts)
    depths: list[torch.Tensor]
    wplus: torch.Tensor        # [B, n_latent, style_dim]

    def part_probs(self) -> torch.Tensor:
        """Per-pixel part probabilities at image size (the coarse segmentation, bilinearly upsampled)."""
        return F.interpolate(self.seg_coarse, size=self.image.shape[-2:], mode="bilinear", align_corners=False)


class MappingNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.layers = nn.Sequential(*(EqualLinear(cfg.style_dim, cfg.style_dim, lr_mul=cfg.lr_mlp, activate=True)
                                      for _ in range(cfg.n_mlp)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm
        return self.layers(z)


class SemanticGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.fourier = FourierFeatures(cfg.local_channel, cfg.n_freqs, in_ch=cfg.coord_channels)
        self.local = nn.ModuleList(
            LocalGenerator(cfg.local_in_channels, cfg.local_channel, cfg.coarse_channel, cfg.style_dim, cfg.local_layers,
                           cfg.depth_layers, use_depth=k > 0) for k in range(cfg.n_parts))
        if cfg.coord_embedding:
            self.coord_embed = nn.Parameter(torch.randn(1, cfg.local_channel, cfg.coarse_size, cfg.coarse_size))
        self.render = RenderNet(cfg)
        t = torch.zeros(cfg.n_parts)
        t[list(cfg.transparent_idx)] = 1.0
        self.register_buffer("transparent_mask", t.view(1, -1, 1, 1), persistent=False)

    # --- latents -------------------------------------------------------------------------------------
    def mixing_pick(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random style-mixing choice per sample and part: 0 (w1, w1), 1 (w1, w2) or 2 (w2, w2)."""
        return torch.randint(0, 3, (batch, self.cfg.n_parts), generator=generator)

    def mix(self, ws: list[torch.Tensor], pick: torch.Tensor | None = None) -> torch.Tensor:
        """w codes -> W+ [B, n_latent, D]. One w: repeated. Two: coarse codes from the first; per sample and
        part, (shape, texture) from (w1, w1), (w1, w2) or (w2, w2) as ``pick`` says (random if None)."""
        cfg = self.cfg
        if len(ws) == 1:
            return ws[0][:, None].expand(-1, cfg.n_latent, -1).contiguous()
        w1, w2 = ws
        pick = (self.mixing_pick(w1.shape[0]) if pick is None else pick).to(w1.device)
        shape_from_2 = (pick == 2)[..., None].float()
        tex_from_2 = (pick >= 1)[..., None].float()
        shape = w1[:, None] * (1 - shape_from_2) + w2[:, None] * shape_from_2      # [B, P, D]
        tex = w1[:, None] * (1 - tex_from_2) + w2[:, None] * tex_from_2
        per_part = torch.stack((shape, tex), 2).flatten(1, 2)                     # [B, 2P, D]
        return torch.cat((w1[:, None].expand(-1, cfg.base_layers, -1), per_part), 1)

    def expand(self, wplus: torch.Tensor) -> torch.Tensor:
        """W+ [B, n_latent, D] -> per-layer codes [B, parts, local_layers, D] (the paper's layout)."""
        cfg = self.cfg
        if wplus.shape[1] != cfg.n_latent:
            raise ValueError(f"W+ must have {cfg.n_latent} codes, got {wplus.shape[1]}")
        idx = torch.empty(cfg.n_parts, cfg.local_layers, dtype=torch.long)
        for k in range(cfg.n_parts):
            shape, tex = cfg.base_layers + 2 * k, cfg.base_layers + 2 * k + 1
            for layer in range(cfg.local_layers):
                if layer >= cfg.depth_layers:
                    idx[k, layer] = tex
                elif k > 0 and layer < cfg.base_layers:
                    idx[k, layer] = layer  # shared coarse code (not for the background)
                else:
                    idx[k, layer] = shape
        return wplus[:, idx.to(wplus.device)]

    def z_to_wplus(self, z: torch.Tensor, z2: torch.Tensor | None = None, truncation: float = 1.0,
                   mean_w: torch.Tensor | None = None, pick: torch.Tensor | None = None) -> torch.Tensor:
        ws = [self.mapping(z)] + ([self.mapping(z2)] if z2 is not None else [])
        if truncation != 1.0:
            if mean_w is None:
                raise ValueError("truncation needs mean_w (see mean_latent)")
            ws = [mean_w + truncation * (w - mean_w) for w in ws]
        return self.mix(ws, pick)

    @torch.no_grad()
    def mean_latent(self, n: int = 10_000, seed: int = 0) -> torch.Tensor:
        """Mean w over ``n`` samples (the truncation centre), [style_dim]."""
        dev = next(self.parameters()).device
        z = torch.randn(n, self.cfg.style_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
        return torch.cat([self.mapping(c) for c in z.split(2048)]).mean(0)

    # --- synthesis -----------------------------------------------------------------------------------
    def coords(self, b: int, device, dtype) -> torch.Tensor:
        s = self.cfg.coarse_size
        lin = torch.linspace(-1, 1, s, device=device, dtype=dtype)
        xy = [lin.view(1, s).expand(s, s), lin.view(s, 1).expand(s, s)]
        if self.cfg.fourier_diagonal:
            xy += [(xy[0] + xy[1]) / math.sqrt(2), (xy[0] - xy[1]) / math.sqrt(2)]
        return torch.stack(xy)[None].expand(b, -1, -1, -1)

    def composite(self, feats: torch.Tensor, depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth softmax -> segmentation; opaque parts are renormalised among themselves, transparent parts
        (glasses, earrings) add their weight on top, so what is behind them still shows.

        feats: [B, parts, C, H, W]; depths: [B, parts, H, W] -> (features [B, C, H, W], segmentation [B, parts, H, W])."""
        seg = torch.softmax(depths, 1)
        if self.cfg.transparent_idx:
            tm = self.transparent_mask.to(seg.dtype)
            opaque = seg * (1 - tm)
            weights = opaque / (opaque.sum(1, keepdim=True) + 1e-8) + seg * tm
        else:
            weights = seg
        feat = torch.einsum("bpchw,bphw->bchw", feats, weights.to(feats.dtype))
        return feat, seg

    def synthesize(self, wplus: torch.Tensor, noise_mode: str = "random") -> GeneratorOutput:
        codes = self.expand(wplus)
        x = self.fourier(self.coords(wplus.shape[0], wplus.device, wplus.dtype))
        if self.cfg.coord_embedding:
            x = torch.cat((x, self.coord_embed.to(x.dtype).expand(x.shape[0], -1, -1, -1)), 1)
        feats, depths = run_local_generators(self.local, x, codes)
        feat, seg_coarse = self.composite(feats, depths)
        skip = 2 * seg_coarse - 1 if self.cfg.residual_refine else None
        image, seg = self.render(feat, skip, noise_mode)
        return GeneratorOutput(image, seg, seg_coarse, list(depths.split(1, 1)), wplus)

    def sample(self, z: torch.Tensor, z2: torch.Tensor | None = None, truncation: float = 1.0,
               mean_w: torch.Tensor | None = None, noise_mode: str = "random",
               pick: torch.Tensor | None = None) -> GeneratorOutput:
        return self.synthesize(self.z_to_wplus(z, z2, truncation, mean_w, pick), noise_mode)

    def forward(self, wplus: torch.Tensor, noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        out = self.synthesize(wplus, noise_mode)
        return out.image, out.seg
