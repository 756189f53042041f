"""Dual-branch discriminator: a residual CNN on the image and, optionally, one on the segmentation; their
4x4 features are summed, then minibatch standard deviation, a 3x3 conv and two linear layers give one
logit per sample. ``use_seg=False`` is the image-only discriminator (finetuning on engines without masks)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import GeneratorConfig
from .layers import EqualConv, EqualLinear, ResBlock


def conv_branch(cfg: GeneratorConfig, in_ch: int) -> nn.Sequential:
    """Residual CNN from ``size`` px down to 4x4 features (channels(4)); also the photo encoder's trunk."""
    layers = [EqualConv(in_ch, cfg.channels(cfg.size), 1)]
    for log in range(int(math.log2(cfg.size)), 2, -1):
        layers.append(ResBlock(cfg.channels(2 ** log), cfg.channels(2 ** (log - 1))))
    return nn.Sequential(*layers)


class DualBranchDiscriminator(nn.Module):
    def __init__(self, cfg: GeneratorConfig, use_seg: bool = True, stddev_group: int = 4):
        super().__init__()
        self.cfg, self.use_seg, self.stddev_group = cfg, use_seg, stddev_group
        self.img = conv_branch(cfg, 3)
        self.seg = conv_branch(cfg, cfg.n_parts) if use_seg else None
        c4 = cfg.channels(4)
        self.final_conv = EqualConv(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor, seg: torch.Tensor | None = None) -> torch.Tensor:
        x = self.img(img)
        if self.use_seg:
            if seg is None:
                raise ValueError("this discriminator has a segmentation branch: pass seg")
            x = x + self.seg(seg)
        b, c, h, w = x.shape
        g = min(b, self.stddev_group)
        while b % g:
            g -= 1
        std = x.view(g, -1, c, h, w).float().var(0, unbiased=False).add(1e-8).sqrt().mean((1, 2, 3))  # [b/g]
        x = torch.cat((x, std.to(x.dtype).view(-1, 1, 1, 1).repeat(g, 1, h, w)), 1)
        return self.out(self.fc(self.final_conv(x).flatten(1)))
