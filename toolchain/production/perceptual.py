"""The perceptual term of the inversion loss: LPIPS when AlexNet backbone weights are on disk, otherwise a
clearly named weight-free stand-in (recorded in the dataset's metadata, never silently).

Both return a *per-sample* distance ``[B]`` for images in [-1, 1], with no cross-sample statistics, so a
sample's loss (and gradient) does not depend on the batch it is in.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
FALLBACK_NAME = "msgrad-l1 (weight-free LPIPS fallback)"


def hub_alexnet_path() -> Path:
    """Where torchvision would have cached AlexNet: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints" / ALEXNET_FILE


class LPIPSLoss(nn.Module):
    """LPIPS (AlexNet) per sample. Images smaller than ``min_size`` are bilinearly upsampled first: AlexNet's
    stride-4 stem leaves almost nothing of a 32 px image."""

    def __init__(self, model: nn.Module, min_size: int = 64):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.min_size = min_size

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self.min_size:
            x = F.interpolate(x, size=self.min_size, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=self.min_size, mode="bilinear", align_corners=False)
        return self.model(x, y, normalize=False).flatten()


class MultiScaleGradientL1(nn.Module):
    """Weight-free structure distance: mean |∇x − ∇y| (horizontal + vertical finite differences) plus
    mean |x − y| of 3x3 local means, averaged over ``scales`` dyadic scales. Edge-sensitive like LPIPS's
    early layers, but it is *not* LPIPS: numbers are not comparable with LPIPS values."""

    name = FALLBACK_NAME

    def __init__(self, scales: int = 3):
        super().__init__()
        self.scales = scales

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(x.shape[0])
        d = x - y
        for s in range(self.scales):
            if s:
                d = F.avg_pool2d(d, 2)
            gx = (d[..., :, 1:] - d[..., :, :-1]).abs().mean((1, 2, 3))
            gy = (d[..., 1:, :] - d[..., :-1, :]).abs().mean((1, 2, 3))
            local = F.avg_pool2d(d, 3, stride=1, padding=1).abs().mean((1, 2, 3))
            total = total + gx + gy + local
        return total / self.scales


def make_perceptual(weights: str | Path | None = None, allow_fallback: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """-> (loss module, metadata). ``weights``: a torchvision AlexNet state dict; None looks in the torch hub
    cache. Without weights: the fallback (with a warning) when ``allow_fallback``, else an error."""
    from ..errors import AvatarToolError
    from ..metrics.lpips_metric import load_lpips_module
    path = Path(weights) if weights else hub_alexnet_path()
    if path.is_file():
        model = load_lpips_module(path, "alex")
        return LPIPSLoss(model), {"used": True, "net": "alex", "weights": str(path.resolve())}
    if weights:  # named explicitly but missing: that is a mistake, not a reason to fall back
        raise AvatarToolError(f"--lpips-weights {weights}: no such file")
    if not allow_fallback:
        raise AvatarToolError(f"LPIPS needs AlexNet weights ({ALEXNET_FILE}): pass --lpips-weights or put them in {path.parent}")
    warnings.warn(f"LPIPS backbone weights not found ({path}); inverting with '{FALLBACK_NAME}' instead. "
                  "Recorded in the dataset metadata; pass --lpips-weights for the paper's loss.", stacklevel=2)
    return MultiScaleGradientL1(), {"used": False, "fallback": FALLBACK_NAME, "looked_for": str(path)}
