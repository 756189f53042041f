"""One local generator per semantic part: modulated 1x1 layers on Fourier features of a coordinate grid.

Layer ``depth_layers - 1`` also emits a one-channel pseudo-depth (not for the background); the last
layer's features are projected to ``coarse_channel`` feature channels. Every pixel is computed
independently (1x1 layers), so a part's shape depends only on its own codes and the coordinates.

The generator runs all parts together (:func:`run_local_generators`): the parts' weights are stacked so
each layer is one batched matmul over (sample, part). The per-part modules stay as they are, so the
checkpoint layout (``local.<part>.layers.<i>...``) is unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SQRT2, ModulatedLinear, ToOutput


class LocalGenerator(nn.Module):
    def __init__(self, in_ch: int, hidden: int, out_ch: int, style_dim: int, n_layers: int, depth_layers: int,
                 use_depth: bool):
        super().__init__()
        self.layers = nn.ModuleList(ModulatedLinear(in_ch if i == 0 else hidden, hidden, style_dim) for i in range(n_layers))
        self.to_feat = ToOutput(hidden, out_ch)
        self.to_depth = ToOutput(hidden, 1) if use_depth else None
        self.depth_layers = depth_layers

    def forward(self, x: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, C, H, W] embedded coordinates; ws: [B, n_layers, style_dim] -> (features, depth [B,1,H,W])."""
        depth = x.new_zeros(x.shape[0], 1, *x.shape[2:])
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i])
            if self.to_depth is not None and i == self.depth_layers - 1:
                depth = self.to_depth(x)
        return self.to_feat(x), depth


def _modulated_parts(layers: Sequence[ModulatedLinear], h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """One ModulatedLinear per part, all at once. h: [B, P, in, HW]; codes: [B, P, style] -> [B, P, out, HW]."""
    first = layers[0]
    weight = torch.stack([m.weight for m in layers]) * first.scale                      # [P, out, in]
    aff_w = torch.stack([m.affine.weight for m in layers]) * first.affine.scale          # [P, in, style]
    aff_b = torch.stack([m.affine.bias for m in layers]) * first.affine.lr_mul           # [P, in]
    s = torch.einsum("bpd,pid->bpi", codes, aff_w) + aff_b
    wmod = weight[None] * s[:, :, None, :]                                               # [B, P, out, in]
    wmod = wmod * (torch.rsqrt(wmod.pow(2).sum(3, keepdim=True) + 1e-8) * SQRT2)
    b, p, c, n = h.shape
    bias = (torch.stack([m.act.bias for m in layers]) * SQRT2).to(h.dtype)              # [P, out]
    out = torch.baddbmm(bias[None, :, :, None].expand(b, -1, -1, 1).reshape(b * p, -1, 1),
                        wmod.to(h.dtype).reshape(b * p, -1, c), h.reshape(b * p, c, n))
    return F.leaky_relu(out, 0.2).view(b, p, -1, n)


def _project_parts(heads: Sequence[ToOutput], h: torch.Tensor) -> torch.Tensor:
    """One ToOutput (1x1, no skip) per part, all at once. h: [B, P, in, HW] -> [B, P, out, HW]."""
    conv = heads[0].conv
    weight = torch.stack([t.conv.weight.flatten(1) * t.conv.gain[None] for t in heads]) * conv.scale  # [P, out, in]
    bias = torch.stack([t.bias for t in heads])                                                      # [P, out]
    return torch.matmul(weight.to(h.dtype)[None], h) + bias.to(h.dtype)[None, :, :, None]


def run_local_generators(nets: Sequence[LocalGenerator], x: torch.Tensor, codes: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every part's local generator on the shared embedded coordinates, as one batched pass.

    x: [B, C, H, W]; codes: [B, P, n_layers, style] -> (features [B, P, out, H, W], depths [B, P, H, W]; part 0,
    the background, has no pseudo-depth: zeros). The same values as calling each ``LocalGenerator`` (up to
    float summation order) in a few large ops instead of a few per part and layer.
    """
    if nets[0].to_depth is not None or any(n.to_depth is None for n in nets[1:]):
        raise ValueError("expected the background (part 0) alone without a pseudo-depth")
    b, c, hgt, wid = x.shape
    p = len(nets)
    h = x.reshape(b, 1, c, hgt * wid).expand(b, p, c, hgt * wid)
    depth = None
    for i in range(len(nets[0].layers)):
        h = _modulated_parts([n.layers[i] for n in nets], h, codes[:, :, i])
        if i == nets[0].depth_layers - 1:
            depth = _project_parts([n.to_depth for n in nets[1:]], h[:, 1:])[:, :, 0]
    feats = _project_parts([n.to_feat for n in nets], h).view(b, p, -1, hgt, wid)
    depths = torch.cat((depth.new_zeros(b, 1, hgt * wid), depth), 1)
    return feats, depths.view(b, p, hgt, wid)
