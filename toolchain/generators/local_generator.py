"""One local generator per semantic part: modulated 1x1 layers on Fourier features of a coordinate grid.

Layer ``depth_layers - 1`` also emits a one-channel pseudo-depth (not for the background); the last
layer's features are projected to ``coarse_channel`` feature channels. Every pixel is computed
independently (1x1 layers), so a part's shape depends only on its own codes and the coordinates.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ModulatedLinear, ToOutput


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
