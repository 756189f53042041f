"""LPIPS with backbone weights from a local file (they cannot be downloaded here).

The ``lpips`` package ships only its small linear calibration heads; the AlexNet / VGG / SqueezeNet
backbone normally comes from torchvision's download. We build LPIPS with a random backbone
(``pnet_rand=True``) and then load the user's torchvision backbone state dict into it, failing loudly
if any backbone tensor is left unloaded — a random backbone is plumbing, not a metric.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import AvatarToolError

_NETS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def _backbone_key(key: str) -> str:
    """``sliceK.i.weight`` (lpips) → ``features.i.weight`` (torchvision)."""
    return re.sub(r"^slice\d+\.", "features.", key)


def load_lpips_module(weights: str | Path, net: str = "alex") -> torch.nn.Module:
    try:
        import lpips
    except ImportError:
        raise AvatarToolError("--lpips-weights needs the 'lpips' package: pip install lpips") from None
    path = Path(weights)
    if not path.is_file():
        raise AvatarToolError(f"--lpips-weights {path}: no such file (expected torchvision's {_NETS[net]} weights, e.g. "
                              "alexnet-owt-7be5be79.pth from $TORCH_HOME/hub/checkpoints/)")
    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.net.state_dict()
    mapped = {k: state[_backbone_key(k)] for k in own if _backbone_key(k) in state}
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise AvatarToolError(f"--lpips-weights {path} does not hold a torchvision {_NETS[net]} backbone "
                              f"(missing {', '.join(_backbone_key(k) for k in missing[:3])}…)")
    model.net.load_state_dict(mapped)
    return model.eval()


def load_lpips(weights: str | Path, net: str = "alex") -> Callable[[np.ndarray, np.ndarray], float]:
    """A function ``(uint8 HxWx3, uint8 HxWx3) -> LPIPS distance``."""
    model = load_lpips_module(weights, net)

    @torch.no_grad()
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        ta = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1
        tb = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 127.5 - 1
        return float(model(ta, tb).item())

    return distance
