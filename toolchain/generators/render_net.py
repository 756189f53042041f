"""Render network: the composited coarse feature map -> RGB image and segmentation at full size.

The features are average-pooled to ``min_feat_size``, then each stage doubles the resolution with two
3x3 convolutions (noise-injected, no per-sample style: the style lives in the local generators). At
``coarse_size`` the full-resolution composited features are concatenated back in. RGB and segmentation
are accumulated over stages through upsampled skips; with ``residual_refine`` the coarse segmentation
(mapped to [-1, 1]) is added at its own resolution, so the network learns a residual on it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GeneratorConfig
from .layers import FixedConv, ToOutput


class RenderStage(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, n_seg: int, size: int):
        super().__init__()
        self.conv_up = FixedConv(in_ch, out_ch, 3, upsample=True)
        self.conv = FixedConv(out_ch, out_ch, 3)
        self.to_rgb = ToOutput(out_ch, 3)
        self.to_seg = ToOutput(out_ch, n_seg)
        # fixed noise for deterministic rendering ("const" noise mode); part of the official checkpoint
        self.register_buffer("noise_up", torch.randn(1, 1, size, size))
        self.register_buffer("noise", torch.randn(1, 1, size, size))
        self.size = size


class RenderNet(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        in_ch = cfg.coarse_channel
        self.stages = nn.ModuleList()
        for i in range(int(math.log2(cfg.size)) - int(math.log2(cfg.min_feat_size))):
            size = cfg.min_feat_size * 2 ** (i + 1)
            if size // 2 == cfg.coarse_size:
                in_ch += cfg.coarse_channel
            self.stages.append(RenderStage(in_ch, cfg.channels(size), cfg.n_parts, size))
            in_ch = cfg.channels(size)

    def forward(self, feat: torch.Tensor, seg_coarse: torch.Tensor | None, noise_mode: str = "random"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.adaptive_avg_pool2d(feat, self.cfg.min_feat_size)
        rgb = seg = None
        for st in self.stages:
            if x.shape[2] == self.cfg.coarse_size:
                x = torch.cat((x, feat), 1)
            n_up, n = {"random": (None, None), "const": (st.noise_up, st.noise),
                       "none": (torch.zeros_like(st.noise_up), torch.zeros_like(st.noise))}[noise_mode]
            if n_up is not None and n_up.shape[0] != x.shape[0]:
                n_up, n = n_up.expand(x.shape[0], -1, -1, -1), n.expand(x.shape[0], -1, -1, -1)
            x = st.conv(st.conv_up(x, n_up), n)
            rgb = st.to_rgb(x, rgb)
            seg = st.to_seg(x, seg)
            if seg_coarse is not None and seg.shape[2] == seg_coarse.shape[2]:
                seg = seg + seg_coarse
        return rgb, seg
